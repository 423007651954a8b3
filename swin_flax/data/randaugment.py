"""RandAugment in TensorFlow ops with timm's semantics (`timm/data/auto_augment.py` on PIL images).

* `parse_config_str` reads a timm config string ('rand-m9-mstd0.5') by timm's rules.
* One function per op (uint8 [H, W, 3] in and out, taking the op's *argument*, not the magnitude;
  `level_to_arg` is timm's magnitude -> argument mapping), each following PIL's arithmetic:
  ImageEnhance blends are `Image.blend` (float32, clipped, truncated); grey is PIL's L conversion
  `(19595 R + 38470 G + 7471 B + 2**15) >> 16`; Sharpness blends with the SMOOTH filter and keeps
  the 1-pixel border; AutoContrast and Equalize are `ImageOps`' per-channel LUTs. Geometric ops
  are PIL's `Image.transform(AFFINE, BILINEAR, fillcolor=img_mean)`: output pixel centres
  (x + .5, y + .5) map through the matrix, points outside [0, W) x [0, H) take the fill colour,
  inside ones are bilinear with edges clamped, truncated -- all in float64 in PIL's order of
  operations, so the ops reproduce Pillow's pixels exactly on the test images.
* The policy: `num_layers` ops drawn uniformly with replacement (weighted and without replacement
  for 'tweights'), each applied with probability `prob`, magnitude ~ Normal(m, mstd) (uniform on
  [0, m] when mstd is infinite) clipped to [0, mmax] at every application, timm's level-to-
  argument mapping (`_LEVEL_DENOM` = 10) and a random sign (p = 0.5) for the signed ops.
* Randomness: every draw for one example comes from `tf.random.stateless_uniform([k], seed)`
  (see `policy_draws`). `rand_augment_batch` computes the same numbers for a whole batch at once
  (a vectorised copy of TF's Philox-4x32-10 generator, checked bit for bit against the TF op in
  the tests), so it equals mapping `rand_augment` over the batch, but runs each op once, on the
  examples that drew it.

Hyper-parameters (timm's `hparams`): `img_mean` (fill colour), `translate_pct` (0.45, for the Rel
translations, which are the ones in RandAugment's op sets) and `translate_const` (pixels at
magnitude 10 for the absolute TranslateX/TranslateY ops only; no timm RandAugment config string
selects those, so the recipe's `translate_const=117` has no effect, in timm as here).

Known differences from timm + Pillow: (1) timm resamples geometric ops with bilinear or bicubic
chosen at random per application unless hparams set 'interpolation' (the recipe does not); this
port always uses bilinear. (2) Posterize with 0 bits (or fewer) gives black, as Pillow < 9 did;
newer Pillow raises. (3) Rotate rounds cos and sin to 15 decimals in float64, not with Python's
decimal round(), which can only matter within ~1e-15 of a pixel boundary. (4) Config strings
that timm would silently accept but misread (e.g. 'mstdinf', 'tfoo') raise ValueError here.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import tensorflow as tf

LEVEL_DENOM = 10.0  # timm's _LEVEL_DENOM: magnitude m is the fraction m / 10 of an op's range
DEFAULT_FILL = (128, 128, 128)  # timm's _FILL, used when hparams carry no img_mean

RAND_TRANSFORMS = (
    "AutoContrast",
    "Equalize",
    "Invert",
    "Rotate",
    "Posterize",
    "Solarize",
    "SolarizeAdd",
    "Color",
    "Contrast",
    "Brightness",
    "Sharpness",
    "ShearX",
    "ShearY",
    "TranslateXRel",
    "TranslateYRel",
)
RAND_INCREASING_TRANSFORMS = (
    "AutoContrast",
    "Equalize",
    "Invert",
    "Rotate",
    "PosterizeIncreasing",
    "SolarizeIncreasing",
    "SolarizeAdd",
    "ColorIncreasing",
    "ContrastIncreasing",
    "BrightnessIncreasing",
    "SharpnessIncreasing",
    "ShearX",
    "ShearY",
    "TranslateXRel",
    "TranslateYRel",
)
# timm's _RAND_WEIGHTED_0 ('rand-...-tweights'): op -> relative weight, drawn without replacement.
RAND_WEIGHTED_0 = {
    "Rotate": 3.0,
    "ShearX": 2.0,
    "ShearY": 2.0,
    "TranslateXRel": 1.0,
    "TranslateYRel": 1.0,
    "ColorIncreasing": 0.25,
    "SharpnessIncreasing": 0.25,
    "AutoContrast": 0.25,
    "SolarizeIncreasing": 0.05,
    "SolarizeAdd": 0.05,
    "ContrastIncreasing": 0.05,
    "BrightnessIncreasing": 0.05,
    "Equalize": 0.05,
    "PosterizeIncreasing": 0.05,
    "Invert": 0.05,
}
_CONFIG_KEYS = ("m", "n", "mstd", "mmax", "inc", "p", "t")


# --------------------------------------------------------------------------------------------
# Config string


@dataclasses.dataclass(frozen=True)
class RandAugmentParams:
    """A parsed timm RandAugment config: what `rand_augment` needs besides hparams.

    magnitude_max is the clipping bound itself (timm's `magnitude_max or 10`). magnitude_std > 0
    samples Normal(magnitude, magnitude_std), `inf` samples Uniform(0, magnitude), <= 0 keeps
    `magnitude`. choice_weights (normalised) switch to weighted choice without replacement.
    """

    num_layers: int = 2
    magnitude: float = 10.0
    magnitude_std: float = 0.0
    magnitude_max: float = 10.0
    prob: float = 0.5
    increasing: bool = False
    ops: tuple[str, ...] = RAND_TRANSFORMS
    choice_weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        unknown = [name for name in self.ops if name not in _OPS]
        if unknown:
            raise ValueError(f"ops: unknown op(s) {unknown}; known ops are {sorted(_OPS)}.")
        if self.num_layers < 0:
            raise ValueError(f"num_layers must be >= 0, got {self.num_layers}.")
        if self.choice_weights is not None:
            if len(self.choice_weights) != len(self.ops):
                raise ValueError(
                    f"choice_weights has {len(self.choice_weights)} entries for "
                    f"{len(self.ops)} ops; give one weight per op."
                )
            if self.num_layers > len(self.ops):
                raise ValueError(
                    f"num_layers={self.num_layers} exceeds the {len(self.ops)} ops: weighted "
                    "choice draws without replacement (as timm's np.random.choice does)."
                )
        if self.num_layers > 0 and not self.ops:
            raise ValueError("ops is empty; give at least one op name.")


def parse_config_str(config_str: str) -> RandAugmentParams:
    """Parse a timm RandAugment string such as 'rand-m9-mstd0.5' by timm's rules.

    Sections after 'rand', separated by '-': m (int magnitude, default 10), n (int layers, 2),
    mstd (float; > 100 means uniform sampling), mmax (int clipping bound; 0 means 10), inc (0/1:
    the Increasing op set), p (float apply probability, 0.5), t (op set name: 'weights').
    As in timm, a repeated mstd, mmax or t keeps its first value and the others their last.
    Unlike timm (which asserts or silently ignores), bad input raises ValueError: an unknown key,
    a section without a number (timm drops e.g. 'mstdinf' without a word), a non-integer m, n,
    mmax or inc, and an unknown op set name. The sets '3a' and '3aw' need GaussianBlur and
    Desaturate, which are not implemented here.
    """
    if not isinstance(config_str, str):
        raise ValueError(f"config_str must be a string like 'rand-m9-mstd0.5', got {config_str!r}.")
    sections = config_str.split("-")
    if sections[0] != "rand":
        raise ValueError(
            f"config_str {config_str!r} must start with 'rand' (timm's RandAugment), "
            "e.g. 'rand-m9-mstd0.5'."
        )
    magnitude, num_layers, increasing, prob = 10, 2, False, 0.5
    mstd: float | None = None
    mmax: int | None = None
    op_set: str | None = None

    def as_int(key: str, val: str) -> int:
        try:
            return int(val)
        except ValueError:
            raise ValueError(
                f"config_str {config_str!r}: '{key}' needs an integer, got {val!r}."
            ) from None

    def as_float(key: str, val: str) -> float:
        try:
            return float(val)
        except ValueError:
            raise ValueError(
                f"config_str {config_str!r}: '{key}' needs a number, got {val!r}."
            ) from None

    for section in sections[1:]:
        if not section:
            continue  # 'rand--m9': timm skips empty sections
        if section.startswith("t"):
            if op_set is None:
                op_set = section[1:]
            continue
        parts = re.split(r"(\d.*)", section)
        if len(parts) < 2:
            raise ValueError(
                f"config_str {config_str!r}: section {section!r} has no number (timm would "
                f"silently ignore it); a section is a key ({', '.join(_CONFIG_KEYS)}) and a "
                "number, e.g. 'mstd0.5', or 'mstd101' for uniform magnitudes."
            )
        key = parts[0]
        if key not in _CONFIG_KEYS:
            raise ValueError(
                f"config_str {config_str!r}: unknown key {key!r} in section {section!r}; valid "
                f"keys are {', '.join(_CONFIG_KEYS)} (e.g. 'rand-m9-n2-mstd0.5-mmax10-inc0')."
            )
        val = parts[1]
        if key == "mstd":
            value = as_float(key, val)
            if mstd is None:
                mstd = math.inf if value > 100 else value
        elif key == "mmax":
            value = as_int(key, val)
            if mmax is None:
                mmax = value
        elif key == "inc":
            increasing = bool(as_int(key, val))
        elif key == "m":
            magnitude = as_int(key, val)
        elif key == "n":
            num_layers = as_int(key, val)
        elif key == "p":
            prob = as_float(key, val)

    weights = None
    if op_set is None:
        ops = RAND_INCREASING_TRANSFORMS if increasing else RAND_TRANSFORMS
    elif op_set == "weights":
        ops = tuple(RAND_WEIGHTED_0)
        total = sum(RAND_WEIGHTED_0.values())
        weights = tuple(w / total for w in RAND_WEIGHTED_0.values())
    elif op_set in ("3a", "3aw"):
        raise ValueError(
            f"config_str {config_str!r}: op set 't{op_set}' needs GaussianBlur and Desaturate, "
            "which this port does not implement; use the default set or 'tweights'."
        )
    else:
        raise ValueError(
            f"config_str {config_str!r}: unknown op set 't{op_set}'; the valid one is "
            "'tweights' (timm would fall back to the default set without a word)."
        )
    return RandAugmentParams(
        num_layers=num_layers,
        magnitude=float(magnitude),
        magnitude_std=0.0 if mstd is None else mstd,
        magnitude_max=float(mmax or LEVEL_DENOM),
        prob=prob,
        increasing=increasing,
        ops=ops,
        choice_weights=weights,
    )


# --------------------------------------------------------------------------------------------
# Batched op kernels: uint8 [N, H, W, 3] and one argument per image [N] -> uint8 [N, H, W, 3].
# Written for TF's CPU kernels: a select (tf.where) or an integer division over whole images
# costs ~10x an arithmetic op, so per-pixel choices are arithmetic on 0/1 masks or LUT gathers.


def _per_image(x: tf.Tensor) -> tf.Tensor:
    """[N] -> [N, 1, 1, 1], to broadcast one argument per image."""
    return tf.reshape(x, [-1, 1, 1, 1])


def _to_uint8(x: tf.Tensor) -> tf.Tensor:
    """Clip to [0, 255] and truncate, as PIL's blend does (C casts truncate)."""
    return tf.cast(tf.clip_by_value(x, 0.0, 255.0), tf.uint8)


def _grey(images: tf.Tensor) -> tf.Tensor:
    """PIL's RGB -> L, float32 [N, H, W, 1]: (19595 R + 38470 G + 7471 B + 2**15) >> 16.

    Exact in float32: every product and partial sum is an integer below 2**24."""
    weights = tf.constant([[19595.0], [38470.0], [7471.0]], tf.float32)
    weighted = tf.tensordot(tf.cast(images, tf.float32), weights, axes=1)
    return tf.floor((weighted + 32768.0) / 65536.0)


def _blend(degenerate: tf.Tensor, images: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    """PIL Image.blend(degenerate, image, factor): d + f * (x - d) in float32, clipped, cast."""
    x = tf.cast(images, tf.float32)
    return _to_uint8(degenerate + _per_image(tf.cast(factor, tf.float32)) * (x - degenerate))


def _color_batch(images: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    return _blend(_grey(images), images, factor)


def _contrast_batch(images: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    grey = _grey(images)
    count = tf.cast(tf.shape(grey)[1] * tf.shape(grey)[2], tf.float64)
    mean = tf.reduce_sum(tf.cast(grey, tf.float64), axis=[1, 2, 3], keepdims=True) / count
    return _blend(tf.cast(tf.floor(mean + 0.5), tf.float32), images, factor)  # int(mean + 0.5)


def _brightness_batch(images: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    x = tf.cast(images, tf.float32)
    return _to_uint8(_per_image(tf.cast(factor, tf.float32)) * x)  # blend with black: 0 + f * x


def _smooth(images: tf.Tensor) -> tf.Tensor:
    """PIL's ImageFilter.SMOOTH ([[1,1,1],[1,5,1],[1,1,1]] / 13, rounded), float32; the 1-pixel
    border keeps the input, as PIL's 3x3 filter does. Sums are exact integers in float32 and
    (s + 6) / 13 never lands on .5, so floor((s + 6) / 13) is PIL's rounding."""
    x = tf.cast(images, tf.float32)
    kernel = tf.constant([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]], tf.float32)
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, 3, 1])
    total = tf.nn.depthwise_conv2d(x, kernel, [1, 1, 1, 1], "SAME")
    smoothed = tf.floor((total + 6.0) / 13.0)
    h, w = tf.shape(x)[1], tf.shape(x)[2]
    rows = tf.range(h)[:, None]
    cols = tf.range(w)[None, :]
    interior = (rows > 0) & (rows < h - 1) & (cols > 0) & (cols < w - 1)
    interior = tf.cast(interior, tf.float32)[None, :, :, None]
    return x + interior * (smoothed - x)


def _sharpness_batch(images: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    return _blend(_smooth(images), images, factor)


def _invert_batch(images: tf.Tensor, _arg: tf.Tensor | None = None) -> tf.Tensor:
    return 255 - images


def _posterize_batch(images: tf.Tensor, bits: tf.Tensor) -> tf.Tensor:
    """Keep the top `bits` bits (8 or more: unchanged; 0: black, as PIL did before refusing 0)."""
    drop = 8 - tf.clip_by_value(tf.cast(bits, tf.int32), 0, 8)
    mask = tf.cast(256 - tf.bitwise.left_shift(1, drop), tf.uint8)  # ~(2**drop - 1) & 0xFF
    return tf.bitwise.bitwise_and(images, _per_image(mask))


def _solarize_batch(images: tf.Tensor, threshold: tf.Tensor) -> tf.Tensor:
    """ImageOps.solarize: x >= threshold becomes 255 - x (= x XOR 255)."""
    at_or_above = tf.cast(images, tf.int32) >= _per_image(tf.cast(threshold, tf.int32))
    return tf.bitwise.bitwise_xor(images, tf.cast(at_or_above, tf.uint8) * 255)


def _solarize_add_batch(images: tf.Tensor, add: tf.Tensor, threshold: int = 128) -> tf.Tensor:
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


def _auto_contrast_batch(images: tf.Tensor, _arg: tf.Tensor | None = None) -> tf.Tensor:
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


def _equalize_batch(images: tf.Tensor, _arg: tf.Tensor | None = None) -> tf.Tensor:
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


def _affine(images: tf.Tensor, matrix: tf.Tensor, fill: Sequence[int], taps: str) -> tf.Tensor:
    """PIL Image.transform(size, AFFINE, (a, b, c, d, e, f), BILINEAR, fillcolor=fill), batched.

    matrix: float64 [N, 6]. Output pixel (x, y) samples the input at u = a (x+.5) + b (y+.5) + c,
    v = d (x+.5) + e (y+.5) + f (PIL's coordinates: pixel centres at i + .5). Outside
    [0, W) x [0, H) it is the fill colour; inside, PIL interpolates at (u - .5, v - .5) between
    the 4 neighbouring pixels with indices clamped to the image (x first, then y), then
    truncates. Coordinates, the inside test and the interpolation are float64 in PIL's order of
    operations (float32 interpolation would truncate values within ~1e-6 of an integer
    differently: ~1% of pixels for a 13.2-pixel shift), at ~20% more time for these ops.
    taps: 'x' when only x varies along a row (d=0, e=1, f=0: ShearX, TranslateX), 'y' for
    columns (a=1, b=0, c=0: ShearY, TranslateY), 'xy' in general (Rotate): the 1-D cases gather
    2 neighbours instead of 4. Pixels come from the image padded by its edge pixels (which is
    the clamping) with the fill colour appended, so outside points read the fill exactly.
    """
    n, h, w = tf.shape(images)[0], images.shape[1], images.shape[2]
    a, b, c, d, e, f = (t[:, None, None] for t in tf.unstack(tf.cast(matrix, tf.float64), 6, 1))
    xs = (tf.range(w, dtype=tf.float64) + 0.5)[None, None, :]
    ys = (tf.range(h, dtype=tf.float64) + 0.5)[None, :, None]
    # Edge copies around the image (two concats: ~20x faster than tf.pad's SYMMETRIC mode).
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

    def masked(at: tf.Tensor, keep: tf.Tensor) -> tf.Tensor:
        return fill_index + keep * (at - fill_index)

    gather = lambda i: tf.cast(tf.gather(table, i), tf.float64)
    lerp = lambda p, q, t: p + (q - p) * t
    if taps == "x":  # v == y + .5 exactly
        u = (a * xs + b * ys) + c  # [N, H, W]
        keep = tf.cast((u >= 0.0) & (u < w), tf.int32)
        x0, dx = lower_and_frac(u, keep)
        i0 = masked(first + tf.range(h)[None, :, None] * stride + x0, keep)
        out = lerp(gather(i0), gather(i0 + keep), dx)
    elif taps == "y":  # u == x + .5 exactly
        v = (d * xs + e * ys) + f
        keep = tf.cast((v >= 0.0) & (v < h), tf.int32)
        y0, dy = lower_and_frac(v, keep)
        i0 = masked(first + y0 * stride + tf.range(w)[None, None, :], keep)
        out = lerp(gather(i0), gather(i0 + keep * stride), dy)
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


def _matrix(*entries: tf.Tensor) -> tf.Tensor:
    """Stack per-image affine entries (float64 [N] tensors or Python numbers) into [N, 6]."""
    ref = next(t for t in entries if isinstance(t, tf.Tensor))
    return tf.stack(
        [
            t if isinstance(t, tf.Tensor) else tf.fill(tf.shape(ref), tf.constant(t, tf.float64))
            for t in entries
        ],
        axis=1,
    )


def _rotate_matrix(degrees: tf.Tensor, h: int, w: int) -> tf.Tensor:
    """PIL Image.rotate(degrees) as an affine matrix: counter-clockwise about (w/2, h/2), with
    PIL's angle % 360 and cos/sin rounded to 15 decimals (so 90-degree turns are exact)."""
    angle = -tf.math.floormod(tf.cast(degrees, tf.float64), 360.0) * (math.pi / 180.0)
    cos = tf.round(tf.cos(angle) * 1e15) / 1e15
    sin = tf.round(tf.sin(angle) * 1e15) / 1e15
    cx, cy = w / 2.0, h / 2.0
    c = cos * -cx + sin * -cy + cx
    f = -sin * -cx + cos * -cy + cy
    return tf.stack([cos, sin, c, -sin, cos, f], axis=1)


def _rotate_batch(images: tf.Tensor, degrees: tf.Tensor, fill: Sequence[int]) -> tf.Tensor:
    matrix = _rotate_matrix(degrees, images.shape[1], images.shape[2])
    return _affine(images, matrix, fill, taps="xy")


def _shear_x_batch(images: tf.Tensor, factor: tf.Tensor, fill: Sequence[int]) -> tf.Tensor:
    s = tf.cast(factor, tf.float64)
    return _affine(images, _matrix(1.0, s, 0.0, 0.0, 1.0, 0.0), fill, taps="x")


def _shear_y_batch(images: tf.Tensor, factor: tf.Tensor, fill: Sequence[int]) -> tf.Tensor:
    s = tf.cast(factor, tf.float64)
    return _affine(images, _matrix(1.0, 0.0, 0.0, s, 1.0, 0.0), fill, taps="y")


def _translate_x_abs_batch(images: tf.Tensor, pixels: tf.Tensor, fill: Sequence[int]) -> tf.Tensor:
    t = tf.cast(pixels, tf.float64)
    return _affine(images, _matrix(1.0, 0.0, t, 0.0, 1.0, 0.0), fill, taps="x")


def _translate_y_abs_batch(images: tf.Tensor, pixels: tf.Tensor, fill: Sequence[int]) -> tf.Tensor:
    t = tf.cast(pixels, tf.float64)
    return _affine(images, _matrix(1.0, 0.0, 0.0, 0.0, 1.0, t), fill, taps="y")


def _translate_x_rel_batch(images: tf.Tensor, pct: tf.Tensor, fill: Sequence[int]) -> tf.Tensor:
    return _translate_x_abs_batch(images, tf.cast(pct, tf.float64) * images.shape[2], fill)


def _translate_y_rel_batch(images: tf.Tensor, pct: tf.Tensor, fill: Sequence[int]) -> tf.Tensor:
    return _translate_y_abs_batch(images, tf.cast(pct, tf.float64) * images.shape[1], fill)


# --------------------------------------------------------------------------------------------
# Level (magnitude) -> argument, vectorised: magnitude and sign are float64 [N].


@dataclasses.dataclass(frozen=True)
class _Hparams:
    translate_const: float
    translate_pct: float


def _frac(m: tf.Tensor) -> tf.Tensor:
    return m / LEVEL_DENOM


def _level_rotate(m, sign, hp):
    return _frac(m) * 30.0 * sign


def _level_enhance(m, sign, hp):
    return _frac(m) * 1.8 + 0.1


def _level_enhance_increasing(m, sign, hp):
    return tf.maximum(1.0 + sign * (_frac(m) * 0.9), 0.1)


def _level_posterize(m, sign, hp):
    return tf.cast(tf.floor(_frac(m) * 4.0), tf.int32)


def _level_posterize_increasing(m, sign, hp):
    return 4 - _level_posterize(m, sign, hp)


def _level_solarize(m, sign, hp):
    return tf.minimum(256, tf.cast(tf.floor(_frac(m) * 256.0), tf.int32))


def _level_solarize_increasing(m, sign, hp):
    return 256 - _level_solarize(m, sign, hp)


def _level_solarize_add(m, sign, hp):
    return tf.minimum(128, tf.cast(tf.floor(_frac(m) * 110.0), tf.int32))


def _level_shear(m, sign, hp):
    return _frac(m) * 0.3 * sign


def _level_translate_rel(m, sign, hp):
    return _frac(m) * hp.translate_pct * sign


def _level_translate_abs(m, sign, hp):
    return _frac(m) * float(hp.translate_const) * sign


def _level_none(m, sign, hp):
    return m


@dataclasses.dataclass(frozen=True)
class _Op:
    kernel: Callable[..., tf.Tensor]  # (images, arg) or (images, arg, fill)
    level: Callable[[tf.Tensor, tf.Tensor, _Hparams], tf.Tensor]
    geometric: bool = False


_OPS: dict[str, _Op] = {
    "AutoContrast": _Op(_auto_contrast_batch, _level_none),
    "Equalize": _Op(_equalize_batch, _level_none),
    "Invert": _Op(_invert_batch, _level_none),
    "Rotate": _Op(_rotate_batch, _level_rotate, geometric=True),
    "Posterize": _Op(_posterize_batch, _level_posterize),
    "PosterizeIncreasing": _Op(_posterize_batch, _level_posterize_increasing),
    "Solarize": _Op(_solarize_batch, _level_solarize),
    "SolarizeIncreasing": _Op(_solarize_batch, _level_solarize_increasing),
    "SolarizeAdd": _Op(_solarize_add_batch, _level_solarize_add),
    "Color": _Op(_color_batch, _level_enhance),
    "ColorIncreasing": _Op(_color_batch, _level_enhance_increasing),
    "Contrast": _Op(_contrast_batch, _level_enhance),
    "ContrastIncreasing": _Op(_contrast_batch, _level_enhance_increasing),
    "Brightness": _Op(_brightness_batch, _level_enhance),
    "BrightnessIncreasing": _Op(_brightness_batch, _level_enhance_increasing),
    "Sharpness": _Op(_sharpness_batch, _level_enhance),
    "SharpnessIncreasing": _Op(_sharpness_batch, _level_enhance_increasing),
    "ShearX": _Op(_shear_x_batch, _level_shear, geometric=True),
    "ShearY": _Op(_shear_y_batch, _level_shear, geometric=True),
    "TranslateX": _Op(_translate_x_abs_batch, _level_translate_abs, geometric=True),
    "TranslateY": _Op(_translate_y_abs_batch, _level_translate_abs, geometric=True),
    "TranslateXRel": _Op(_translate_x_rel_batch, _level_translate_rel, geometric=True),
    "TranslateYRel": _Op(_translate_y_rel_batch, _level_translate_rel, geometric=True),
}


def level_to_arg(
    name: str,
    magnitude: float | tf.Tensor,
    sign: float | tf.Tensor = 1.0,
    translate_const: float = 117,
    translate_pct: float = 0.45,
) -> tf.Tensor:
    """timm's LEVEL_TO_ARG[name] at `magnitude`, with the sign (+1 or -1) of _randomly_negate for
    the signed ops (ignored by the others); a scalar or one value per entry of magnitude."""
    if name not in _OPS:
        raise ValueError(f"name: unknown op {name!r}; known ops are {sorted(_OPS)}.")
    m = _as(magnitude, tf.float64)
    s = _as(sign, tf.float64)
    return _OPS[name].level(m, s, _Hparams(float(translate_const), float(translate_pct)))


def _apply_op(
    name: str,
    images: tf.Tensor,
    magnitude: tf.Tensor,
    sign: tf.Tensor,
    fill: Sequence[int],
    hp: _Hparams,
) -> tf.Tensor:
    """Op `name` on a batch [N, H, W, 3] at per-image magnitudes and signs (float64 [N])."""
    op = _OPS[name]
    arg = op.level(magnitude, sign, hp)
    if op.geometric:
        return op.kernel(images, arg, fill)
    return op.kernel(images, arg)


# --------------------------------------------------------------------------------------------
# One function per op on a single image (uint8 [H, W, 3]); each takes the op's argument.


def _as(value, dtype: tf.DType) -> tf.Tensor:
    """`value` as a `dtype` tensor; Python floats go straight to float64 (tf.cast would round
    them through float32 first)."""
    if isinstance(value, tf.Tensor | tf.Variable):
        return tf.cast(value, dtype)
    return tf.constant(np.asarray(value, dtype=dtype.as_numpy_dtype))


def _single(kernel: Callable[..., tf.Tensor], image: tf.Tensor, arg, *extra) -> tf.Tensor:
    image = _check_image(image, "image", rank=3)
    return kernel(image[None], tf.reshape(arg, [1]), *extra)[0]


def auto_contrast(image: tf.Tensor) -> tf.Tensor:
    """ImageOps.autocontrast(image): each channel stretched to [0, 255] (cutoff 0)."""
    return _single(_auto_contrast_batch, image, 0.0)


def equalize(image: tf.Tensor) -> tf.Tensor:
    """ImageOps.equalize(image): per-channel histogram equalisation with PIL's LUT."""
    return _single(_equalize_batch, image, 0.0)


def invert(image: tf.Tensor) -> tf.Tensor:
    """ImageOps.invert(image): 255 - x."""
    return _single(_invert_batch, image, 0.0)


def posterize(image: tf.Tensor, bits: int | tf.Tensor) -> tf.Tensor:
    """ImageOps.posterize: keep the top `bits` bits (>= 8: unchanged, 0: black)."""
    return _single(_posterize_batch, image, _as(bits, tf.int32))


def solarize(image: tf.Tensor, threshold: int | tf.Tensor) -> tf.Tensor:
    """ImageOps.solarize: x < threshold stays, others become 255 - x."""
    return _single(_solarize_batch, image, _as(threshold, tf.int32))


def solarize_add(image: tf.Tensor, add: int | tf.Tensor, threshold: int = 128) -> tf.Tensor:
    """timm's solarize_add: x < threshold becomes min(255, x + add), others stay."""
    return _single(_solarize_add_batch, image, _as(add, tf.int32), threshold)


def color(image: tf.Tensor, factor: float | tf.Tensor) -> tf.Tensor:
    """ImageEnhance.Color: blend with the grey (PIL L) image."""
    return _single(_color_batch, image, _as(factor, tf.float32))


def contrast(image: tf.Tensor, factor: float | tf.Tensor) -> tf.Tensor:
    """ImageEnhance.Contrast: blend with a flat image at the rounded mean grey level."""
    return _single(_contrast_batch, image, _as(factor, tf.float32))


def brightness(image: tf.Tensor, factor: float | tf.Tensor) -> tf.Tensor:
    """ImageEnhance.Brightness: blend with black."""
    return _single(_brightness_batch, image, _as(factor, tf.float32))


def sharpness(image: tf.Tensor, factor: float | tf.Tensor) -> tf.Tensor:
    """ImageEnhance.Sharpness: blend with the SMOOTH-filtered image (border pixels unchanged)."""
    return _single(_sharpness_batch, image, _as(factor, tf.float32))


def rotate(
    image: tf.Tensor, degrees: float | tf.Tensor, fill: Sequence[int] = DEFAULT_FILL
) -> tf.Tensor:
    """Image.rotate(degrees, BILINEAR, fillcolor=fill): counter-clockwise about the centre."""
    return _single(_rotate_batch, image, _as(degrees, tf.float64), _check_fill(fill))


def shear_x(
    image: tf.Tensor, factor: float | tf.Tensor, fill: Sequence[int] = DEFAULT_FILL
) -> tf.Tensor:
    """Affine (1, factor, 0, 0, 1, 0): x_in = x + factor * y, about the top-left corner."""
    return _single(_shear_x_batch, image, _as(factor, tf.float64), _check_fill(fill))


def shear_y(
    image: tf.Tensor, factor: float | tf.Tensor, fill: Sequence[int] = DEFAULT_FILL
) -> tf.Tensor:
    """Affine (1, 0, 0, factor, 1, 0): y_in = factor * x + y, about the top-left corner."""
    return _single(_shear_y_batch, image, _as(factor, tf.float64), _check_fill(fill))


def translate_x_rel(
    image: tf.Tensor, pct: float | tf.Tensor, fill: Sequence[int] = DEFAULT_FILL
) -> tf.Tensor:
    """Affine (1, 0, pct * W, 0, 1, 0): content moves left by pct of the width (pct > 0)."""
    return _single(_translate_x_rel_batch, image, _as(pct, tf.float64), _check_fill(fill))


def translate_y_rel(
    image: tf.Tensor, pct: float | tf.Tensor, fill: Sequence[int] = DEFAULT_FILL
) -> tf.Tensor:
    """Affine (1, 0, 0, 0, 1, pct * H): content moves up by pct of the height (pct > 0)."""
    return _single(_translate_y_rel_batch, image, _as(pct, tf.float64), _check_fill(fill))


def translate_x_abs(
    image: tf.Tensor, pixels: float | tf.Tensor, fill: Sequence[int] = DEFAULT_FILL
) -> tf.Tensor:
    """Affine (1, 0, pixels, 0, 1, 0): timm's TranslateX (not in RandAugment's op sets)."""
    return _single(_translate_x_abs_batch, image, _as(pixels, tf.float64), _check_fill(fill))


def translate_y_abs(
    image: tf.Tensor, pixels: float | tf.Tensor, fill: Sequence[int] = DEFAULT_FILL
) -> tf.Tensor:
    """Affine (1, 0, 0, 0, 1, pixels): timm's TranslateY (not in RandAugment's op sets)."""
    return _single(_translate_y_abs_batch, image, _as(pixels, tf.float64), _check_fill(fill))


# --------------------------------------------------------------------------------------------
# Randomness: TF's stateless uniform stream, one seed per example.


def num_uniforms(params: RandAugmentParams) -> int:
    """How many stateless uniforms one example consumes: 4 per layer (op, apply, magnitude, sign),
    plus one per op for weighted choice."""
    weighted = len(params.ops) if params.choice_weights is not None else 0
    return 4 * params.num_layers + weighted


_MASK32 = 0xFFFFFFFF


def _philox4x32(counter, key):
    """TF's PhiloxRandom (4x32, 10 rounds) on uint64 tensors holding 32-bit words."""
    mask = tf.constant(_MASK32, tf.uint64)
    shift = tf.constant(32, tf.uint64)

    def round_(i, c0, c1, c2, c3, k0, k1):
        p0 = tf.constant(0xD2511F53, tf.uint64) * c0
        p1 = tf.constant(0xCD9E8D57, tf.uint64) * c2
        hi0, lo0 = tf.bitwise.right_shift(p0, shift), tf.bitwise.bitwise_and(p0, mask)
        hi1, lo1 = tf.bitwise.right_shift(p1, shift), tf.bitwise.bitwise_and(p1, mask)
        c0, c1, c2, c3 = (
            tf.bitwise.bitwise_xor(tf.bitwise.bitwise_xor(hi1, c1), k0),
            lo1,
            tf.bitwise.bitwise_xor(tf.bitwise.bitwise_xor(hi0, c3), k1),
            lo0,
        )
        k0 = tf.bitwise.bitwise_and(k0 + tf.constant(0x9E3779B9, tf.uint64), mask)
        k1 = tf.bitwise.bitwise_and(k1 + tf.constant(0xBB67AE85, tf.uint64), mask)
        return i + 1, c0, c1, c2, c3, k0, k1

    # 10 rounds (the key bump after the last one is unused); a loop keeps the graph small.
    state = tf.while_loop(
        lambda i, *_: i < 10, round_, (tf.constant(0), *counter, *key), maximum_iterations=10
    )
    return state[1:5]


def stateless_uniform_rows(seeds: tf.Tensor, num: int) -> tf.Tensor:
    """Row b equals tf.random.stateless_uniform([num], seeds[b]) (float32, CPU Philox), for a whole
    batch of seeds [B, 2] (int32 or int64) at once: TF's seed scrambling, then Philox counters."""
    seeds = tf.convert_to_tensor(seeds)
    if num == 0:
        return tf.zeros([tf.shape(seeds)[0], 0], tf.float32)
    words = tf.cast(tf.cast(seeds, tf.int64), tf.uint64)  # int32 seeds sign-extend, as in TF
    mask = tf.constant(_MASK32, tf.uint64)
    shift = tf.constant(32, tf.uint64)
    s0, s1 = words[:, 0], words[:, 1]
    lo = lambda x: tf.bitwise.bitwise_and(x, mask)
    hi = lambda x: tf.bitwise.right_shift(x, shift)
    init_key = (
        tf.fill(tf.shape(s0), tf.constant(0x3EC8F720, tf.uint64)),
        tf.fill(tf.shape(s0), tf.constant(0x02461E29, tf.uint64)),
    )
    mix = _philox4x32((lo(s0), hi(s0), lo(s1), hi(s1)), init_key)
    groups = (num + 3) // 4  # each Philox call gives 4 words; call g uses counter word 0 = g
    g = tf.cast(tf.range(groups, dtype=tf.int64), tf.uint64)[None, :]
    zeros = tf.zeros_like(s0)[:, None] + tf.zeros_like(g)  # [B, groups]
    col = lambda x: x[:, None] + zeros
    counter = (g + zeros, zeros, col(mix[2]), col(mix[3]))
    out = _philox4x32(counter, (col(mix[0]), col(mix[1])))
    out = tf.reshape(tf.stack(out, axis=-1), [-1, groups * 4])[:, :num]
    mantissa = tf.bitwise.bitwise_and(out, tf.constant(0x7FFFFF, tf.uint64))
    return tf.cast(mantissa, tf.float32) / 8388608.0  # TF's Uint32ToFloat: [0, 1), 23 bits


class PolicyDraws(NamedTuple):
    """The random choices of the policy for each example and layer ([B, num_layers] each)."""

    op: tf.Tensor  # int32: index into params.ops
    apply: tf.Tensor  # bool: the layer is applied (probability params.prob)
    magnitude: tf.Tensor  # float64: sampled and clipped to [0, params.magnitude_max]
    sign: tf.Tensor  # float64: +1 or -1, used by the signed ops (timm's _randomly_negate)


def policy_draws(seeds: tf.Tensor, params: RandAugmentParams) -> PolicyDraws:
    """What `rand_augment` draws for each stateless seed of seeds [B, 2]: example b's draws come
    from tf.random.stateless_uniform([num_uniforms(params)], seeds[b])."""
    _check_params(params)
    seeds = _check_seed(seeds, "seeds", rank=2)
    return PolicyDraws(*_draws(stateless_uniform_rows(seeds, num_uniforms(params)), params))


def _draws(u: tf.Tensor, params: RandAugmentParams):
    """Per-example policy draws from uniforms u [B, num_uniforms]: op index [B, n] int32, apply
    [B, n] bool, magnitude [B, n] float64 (sampled and clipped), sign [B, n] float64 (+-1)."""
    n, num_ops = params.num_layers, len(params.ops)
    if n == 0:
        empty = tf.zeros([tf.shape(u)[0], 0], tf.float64)
        return tf.cast(empty, tf.int32), tf.cast(empty, tf.bool), empty, empty
    u = tf.cast(u, tf.float64)
    layers = tf.reshape(u[:, : 4 * n], [-1, n, 4])
    if params.choice_weights is None:
        op = tf.minimum(tf.cast(tf.floor(layers[..., 0] * num_ops), tf.int32), num_ops - 1)
    else:
        # Weighted choice without replacement (np.random.choice(replace=False, p=w)): the n
        # largest keys log(u) / w (Efraimidis-Spirakis) give the same ordered distribution.
        weights = tf.constant(params.choice_weights, tf.float64)
        keys = tf.math.log(tf.maximum(u[:, 4 * n :], 1e-300)) / weights
        op = tf.math.top_k(keys, k=n, sorted=True).indices
    apply = layers[..., 1] < params.prob
    m, mstd = params.magnitude, params.magnitude_std
    if mstd == math.inf:
        magnitude = layers[..., 2] * m  # random.uniform(0, m)
    elif mstd > 0:
        magnitude = m + mstd * tf.math.ndtri(tf.clip_by_value(layers[..., 2], 1e-12, 1.0 - 1e-12))
    else:
        magnitude = tf.fill(tf.shape(layers[..., 2]), tf.constant(float(m), tf.float64))
    magnitude = tf.clip_by_value(magnitude, 0.0, params.magnitude_max)
    sign = tf.where(layers[..., 3] < 0.5, 1.0, -1.0)
    return op, apply, magnitude, tf.cast(sign, tf.float64)


# --------------------------------------------------------------------------------------------
# The policy.


def _check_image(image: tf.Tensor, name: str, rank: int) -> tf.Tensor:
    image = tf.convert_to_tensor(image)
    if image.dtype != tf.uint8:
        raise ValueError(f"{name} must be uint8 (0..255 pixels), got {image.dtype.name}.")
    if image.shape.rank != rank or image.shape[-1] != 3:
        want = "[H, W, 3]" if rank == 3 else "[B, H, W, 3]"
        raise ValueError(f"{name} must have shape {want}, got {image.shape}.")
    if image.shape[-3] is None or image.shape[-2] is None or min(image.shape[-3:-1]) < 3:
        raise ValueError(
            f"{name} needs a static height and width of at least 3 pixels, got {image.shape}; "
            "set the shape (tensor.set_shape) before calling."
        )
    return image


def _check_fill(fill: Sequence[int]) -> tuple[int, int, int]:
    values = tuple(int(v) for v in fill)
    if len(values) != 3 or not all(0 <= v <= 255 for v in values):
        raise ValueError(f"img_mean/fill must be three integers in [0, 255], got {fill!r}.")
    return values


def _check_seed(seed: tf.Tensor, name: str, rank: int) -> tf.Tensor:
    seed = tf.convert_to_tensor(seed)
    if seed.dtype not in (tf.int32, tf.int64):
        raise ValueError(f"{name} must be int32 or int64, got {seed.dtype.name}.")
    if seed.shape.rank != rank or seed.shape[-1] != 2:
        want = "[2]" if rank == 1 else "[B, 2]"
        raise ValueError(f"{name} must have shape {want} (a stateless seed), got {seed.shape}.")
    return seed


def _check_params(params: RandAugmentParams) -> None:
    if not isinstance(params, RandAugmentParams):
        raise ValueError(
            f"params must be a RandAugmentParams (from parse_config_str), got {type(params)}."
        )


def rand_augment(
    image: tf.Tensor,
    seed: tf.Tensor,
    params: RandAugmentParams,
    img_mean: Sequence[int] = (124, 116, 104),
    translate_const: float = 117,
    translate_pct: float = 0.45,
) -> tf.Tensor:
    """timm's RandAugment on one uint8 image [H, W, 3], all randomness from the stateless `seed`
    ([2] int32/int64): the same seed gives the same image, so a caller that derives the seed from
    (seed, epoch, index) can reproduce any example. For batches use `rand_augment_batch`."""
    _check_params(params)
    image = _check_image(image, "image", rank=3)
    seed = _check_seed(seed, "seed", rank=1)
    fill = _check_fill(img_mean)
    hp = _Hparams(float(translate_const), float(translate_pct))
    if params.num_layers == 0:
        return image
    static_shape = image.shape
    u = tf.random.stateless_uniform([num_uniforms(params)], seed=seed, dtype=tf.float32)
    op, apply, magnitude, sign = _draws(u[None], params)

    def layer_step(layer: tf.Tensor, image: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        branch = tf.where(apply[0, layer], op[0, layer], len(params.ops))  # last: not applied
        m, s = magnitude[:, layer], sign[:, layer]

        def run(name: str) -> Callable[[], tf.Tensor]:
            return lambda: _apply_op(name, image[None], m, s, fill, hp)[0]

        image = tf.switch_case(branch, [*(run(name) for name in params.ops), lambda: image])
        image.set_shape(static_shape)
        return layer + 1, image

    # A loop, not unrolled layers: half the graph, so tf.data instantiates the function faster.
    _, image = tf.while_loop(
        lambda layer, _: layer < params.num_layers,
        layer_step,
        (tf.constant(0), image),
        maximum_iterations=params.num_layers,
    )
    return image


def rand_augment_batch(
    images: tf.Tensor,
    seeds: tf.Tensor,
    params: RandAugmentParams,
    img_mean: Sequence[int] = (124, 116, 104),
    translate_const: float = 117,
    translate_pct: float = 0.45,
) -> tf.Tensor:
    """`rand_augment` on each image of a uint8 batch [B, H, W, 3] with its own seed (seeds [B, 2]);
    equal to mapping `rand_augment` over (images, seeds), but each layer partitions the batch by
    the drawn op and runs every op once, vectorised, on the images that drew it."""
    _check_params(params)
    images = _check_image(images, "images", rank=4)
    seeds = _check_seed(seeds, "seeds", rank=2)
    fill = _check_fill(img_mean)
    hp = _Hparams(float(translate_const), float(translate_pct))
    if params.num_layers == 0:
        return images
    static_shape = images.shape
    op, apply, magnitude, sign = policy_draws(seeds, params)
    num_ops = len(params.ops)
    positions = tf.range(tf.shape(images)[0])

    def layer_step(layer: tf.Tensor, images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        column = lambda t: tf.gather(t, layer, axis=1)
        part = tf.where(column(apply), column(op), num_ops)  # num_ops: not applied
        image_parts = tf.dynamic_partition(images, part, num_ops + 1)
        index_parts = tf.dynamic_partition(positions, part, num_ops + 1)
        m_parts = tf.dynamic_partition(column(magnitude), part, num_ops + 1)
        s_parts = tf.dynamic_partition(column(sign), part, num_ops + 1)
        outs = [
            _apply_op(name, image_parts[i], m_parts[i], s_parts[i], fill, hp)
            for i, name in enumerate(params.ops)
        ]
        images = tf.dynamic_stitch(index_parts, [*outs, image_parts[num_ops]])
        images.set_shape(static_shape)
        return layer + 1, images

    # A loop, not unrolled layers: half the graph, so tf.data instantiates the function faster.
    _, images = tf.while_loop(
        lambda layer, _: layer < params.num_layers,
        layer_step,
        (tf.constant(0), images),
        maximum_iterations=params.num_layers,
    )
    return images


def op_names() -> tuple[str, ...]:
    """Every op name this module knows (timm's NAME_TO_OP minus the 3-Augment extras)."""
    return tuple(_OPS)


__all__ = [
    "DEFAULT_FILL",
    "LEVEL_DENOM",
    "RAND_INCREASING_TRANSFORMS",
    "RAND_TRANSFORMS",
    "RAND_WEIGHTED_0",
    "PolicyDraws",
    "RandAugmentParams",
    "auto_contrast",
    "brightness",
    "color",
    "contrast",
    "equalize",
    "invert",
    "level_to_arg",
    "num_uniforms",
    "op_names",
    "parse_config_str",
    "policy_draws",
    "posterize",
    "rand_augment",
    "rand_augment_batch",
    "rotate",
    "sharpness",
    "shear_x",
    "shear_y",
    "solarize",
    "solarize_add",
    "stateless_uniform_rows",
    "translate_x_abs",
    "translate_x_rel",
    "translate_y_abs",
    "translate_y_rel",
]
