"""timm's RandAugment ops in TensorFlow, computed as Pillow computes them so that they reproduce its
pixels exactly (tests/fixtures/randaugment.npz): uint8 [N, H, W, 3] and one argument per image [N]
(geometric ops also a fill colour) -> uint8, with Pillow's arithmetic (float32 blends, clipped and
truncated; PIL's L grey; per-channel LUTs; affine resampling in float64 in Pillow's order). Per-pixel
choices are arithmetic on masks or LUT gathers: on TF's CPU a select or integer division costs ~10x.

Known differences from Pillow: Posterize with 0 bits gives black, as Pillow < 9 did (newer Pillow
raises); Rotate rounds cos and sin to 15 decimals in float64, not with Python's decimal round()."""

from __future__ import annotations

import math
from collections.abc import Sequence

import tensorflow as tf


def _per_image(x: tf.Tensor) -> tf.Tensor:
    """[N] -> [N, 1, 1, 1], to broadcast one argument per image."""
    return tf.reshape(x, [-1, 1, 1, 1])


def _grey(images: tf.Tensor) -> tf.Tensor:
    """PIL's RGB -> L, float32 [N, H, W, 1]: (19595 R + 38470 G + 7471 B + 2**15) >> 16, exact in
    float32 (every product and partial sum is an integer below 2**24)."""
    weights = tf.constant([[19595.0], [38470.0], [7471.0]], tf.float32)
    weighted = tf.tensordot(tf.cast(images, tf.float32), weights, axes=1)
    return tf.floor((weighted + 32768.0) / 65536.0)


def _blend(degenerate: tf.Tensor | float, images: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    """PIL Image.blend(degenerate, image, factor): d + f * (x - d) in float32, clipped, cast."""
    x = tf.cast(images, tf.float32)
    blended = degenerate + _per_image(tf.cast(factor, tf.float32)) * (x - degenerate)
    return tf.cast(tf.clip_by_value(blended, 0.0, 255.0), tf.uint8)  # truncates, as PIL's C cast


def color(images: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    """ImageEnhance.Color: blend with the grey (PIL L) image."""
    return _blend(_grey(images), images, factor)


def contrast(images: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    """ImageEnhance.Contrast: blend with a flat image at the mean grey level, int(mean + 0.5)."""
    grey = _grey(images)
    count = tf.cast(tf.shape(grey)[1] * tf.shape(grey)[2], tf.float64)
    mean = tf.reduce_sum(tf.cast(grey, tf.float64), axis=[1, 2, 3], keepdims=True) / count
    return _blend(tf.cast(tf.floor(mean + 0.5), tf.float32), images, factor)


def brightness(images: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    """ImageEnhance.Brightness: blend with black."""
    return _blend(0.0, images, factor)


def sharpness(images: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    """ImageEnhance.Sharpness: blend with PIL's SMOOTH filter ([[1,1,1],[1,5,1],[1,1,1]] / 13,
    rounded), whose 1-pixel border keeps the input. Sums are exact integers in float32 and
    (s + 6) / 13 never lands on .5, so floor((s + 6) / 13) is PIL's rounding. The 3x3 sum is nine
    shifted slices, not a convolution: TF's oneDNN depthwise convolution (on by default on recent
    x86 CPUs) gives an empty batch (no image drew this op) the input's shape, not the output's."""
    x = tf.cast(images, tf.float32)
    shifted = [x[:, i : (i - 2) or None, j : (j - 2) or None] for i in range(3) for j in range(3)]
    smoothed = tf.floor((tf.add_n(shifted) + 4.0 * shifted[4] + 6.0) / 13.0)
    change = tf.pad(smoothed - x[:, 1:-1, 1:-1], [[0, 0], [1, 1], [1, 1], [0, 0]])
    return _blend(x + change, images, factor)


def invert(images: tf.Tensor, _arg: tf.Tensor | None = None) -> tf.Tensor:
    """ImageOps.invert: 255 - x."""
    return 255 - images


def posterize(images: tf.Tensor, bits: tf.Tensor) -> tf.Tensor:
    """Keep the top `bits` bits (8 or more: unchanged; 0: black, as PIL did before refusing 0)."""
    drop = 8 - tf.clip_by_value(tf.cast(bits, tf.int32), 0, 8)
    mask = tf.cast(256 - tf.bitwise.left_shift(1, drop), tf.uint8)  # ~(2**drop - 1) & 0xFF
    return tf.bitwise.bitwise_and(images, _per_image(mask))


def solarize(images: tf.Tensor, threshold: tf.Tensor) -> tf.Tensor:
    """ImageOps.solarize: x >= threshold becomes 255 - x (= x XOR 255)."""
    at_or_above = tf.cast(images, tf.int32) >= _per_image(tf.cast(threshold, tf.int32))
    return tf.bitwise.bitwise_xor(images, tf.cast(at_or_above, tf.uint8) * 255)


def solarize_add(images: tf.Tensor, add: tf.Tensor, threshold: int = 128) -> tf.Tensor:
    """timm's solarize_add: x < threshold becomes min(255, x + add)."""
    add = _per_image(tf.cast(tf.clip_by_value(tf.cast(add, tf.int32), 0, 255), tf.uint8))
    below = tf.cast(tf.cast(images, tf.int32) < threshold, tf.uint8)
    return images + below * tf.minimum(255 - images, add)


def _lut_index(images: tf.Tensor) -> tf.Tensor:
    """int32 index of each pixel into a flat per-(image, channel) LUT [N * 3 * 256]."""
    n = tf.shape(images)[0]
    return tf.cast(images, tf.int32) + (tf.range(n)[:, None, None, None] * 3 + tf.range(3)) * 256


def _apply_lut(index: tf.Tensor, lut: tf.Tensor) -> tf.Tensor:
    """Per-(image, channel) LUT [N, 3, 256] (values in [0, 255]) applied to `_lut_index` pixels."""
    return tf.gather(tf.reshape(tf.cast(lut, tf.uint8), [-1]), index)


def auto_contrast(images: tf.Tensor, _arg: tf.Tensor | None = None) -> tf.Tensor:
    """ImageOps.autocontrast (cutoff 0) per channel: lut[i] = int(i * scale + offset) clipped,
    scale = 255 / (hi - lo), offset = -lo * scale, in float64 like PIL; identity if hi <= lo."""
    lo = tf.cast(tf.reduce_min(images, axis=[1, 2]), tf.float64)[..., None]  # [N, 3, 1]
    hi = tf.cast(tf.reduce_max(images, axis=[1, 2]), tf.float64)[..., None]
    stretch = hi > lo
    scale = 255.0 / tf.where(stretch, hi - lo, 1.0)
    offset = -lo * scale
    values = tf.range(256, dtype=tf.float64)
    lut = tf.where(stretch, tf.clip_by_value(values * scale + offset, 0.0, 255.0), values)
    return _apply_lut(_lut_index(images), lut)


def equalize(images: tf.Tensor, _arg: tf.Tensor | None = None) -> tf.Tensor:
    """ImageOps.equalize per channel: lut[i] = min(255, (step // 2 + #pixels below i) // step),
    step = (#pixels - #pixels at the top value) // 255; identity for step 0 or a single value."""
    shape = tf.shape(images)
    n, pixels = shape[0], shape[1] * shape[2]
    index = _lut_index(images)
    bins = n * 3 * 256
    hist = tf.math.bincount(tf.reshape(index, [-1]), minlength=bins, maxlength=bins)
    hist = tf.reshape(hist, [n, 3, 256])
    present = hist > 0
    values = tf.range(256)
    last = tf.reduce_max(tf.where(present, values, -1), axis=-1)
    at_last = tf.reduce_sum(tf.where(values == last[..., None], hist, 0), axis=-1)
    step = (pixels - at_last) // 255
    identity = (tf.reduce_sum(tf.cast(present, tf.int32), -1) <= 1) | (step == 0)
    safe_step = tf.maximum(step, 1)[..., None]
    below = tf.cumsum(hist, axis=-1, exclusive=True)
    lut = tf.minimum((safe_step // 2 + below) // safe_step, 255)
    return _apply_lut(index, tf.where(identity[..., None], values, lut))


def _affine(images: tf.Tensor, coeffs: Sequence, fill: Sequence[int], taps: str) -> tf.Tensor:
    """PIL Image.transform(size, AFFINE, (a, b, c, d, e, f), BILINEAR, fillcolor=fill), batched;
    coeffs: each a Python number or one value per image [N].

    Output pixel (x, y) samples u = a (x+.5) + b (y+.5) + c, v = d (x+.5) + e (y+.5) + f: the fill
    outside [0, W) x [0, H), else PIL's bilinear interpolation at (u - .5, v - .5) with indices
    clamped to the image (x first, then y), truncated; float64 throughout, as float32 would
    truncate ~1% of pixels differently. taps 'x' / 'y': only x varies along a row (ShearX,
    TranslateX) / only y down a column (ShearY, TranslateY), so 2 neighbours are gathered, not 4."""
    n, h, w = tf.shape(images)[0], images.shape[1], images.shape[2]
    a, b, c, d, e, f = (
        tf.reshape(tf.cast(t, tf.float64), [-1, 1, 1]) if tf.is_tensor(t) else t for t in coeffs
    )
    xs = (tf.range(w, dtype=tf.float64) + 0.5)[None, None, :]
    ys = (tf.range(h, dtype=tf.float64) + 0.5)[None, :, None]
    # Pixels are read from a table: the images padded by their edge pixels (the clamping; two
    # concats are ~20x faster than tf.pad's SYMMETRIC mode), then the fill colour.
    padded = tf.concat([images[:, :1], images, images[:, -1:]], axis=1)
    padded = tf.concat([padded[:, :, :1], padded, padded[:, :, -1:]], axis=2)
    table = tf.concat([tf.reshape(padded, [-1, 3]), tf.constant([list(fill)], tf.uint8)], 0)
    fill_index = n * (h + 2) * (w + 2)
    stride = w + 2  # table rows per image row
    first = tf.reshape(tf.range(n) * ((h + 2) * stride), [-1, 1, 1]) + stride + 1  # pixel (0, 0)

    def lower_and_frac(coord: tf.Tensor, keep: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        t = coord - 0.5
        lower = tf.floor(t)
        frac = (t - lower) * tf.cast(keep, tf.float64)  # 0 outside: the fill pixel reads exactly
        return tf.cast(lower, tf.int32), frac[..., None]

    masked = lambda at, keep: fill_index + keep * (at - fill_index)  # keep 0: the fill pixel
    gather = lambda i: tf.cast(tf.gather(table, i), tf.float64)
    lerp = lambda p, q, t: p + (q - p) * t
    if taps in ("x", "y"):  # the other coordinate is the pixel centre exactly
        coord = (a * xs + b * ys) + c if taps == "x" else (d * xs + e * ys) + f
        size, step = (w, 1) if taps == "x" else (h, stride)  # table rows to the next tap
        across = tf.range(h)[None, :, None] * stride if taps == "x" else tf.range(w)[None, None, :]
        keep = tf.cast((coord >= 0.0) & (coord < size), tf.int32)
        lower, frac = lower_and_frac(coord, keep)
        i0 = masked(first + across + lower * step, keep)
        out = lerp(gather(i0), gather(i0 + keep * step), frac)
    else:
        u = (a * xs + b * ys) + c
        v = (d * xs + e * ys) + f
        keep = tf.cast((u >= 0.0) & (u < w) & (v >= 0.0) & (v < h), tf.int32)
        x0, dx = lower_and_frac(u, keep)
        y0, dy = lower_and_frac(v, keep)
        i00 = masked(first + y0 * stride + x0, keep)
        i10 = i00 + keep * stride
        top = lerp(gather(i00), gather(i00 + keep), dx)
        bottom = lerp(gather(i10), gather(i10 + keep), dx)
        out = lerp(top, bottom, dy)
    return tf.cast(out, tf.uint8)  # values in [0, 255]: the cast truncates like PIL's


def rotate(images: tf.Tensor, degrees: tf.Tensor, fill: Sequence[int]) -> tf.Tensor:
    """Image.rotate(degrees, BILINEAR, fillcolor=fill): counter-clockwise about (w/2, h/2), with
    PIL's angle % 360 and cos/sin rounded to 15 decimals (so 90-degree turns are exact)."""
    angle = -tf.math.floormod(tf.cast(degrees, tf.float64), 360.0) * (math.pi / 180.0)
    cos = tf.round(tf.cos(angle) * 1e15) / 1e15
    sin = tf.round(tf.sin(angle) * 1e15) / 1e15
    cx, cy = images.shape[2] / 2.0, images.shape[1] / 2.0
    c, f = cos * -cx + sin * -cy + cx, -sin * -cx + cos * -cy + cy
    return _affine(images, (cos, sin, c, -sin, cos, f), fill, "xy")


def shear_x(images: tf.Tensor, factor: tf.Tensor, fill: Sequence[int]) -> tf.Tensor:
    """Affine (1, factor, 0, 0, 1, 0): x_in = x + factor * y, about the top-left corner."""
    return _affine(images, (1.0, factor, 0.0, 0.0, 1.0, 0.0), fill, "x")


def shear_y(images: tf.Tensor, factor: tf.Tensor, fill: Sequence[int]) -> tf.Tensor:
    """Affine (1, 0, 0, factor, 1, 0): y_in = factor * x + y, about the top-left corner."""
    return _affine(images, (1.0, 0.0, 0.0, factor, 1.0, 0.0), fill, "y")


def translate_x(images: tf.Tensor, pixels: tf.Tensor, fill: Sequence[int]) -> tf.Tensor:
    """Affine (1, 0, pixels, 0, 1, 0): content moves left by `pixels` (timm's TranslateX)."""
    return _affine(images, (1.0, 0.0, pixels, 0.0, 1.0, 0.0), fill, "x")


def translate_y(images: tf.Tensor, pixels: tf.Tensor, fill: Sequence[int]) -> tf.Tensor:
    """Affine (1, 0, 0, 0, 1, pixels): content moves up by `pixels` (timm's TranslateY)."""
    return _affine(images, (1.0, 0.0, 0.0, 0.0, 1.0, pixels), fill, "y")


def translate_x_rel(images: tf.Tensor, pct: tf.Tensor, fill: Sequence[int]) -> tf.Tensor:
    """timm's TranslateXRel: `translate_x` by pct of the width."""
    return translate_x(images, tf.cast(pct, tf.float64) * images.shape[2], fill)


def translate_y_rel(images: tf.Tensor, pct: tf.Tensor, fill: Sequence[int]) -> tf.Tensor:
    """timm's TranslateYRel: `translate_y` by pct of the height."""
    return translate_y(images, tf.cast(pct, tf.float64) * images.shape[1], fill)
