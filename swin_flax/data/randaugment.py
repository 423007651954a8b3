"""RandAugment in TensorFlow ops with timm's semantics (`timm/data/auto_augment.py` on PIL images).

* The settings: `randaugment_params.parse_config_str` reads a timm config string
  ('rand-m9-mstd0.5') into `RandAugmentParams`.
* The ops: `pillow_ops.py`, Pillow's pixels exactly; `level_to_arg` is timm's magnitude ->
  argument mapping (`_LEVEL_DENOM` = 10), with a random sign (p = 0.5) for the signed ops.
* The policy: `num_layers` ops drawn uniformly with replacement (weighted and without replacement
  for 'tweights'), each applied with probability `prob`, magnitude ~ Normal(m, mstd) (uniform on
  [0, m] when mstd is infinite) clipped to [0, mmax] at every application.
* Randomness: example b's draws are `tf.random.stateless_uniform([k], seeds[b])` (see
  `policy_draws`), so an example's augmentation depends on its own seed only, never on the batch
  it sits in or the number of hosts. TF has no op that draws from a batch of seeds at once (its
  stateless ops take one seed per call, and `tf.vectorized_map` has no rule for them), and
  `tf.map_fn` over a host batch of 1024 seeds costs ~10x the vectorised draw, so
  `stateless_uniform_rows` is a vectorised copy of TF's Philox-4x32-10, checked bit for bit
  against the TF op in the tests. `rand_augment_batch` then runs each op once per layer, on the
  examples that drew it.

Hyper-parameters (timm's `hparams`): `img_mean` (fill colour), `translate_pct` (0.45, for the Rel
translations, which are the ones in RandAugment's op sets) and `translate_const` (pixels at
magnitude 10 for the absolute TranslateX/TranslateY ops only; no timm RandAugment config string
selects those, so the recipe's `translate_const=117` has no effect, in timm as here).

Known differences from timm: (1) timm resamples geometric ops with bilinear or bicubic chosen at
random per application unless hparams set 'interpolation' (the recipe does not); this port always
uses bilinear. (2) Config strings that timm would silently accept but misread (e.g. 'mstdinf',
'tfoo') raise ValueError here. Pillow's own: see `pillow_ops.py`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import tensorflow as tf

from swin_flax.data import pillow_ops as ops
from swin_flax.data.randaugment_params import LEVEL_DENOM, OP_NAMES, RandAugmentParams

# Re-exported for config.validate's `randaugment.parse_config_str` (its TF-free home is the above).
from swin_flax.data.randaugment_params import parse_config_str as parse_config_str

# timm's LEVEL_TO_ARG, vectorised: (magnitude, sign, (translate_const, translate_pct)) -> the op's
# argument; magnitude and sign float64 [N]. The same float64 operations in timm's order.
_Level = Callable[[tf.Tensor, tf.Tensor, tuple[float, float]], tf.Tensor]
_ROTATE: _Level = lambda m, s, hp: m / LEVEL_DENOM * 30.0 * s
_ENHANCE: _Level = lambda m, s, hp: m / LEVEL_DENOM * 1.8 + 0.1
_ENHANCE_INC: _Level = lambda m, s, hp: tf.maximum(1.0 + s * (m / LEVEL_DENOM * 0.9), 0.1)
_POSTERIZE: _Level = lambda m, s, hp: tf.cast(tf.floor(m / LEVEL_DENOM * 4.0), tf.int32)
_SOLARIZE: _Level = lambda m, s, hp: tf.minimum(
    256, tf.cast(tf.floor(m / LEVEL_DENOM * 256.0), tf.int32)
)
_SOLARIZE_ADD: _Level = lambda m, s, hp: tf.minimum(
    128, tf.cast(tf.floor(m / LEVEL_DENOM * 110.0), tf.int32)
)
_SHEAR: _Level = lambda m, s, hp: m / LEVEL_DENOM * 0.3 * s
_TRANSLATE: _Level = lambda m, s, hp: m / LEVEL_DENOM * float(hp[0]) * s
_TRANSLATE_REL: _Level = lambda m, s, hp: m / LEVEL_DENOM * hp[1] * s
_NONE: _Level = lambda m, s, hp: m

# op name -> (Pillow-exact kernel, level -> argument, takes the fill colour).
_OPS: dict[str, tuple[Callable[..., tf.Tensor], _Level, bool]] = {
    "AutoContrast": (ops.auto_contrast, _NONE, False),
    "Equalize": (ops.equalize, _NONE, False),
    "Invert": (ops.invert, _NONE, False),
    "Rotate": (ops.rotate, _ROTATE, True),
    "Posterize": (ops.posterize, _POSTERIZE, False),
    "PosterizeIncreasing": (ops.posterize, lambda m, s, hp: 4 - _POSTERIZE(m, s, hp), False),
    "Solarize": (ops.solarize, _SOLARIZE, False),
    "SolarizeIncreasing": (ops.solarize, lambda m, s, hp: 256 - _SOLARIZE(m, s, hp), False),
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
    """timm's LEVEL_TO_ARG[name] at `magnitude`, with the sign (+1 or -1) of _randomly_negate for
    the signed ops (ignored by the others); a scalar or one value per entry of magnitude.
    Public: what argument a policy's draw gives an op (the tests compare it with timm's)."""
    m, s = _float64(magnitude), _float64(sign)
    return _OPS[name][1](m, s, (float(translate_const), float(translate_pct)))


def _float64(x: float | tf.Tensor) -> tf.Tensor:
    """Python floats go straight to float64 (tf.cast would round them through float32 first)."""
    return tf.cast(x, tf.float64) if tf.is_tensor(x) else tf.constant(x, tf.float64)


# --------------------------------------------------------------------------------------------
# Randomness: TF's stateless uniform stream, one seed per example.


def num_uniforms(params: RandAugmentParams) -> int:
    """How many stateless uniforms one example consumes: 4 per layer (op, apply, magnitude, sign),
    plus one per op for weighted choice."""
    return 4 * params.num_layers + (len(params.ops) if params.choice_weights is not None else 0)


def _u64(value: int) -> tf.Tensor:
    return tf.constant(value, tf.uint64)


def _lo(x: tf.Tensor) -> tf.Tensor:
    """The low 32-bit word of uint64 x."""
    return tf.bitwise.bitwise_and(x, _u64(0xFFFFFFFF))


def _hi(x: tf.Tensor) -> tf.Tensor:
    """The high 32-bit word of uint64 x."""
    return tf.bitwise.right_shift(x, _u64(32))


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
    """Row b equals tf.random.stateless_uniform([num], seeds[b]) (float32, CPU Philox), for a whole
    batch of seeds [B, 2] (int32 or int64) at once: TF's seed scrambling, then Philox counters."""
    seeds = tf.convert_to_tensor(seeds)
    if num == 0:
        return tf.zeros([tf.shape(seeds)[0], 0], tf.float32)
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
    """The random choices of the policy for each example and layer ([B, num_layers] each)."""

    op: tf.Tensor  # int32: index into params.ops
    apply: tf.Tensor  # bool: the layer is applied (probability params.prob)
    magnitude: tf.Tensor  # float64: sampled and clipped to [0, params.magnitude_max]
    sign: tf.Tensor  # float64: +1 or -1, used by the signed ops (timm's _randomly_negate)


def policy_draws(seeds: tf.Tensor, params: RandAugmentParams) -> PolicyDraws:
    """What `rand_augment_batch` draws for each stateless seed of seeds [B, 2]: example b's draws
    come from tf.random.stateless_uniform([num_uniforms(params)], seeds[b]). Public: for looking
    at a policy (which ops, how strong) without running it."""
    u = tf.cast(stateless_uniform_rows(seeds, num_uniforms(params)), tf.float64)
    n, num_ops = params.num_layers, len(params.ops)
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
    sign = tf.where(layers[..., 3] < 0.5, 1.0, -1.0)
    return PolicyDraws(
        op=op,
        apply=layers[..., 1] < params.prob,
        magnitude=tf.clip_by_value(magnitude, 0.0, params.magnitude_max),
        sign=tf.cast(sign, tf.float64),
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
    """timm's RandAugment on each image of a uint8 batch [B, H, W, 3] (H, W static, >= 3), image b
    with all randomness from its own stateless seed seeds[b] ([B, 2] int32/int64): the same seed
    gives the same image, whatever the rest of the batch, so a caller that derives the seed from
    (seed, epoch, index) can reproduce any example. Each layer partitions the batch by the drawn
    op and runs every op once, vectorised, on the images that drew it."""
    images, seeds = tf.convert_to_tensor(images), tf.convert_to_tensor(seeds)
    assert isinstance(params, RandAugmentParams), f"params must be a RandAugmentParams: {params!r}"
    assert images.dtype == tf.uint8 and images.shape.rank == 4 and images.shape[-1] == 3, (
        f"images must be uint8 [B, H, W, 3], got {images.dtype.name} {images.shape}"
    )
    assert None not in images.shape[1:3] and min(images.shape[1:3]) >= 3, (
        f"images need a static height and width of at least 3 pixels, got {images.shape}"
    )
    assert seeds.dtype in (tf.int32, tf.int64) and seeds.shape.rank == 2 and seeds.shape[1] == 2, (
        f"seeds must be int32 or int64 [B, 2] (stateless seeds), got {seeds.dtype.name} "
        f"{seeds.shape}"
    )
    fill, hp = tuple(int(v) for v in img_mean), (float(translate_const), float(translate_pct))
    assert len(fill) == 3 and all(0 <= v <= 255 for v in fill), (
        f"img_mean/fill must be three integers in [0, 255], got {img_mean!r}"
    )
    if params.num_layers == 0:
        return images
    draws = policy_draws(seeds, params)
    num_ops, static_shape = len(params.ops), images.shape
    positions = tf.range(tf.shape(images)[0])

    def apply_op(name: str, images: tf.Tensor, m: tf.Tensor, s: tf.Tensor) -> tf.Tensor:
        kernel, level, geometric = _OPS[name]
        return kernel(images, level(m, s, hp), *([fill] if geometric else []))

    def layer_step(layer: tf.Tensor, images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        column = lambda t: tf.gather(t, layer, axis=1)
        part = tf.where(column(draws.apply), column(draws.op), num_ops)  # num_ops: not applied
        split = lambda t: tf.dynamic_partition(t, part, num_ops + 1)
        image_parts = split(images)
        m_parts, s_parts = split(column(draws.magnitude)), split(column(draws.sign))
        outs = [
            apply_op(op, image_parts[i], m_parts[i], s_parts[i]) for i, op in enumerate(params.ops)
        ]
        images = tf.dynamic_stitch(split(positions), [*outs, image_parts[num_ops]])
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


def rand_augment(
    image: tf.Tensor,
    seed: tf.Tensor,
    params: RandAugmentParams,
    img_mean: Sequence[int] = (124, 116, 104),
    translate_const: float = 117,
    translate_pct: float = 0.45,
) -> tf.Tensor:
    """`rand_augment_batch` on one uint8 image [H, W, 3] with its seed [2]: the same result as that
    image in any batch. Public: for per-example tf.data maps (batches run faster batched)."""
    images, seeds = tf.convert_to_tensor(image)[None], tf.convert_to_tensor(seed)[None]
    hp = dict(img_mean=img_mean, translate_const=translate_const, translate_pct=translate_pct)
    return rand_augment_batch(images, seeds, params, **hp)[0]
