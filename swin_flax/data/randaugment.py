"""timm's RandAugment (`timm/data/auto_augment.py`, on PIL images) in TensorFlow ops: `num_layers`
ops drawn with replacement (for 'tweights': weighted, without replacement), each applied with
probability `prob` at a magnitude drawn as RandAugmentParams says; the ops are `pillow_ops.py`, their
arguments timm's LEVEL_TO_ARG (translate_const only moves TranslateX/Y, which no RandAugment string
selects).

Example b draws `tf.random.stateless_uniform([k], seeds[b])`, whatever its batch or host count. TF
has no op drawing from a batch of seeds (`tf.vectorized_map` has no rule for the stateless ops;
`tf.map_fn` over 1024 seeds costs ~10x), so `stateless_uniform_rows` is a vectorised copy of TF's
Philox-4x32-10, checked bit for bit.

Known differences from timm: geometric ops always resample bilinearly (timm picks bilinear or
bicubic at random); config strings timm would silently misread ('mstdinf', 'tfoo') raise ValueError.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import tensorflow as tf

from swin_flax.data import pillow_ops as ops
from swin_flax.data.randaugment_params import LEVEL_DENOM, OP_NAMES, RandAugmentParams

# timm's LEVEL_TO_ARG, vectorised: (r = magnitude / LEVEL_DENOM, sign, (translate_const,
# translate_pct)) -> the op's argument; r and sign float64 [N], in timm's operations and order.
_ROTATE = lambda r, s, hp: r * 30.0 * s
_ENHANCE = lambda r, s, hp: r * 1.8 + 0.1
_ENHANCE_INC = lambda r, s, hp: tf.maximum(1.0 + s * (r * 0.9), 0.1)
_POSTERIZE = lambda r, s, hp: tf.cast(tf.floor(r * 4.0), tf.int32)
_SOLARIZE = lambda r, s, hp: tf.minimum(256, tf.cast(tf.floor(r * 256.0), tf.int32))
_SOLARIZE_ADD = lambda r, s, hp: tf.minimum(128, tf.cast(tf.floor(r * 110.0), tf.int32))
_SHEAR = lambda r, s, hp: r * 0.3 * s
_TRANSLATE = lambda r, s, hp: r * hp[0] * s
_TRANSLATE_REL = lambda r, s, hp: r * hp[1] * s
_NONE = lambda r, s, hp: r  # the op takes no argument

# op name -> (Pillow-exact kernel, level -> argument, takes the fill colour).
_OPS = {
    "AutoContrast": (ops.auto_contrast, _NONE, False),
    "Equalize": (ops.equalize, _NONE, False),
    "Invert": (ops.invert, _NONE, False),
    "Rotate": (ops.rotate, _ROTATE, True),
    "Posterize": (ops.posterize, _POSTERIZE, False),
    "PosterizeIncreasing": (ops.posterize, lambda r, s, hp: 4 - _POSTERIZE(r, s, hp), False),
    "Solarize": (ops.solarize, _SOLARIZE, False),
    "SolarizeIncreasing": (ops.solarize, lambda r, s, hp: 256 - _SOLARIZE(r, s, hp), False),
    "SolarizeAdd": (ops.solarize_add, _SOLARIZE_ADD, False),
    "Color": (ops.color, _ENHANCE, False),
    "ColorIncreasing": (ops.color, _ENHANCE_INC, False),
    "Contrast": (ops.contrast, _ENHANCE, False),
    "ContrastIncreasing": (ops.contrast, _ENHANCE_INC, False),
    "Brightness": (ops.brightness, _ENHANCE, False),
    "BrightnessIncreasing": (ops.brightness, _ENHANCE_INC, False),
    "Sharpness": (ops.sharpness, _ENHANCE, False),
    "SharpnessIncreasing": (ops.sharpness, _ENHANCE_INC, False),
    "ShearX": (ops.shear_x, _SHEAR, True),
    "ShearY": (ops.shear_y, _SHEAR, True),
    "TranslateX": (ops.translate_x, _TRANSLATE, True),
    "TranslateY": (ops.translate_y, _TRANSLATE, True),
    "TranslateXRel": (ops.translate_x_rel, _TRANSLATE_REL, True),
    "TranslateYRel": (ops.translate_y_rel, _TRANSLATE_REL, True),
}
assert tuple(_OPS) == OP_NAMES  # one list of names, in randaugment_params.py


def level_to_arg(
    name: str,
    magnitude: float | tf.Tensor,
    sign: float | tf.Tensor = 1.0,
    translate_const: float = 117,
    translate_pct: float = 0.45,
) -> tf.Tensor:
    """timm's LEVEL_TO_ARG[name] at `magnitude` (scalar or [N]), `sign` (+1/-1) as timm's
    _randomly_negate. Python floats go straight to float64 (tf.cast would round via float32)."""
    as64 = lambda x: tf.cast(x, tf.float64) if tf.is_tensor(x) else tf.constant(x, tf.float64)
    hp = (float(translate_const), float(translate_pct))
    return _OPS[name][1](as64(magnitude) / LEVEL_DENOM, as64(sign), hp)


# --------------------------------------------------------------------------------------------
# Randomness: TF's stateless uniform stream, one seed per example.

_u64 = lambda value: tf.constant(value, tf.uint64)
_lo = lambda x: tf.bitwise.bitwise_and(x, _u64(0xFFFFFFFF))  # the low 32-bit word of uint64 x
_hi = lambda x: tf.bitwise.right_shift(x, _u64(32))  # the high 32-bit word


def _philox4x32(counter, key):
    """TF's PhiloxRandom (4x32, 10 rounds) on uint64 tensors holding 32-bit words."""
    xor = tf.bitwise.bitwise_xor

    def round_(i, c0, c1, c2, c3, k0, k1):
        p0, p1 = _u64(0xD2511F53) * c0, _u64(0xCD9E8D57) * c2
        c0, c1, c2, c3 = xor(xor(_hi(p1), c1), k0), _lo(p1), xor(xor(_hi(p0), c3), k1), _lo(p0)
        return i + 1, c0, c1, c2, c3, _lo(k0 + _u64(0x9E3779B9)), _lo(k1 + _u64(0xBB67AE85))

    # 10 rounds (the key bump after the last one is unused); a loop keeps the graph small.
    state = tf.while_loop(
        lambda i, *_: i < 10, round_, (tf.constant(0), *counter, *key), maximum_iterations=10
    )
    return state[1:5]


def stateless_uniform_rows(seeds: tf.Tensor, num: int) -> tf.Tensor:
    """Row b equals tf.random.stateless_uniform([num], seeds[b]) (float32, CPU Philox), for seeds
    [B, 2] int32/int64 at once: TF's seed scrambling, then Philox counters."""
    words = tf.cast(tf.cast(seeds, tf.int64), tf.uint64)  # int32 seeds sign-extend, as in TF
    s0, s1 = words[:, 0], words[:, 1]
    init_key = (tf.fill(tf.shape(s0), _u64(k)) for k in (0x3EC8F720, 0x02461E29))
    mix = _philox4x32((_lo(s0), _hi(s0), _lo(s1), _hi(s1)), tuple(init_key))
    groups = (num + 3) // 4  # each Philox call gives 4 words; call g uses counter word 0 = g
    g = tf.cast(tf.range(groups, dtype=tf.int64), tf.uint64)[None, :]
    zeros = tf.zeros_like(s0)[:, None] + tf.zeros_like(g)  # [B, groups]
    col = lambda x: x[:, None] + zeros
    out = _philox4x32((g + zeros, zeros, col(mix[2]), col(mix[3])), (col(mix[0]), col(mix[1])))
    out = tf.reshape(tf.stack(out, axis=-1), [-1, groups * 4])[:, :num]
    mantissa = tf.bitwise.bitwise_and(out, _u64(0x7FFFFF))
    return tf.cast(mantissa, tf.float32) / 8388608.0  # TF's Uint32ToFloat: [0, 1), 23 bits


class PolicyDraws(NamedTuple):
    """The policy's random choices, [B, num_layers] each."""

    op: tf.Tensor  # int32: index into params.ops
    apply: tf.Tensor  # bool: the layer is applied (probability params.prob)
    magnitude: tf.Tensor  # float64: sampled and clipped to [0, params.magnitude_max]
    sign: tf.Tensor  # float64: +1 or -1, used by the signed ops (timm's _randomly_negate)


def policy_draws(seeds: tf.Tensor, params: RandAugmentParams) -> PolicyDraws:
    """What `rand_augment_batch` draws from seeds [B, 2] (num_layers >= 1): per example, 4 uniforms
    per layer (op, apply, magnitude, sign), then one per op for weighted choice."""
    n, num_ops = params.num_layers, len(params.ops)
    num = 4 * n + (num_ops if params.choice_weights is not None else 0)
    u = tf.cast(stateless_uniform_rows(seeds, num), tf.float64)
    layers = tf.reshape(u[:, : 4 * n], [tf.shape(u)[0], n, 4])
    if params.choice_weights is None:
        op = tf.minimum(tf.cast(tf.floor(layers[..., 0] * num_ops), tf.int32), num_ops - 1)
    else:
        # Weighted choice without replacement (np.random.choice(replace=False, p=w)): the n
        # largest keys log(u) / w (Efraimidis-Spirakis) give the same ordered distribution.
        weights = tf.constant(params.choice_weights, tf.float64)
        keys = tf.math.log(tf.maximum(u[:, 4 * n :], 1e-300)) / weights
        op = tf.math.top_k(keys, k=n, sorted=True).indices
    m, mstd = params.magnitude, params.magnitude_std
    if mstd == math.inf:
        magnitude = layers[..., 2] * m  # random.uniform(0, m)
    elif mstd > 0:
        magnitude = m + mstd * tf.math.ndtri(tf.clip_by_value(layers[..., 2], 1e-12, 1.0 - 1e-12))
    else:
        magnitude = tf.fill(tf.shape(layers[..., 2]), tf.constant(float(m), tf.float64))
    return PolicyDraws(
        op=op,
        apply=layers[..., 1] < params.prob,
        magnitude=tf.clip_by_value(magnitude, 0.0, params.magnitude_max),
        sign=tf.cast(tf.where(layers[..., 3] < 0.5, 1.0, -1.0), tf.float64),
    )


# --------------------------------------------------------------------------------------------
# The policy on images.


def rand_augment_batch(
    images: tf.Tensor,
    seeds: tf.Tensor,
    params: RandAugmentParams,
    img_mean: Sequence[int] = (124, 116, 104),
    translate_const: float = 117,
    translate_pct: float = 0.45,
) -> tf.Tensor:
    """timm's RandAugment on uint8 [B, H, W, 3] (H, W static, >= 3), image b drawing from seeds[b]
    only ([B, 2] int32/int64). Each layer runs every op once, on the images that drew it."""
    images, seeds = tf.convert_to_tensor(images), tf.convert_to_tensor(seeds)
    fill = tuple(int(v) for v in img_mean)
    assert isinstance(params, RandAugmentParams), f"params must be a RandAugmentParams: {params!r}"
    assert images.dtype == tf.uint8 and images.shape.rank == 4 and images.shape[-1] == 3, (
        f"images must be uint8 [B, H, W, 3], got {images.dtype.name} {images.shape}"
    )
    assert None not in images.shape[1:3] and min(images.shape[1:3]) >= 3, images.shape
    assert seeds.dtype in (tf.int32, tf.int64) and seeds.shape.rank == 2 and seeds.shape[1] == 2, (
        f"seeds must be int32 or int64 [B, 2], got {seeds.dtype.name} {seeds.shape}"
    )
    assert len(fill) == 3 and all(0 <= v <= 255 for v in fill), (
        f"img_mean/fill must be three integers in [0, 255], got {img_mean!r}"
    )
    if params.num_layers == 0:
        return images
    draws = policy_draws(seeds, params)
    num_ops, static_shape = len(params.ops), images.shape
    positions = tf.range(tf.shape(images)[0])

    def layer_step(layer: tf.Tensor, images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        column = lambda t: tf.gather(t, layer, axis=1)
        part = tf.where(column(draws.apply), column(draws.op), num_ops)  # num_ops: not applied
        split = lambda t: tf.dynamic_partition(t, part, num_ops + 1)
        image_parts = split(images)
        m_parts, s_parts = split(column(draws.magnitude)), split(column(draws.sign))
        outs = []
        for i, name in enumerate(params.ops):
            kernel, _, geometric = _OPS[name]
            arg = level_to_arg(name, m_parts[i], s_parts[i], translate_const, translate_pct)
            outs.append(kernel(image_parts[i], arg, *([fill] if geometric else [])))
        images = tf.dynamic_stitch(split(positions), [*outs, image_parts[num_ops]])
        images.set_shape(static_shape)
        return layer + 1, images

    # A loop, not unrolled layers: half the graph, so tf.data instantiates the function faster.
    n = params.num_layers
    _, images = tf.while_loop(
        lambda layer, _: layer < n, layer_step, (tf.constant(0), images), maximum_iterations=n
    )
    return images
