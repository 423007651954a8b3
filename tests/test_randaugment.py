"""swin_flax.data.randaugment (with pillow_ops and randaugment_params) against timm's RandAugment on
PIL (tests/fixtures/randaugment.npz, written by scripts/fixtures/make_randaugment_fixtures.py), timm's
config-string rules, closed-form image operations and the policy's distributions.

Tolerances: at most 1 grey level per pixel; every op also has to keep its mean
|difference| tiny, so that a systematic rounding difference (rounding instead of truncating, a
half-pixel shift) fails even where it stays within 1 level. Today all ops match Pillow exactly on
the fixture: the TF ops use PIL's formulas and float64 where PIL uses double (coordinates and
bilinear interpolation); one level could appear only through floating-point details such as a
fused multiply-add in one library and not the other.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

from swin_flax.data import pillow_ops as po
from swin_flax.data import randaugment as ra
from swin_flax.data import randaugment_params as rp

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = np.load(ROOT / "tests/fixtures/randaugment.npz")
HPARAMS = json.loads(str(FIXTURE["hparams"]))
IMAGES = FIXTURE["images"]  # [4, 32, 32, 3]: 3 photographs and a synthetic edge-case image
FILL = tuple(HPARAMS["img_mean"])

# Each op name -> the Pillow-exact op, grouped by how it takes its argument.
POINT_NO_ARG = {"AutoContrast": po.auto_contrast, "Equalize": po.equalize, "Invert": po.invert}
POINT_ARG = {
    "Posterize": po.posterize,
    "PosterizeIncreasing": po.posterize,
    "Solarize": po.solarize,
    "SolarizeIncreasing": po.solarize,
    "SolarizeAdd": po.solarize_add,
    "Color": po.color,
    "ColorIncreasing": po.color,
    "Contrast": po.contrast,
    "ContrastIncreasing": po.contrast,
    "Brightness": po.brightness,
    "BrightnessIncreasing": po.brightness,
    "Sharpness": po.sharpness,
    "SharpnessIncreasing": po.sharpness,
}
GEOMETRIC = {
    "Rotate": po.rotate,
    "ShearX": po.shear_x,
    "ShearY": po.shear_y,
    "TranslateX": po.translate_x,
    "TranslateY": po.translate_y,
    "TranslateXRel": po.translate_x_rel,
    "TranslateYRel": po.translate_y_rel,
}


def one(op, image: np.ndarray, *args) -> np.ndarray:
    """A batched op on one image: its argument (a Python number, kept float64) and fill, if any."""
    extra = [tf.constant([args[0]], tf.float64), *args[1:]] if args else []
    return op(tf.constant(np.asarray(image)[None]), *extra)[0].numpy()


def _run_op(name: str, image: np.ndarray, arg: float, fill=FILL) -> np.ndarray:
    if name in POINT_NO_ARG:
        return one(POINT_NO_ARG[name], image)
    if name in POINT_ARG:
        return one(POINT_ARG[name], image, arg)
    return one(GEOMETRIC[name], image, arg, fill)


def _abs_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int64) - b.astype(np.int64))


# ----------------------------------------------------------------------------- timm parity


def test_op_sets_are_timms():
    assert tuple(FIXTURE["rand_transforms"]) == rp.RAND_TRANSFORMS
    assert tuple(FIXTURE["rand_increasing_transforms"]) == rp.RAND_INCREASING_TRANSFORMS
    assert tuple(rp.RAND_WEIGHTED_0) == tuple(FIXTURE["weighted_names"])
    np.testing.assert_array_equal(list(rp.RAND_WEIGHTED_0.values()), FIXTURE["weighted_weights"])
    assert set(POINT_NO_ARG) | set(POINT_ARG) | set(GEOMETRIC) == set(rp.OP_NAMES)


def test_level_to_arg_equals_timms_on_a_grid_of_magnitudes_and_signs():
    """timm's LEVEL_TO_ARG for every op with an argument, m in 0..12.5, both signs: bit for bit
    (the same float64 operations in the same order)."""
    for name, m, sign, expected in zip(
        FIXTURE["level_names"],
        FIXTURE["level_magnitudes"],
        FIXTURE["level_signs"],
        FIXTURE["level_args"],
    ):
        got = ra.level_to_arg(
            str(name),
            float(m),  # a Python float, as callers pass it
            float(sign or 1),
            translate_const=HPARAMS["translate_const"],
            translate_pct=HPARAMS["translate_pct"],
        ).numpy()
        assert got == expected, (name, m, sign, got, expected)


def _fixture_cases(kind: dict) -> list:
    """Fixture entries of the ops in `kind`, as pytest params named like 'Rotate-m9.0-sign-1'."""
    return [
        pytest.param(i, id=f"{name}-m{FIXTURE['magnitudes'][i]}-sign{FIXTURE['signs'][i]:+d}")
        for i, name in enumerate(FIXTURE["names"])
        if str(name) in kind
    ]


@pytest.mark.parametrize("case", _fixture_cases({**POINT_NO_ARG, **POINT_ARG}))
def test_point_op_reproduces_timm(case):
    """Each colour/point op at timm's argument for m = 9 and 4: within 1 grey level per pixel and
    no systematic rounding difference (mean |diff| <= 0.002)."""
    name, arg = str(FIXTURE["names"][case]), float(FIXTURE["args"][case])
    got = np.stack([_run_op(name, image, arg) for image in IMAGES])
    diff = _abs_diff(got, FIXTURE["outputs"][case])
    assert diff.max() <= 1 and diff.mean() <= 0.002, (name, arg, diff.max(), diff.mean())


@pytest.mark.parametrize("case", _fixture_cases(GEOMETRIC))
def test_geometric_op_reproduces_timm(case):
    """Rotate, ShearX/Y, TranslateX/Y(Rel) with bilinear resampling and img_mean fill at m = 9
    and 4, both signs: no pixel off by more than 1 and mean |diff| <= 0.002 (a wrong fill
    boundary or a half-pixel shift moves whole rows or columns and fails)."""
    name, arg = str(FIXTURE["names"][case]), float(FIXTURE["args"][case])
    got = np.stack([_run_op(name, image, arg) for image in IMAGES])
    diff = _abs_diff(got, FIXTURE["outputs"][case])
    assert diff.max() <= 1 and diff.mean() <= 0.002, (name, arg, diff.max(), diff.mean())


# ----------------------------------------------------------------------------- closed forms


def test_geometry_conventions():
    """Rotate turns counter-clockwise about the centre (90 degrees == np.rot90, PIL's fast path);
    integer translations move content left/up by exactly that many pixels and fill the rest."""
    image = IMAGES[0]
    np.testing.assert_array_equal(one(po.rotate, image, 90.0, FILL), np.rot90(image))
    np.testing.assert_array_equal(one(po.rotate, image, 0.0, FILL), image)
    moved = one(po.translate_x, image, 5.0, FILL)
    np.testing.assert_array_equal(moved[:, :27], image[:, 5:])
    assert (moved[:, 27:] == FILL).all()
    moved = one(po.translate_y, image, -3.0, FILL)
    np.testing.assert_array_equal(moved[3:], image[:-3])
    assert (moved[:3] == FILL).all()
    # Shear about the top-left corner: row y samples x + factor * (y + .5); factor 2 moves row 0
    # by exactly one pixel, row 15 by 31 (one pixel left), rows from 16 on are all fill.
    sheared = one(po.shear_x, image, 2.0, FILL)
    np.testing.assert_array_equal(sheared[0, :31], image[0, 1:])
    np.testing.assert_array_equal(sheared[15, 0], image[15, 31])
    assert (sheared[0, 31:] == FILL).all() and (sheared[15, 1:] == FILL).all()
    assert (sheared[16:] == FILL).all()


def test_point_ops_closed_forms():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    x = image.astype(np.int64)
    np.testing.assert_array_equal(one(po.invert, image), 255 - x)
    np.testing.assert_array_equal(one(po.posterize, image, 0), np.zeros_like(image))
    np.testing.assert_array_equal(one(po.posterize, image, 8), image)
    np.testing.assert_array_equal(one(po.posterize, image, 3), x & 0b11100000)
    np.testing.assert_array_equal(one(po.solarize, image, 256), image)
    np.testing.assert_array_equal(one(po.solarize, image, 0), 255 - x)
    np.testing.assert_array_equal(
        one(po.solarize_add, image, 99), np.where(x < 128, np.minimum(x + 99, 255), x)
    )
    np.testing.assert_array_equal(one(po.brightness, image, 0.0), np.zeros_like(image))
    for op in (po.color, po.contrast, po.brightness, po.sharpness):
        np.testing.assert_array_equal(one(op, image, 1.0), image)  # factor 1: the image
    flat = np.full((32, 32, 3), 77, np.uint8)
    np.testing.assert_array_equal(one(po.contrast, flat, 1.9), flat)  # mean grey is 77
    sharp = one(po.sharpness, image, 1.9)
    np.testing.assert_array_equal(sharp[[0, -1]], image[[0, -1]])  # the border stays
    np.testing.assert_array_equal(sharp[:, [0, -1]], image[:, [0, -1]])
    assert (sharp[1:-1, 1:-1] != image[1:-1, 1:-1]).any()


@pytest.mark.parametrize("name", [*POINT_NO_ARG, *POINT_ARG, *GEOMETRIC])
def test_every_op_takes_an_empty_batch(name):
    """The batch of the images that drew an op is often empty: its result is [0, 32, 32, 3] as
    well. (TF's oneDNN depthwise convolution, on by default on recent x86 CPUs, returned an empty
    input's shape for a VALID convolution's, and Sharpness then failed to add its border.)"""
    empty = tf.zeros([0, 32, 32, 3], tf.uint8)
    args = {n: [] for n in POINT_NO_ARG} | {n: [tf.zeros([0], tf.float64)] for n in POINT_ARG}
    op = {**POINT_NO_ARG, **POINT_ARG, **GEOMETRIC}[name]
    out = op(empty, *args.get(name, [tf.zeros([0], tf.float64), FILL]))
    assert out.shape == (0, 32, 32, 3) and out.dtype == tf.uint8


# ----------------------------------------------------------------------------- config strings


DEFAULT = rp.RandAugmentParams()


@pytest.mark.parametrize(
    "config_str, expected",
    [
        ("rand-m9-mstd0.5", dict(magnitude=9.0, magnitude_std=0.5)),
        ("rand", dict()),  # m 10, n 2, mstd 0, bound 10, p 0.5
        ("rand-m9-n3-mstd0.5-inc1", dict(magnitude=9.0, num_layers=3, magnitude_std=0.5,
                                         increasing=True, ops=rp.RAND_INCREASING_TRANSFORMS)),
        ("rand-n1-m7-mmax15", dict(num_layers=1, magnitude=7.0, magnitude_max=15.0)),
        ("rand-m9-mmax0", dict(magnitude=9.0)),  # timm: magnitude_max or 10
        ("rand-m7-mstd101", dict(magnitude=7.0, magnitude_std=math.inf)),  # > 100: uniform
        ("rand-m7-mstd100", dict(magnitude=7.0, magnitude_std=100.0)),
        ("rand-m9-p0.8-inc0", dict(magnitude=9.0, prob=0.8)),
        ("rand-mstd0.5-mstd1-mmax12-mmax15", dict(magnitude_std=0.5, magnitude_max=12.0)),  # first
        ("rand-m5-m9-n4-n1-inc1-inc0", dict(magnitude=9.0, num_layers=1)),  # last wins
        ("rand--m9-", dict(magnitude=9.0)),  # empty sections are skipped
        ("rand-m9-tweights-inc1", dict(magnitude=9.0, increasing=True,
                                       ops=tuple(rp.RAND_WEIGHTED_0))),
    ],
)  # fmt: skip
def test_parse_config_str_follows_timm(config_str, expected):
    params = rp.parse_config_str(config_str)
    want = {**DEFAULT.__dict__, **expected}
    if config_str.endswith("tweights-inc1"):
        total = sum(rp.RAND_WEIGHTED_0.values())
        want["choice_weights"] = tuple(w / total for w in rp.RAND_WEIGHTED_0.values())
    assert params.__dict__ == want


@pytest.mark.parametrize(
    "config_str, match",
    [
        ("randaug-m9", "must start with 'rand'"),
        ("rand-x9", r"unknown key 'x'.*valid keys are m, n, mstd, mmax, inc, p, t"),
        ("rand-m9-mstdinf", "'mstdinf' has no number"),
        ("rand-m9.5", "'m' needs an integer"),
        ("rand-n2.0", "'n' needs an integer"),
        ("rand-m9-t3a", "GaussianBlur"),
        ("rand-m9-tfoo", "unknown op set 'tfoo'"),
        ("rand-n16-tweights", "without replacement"),
    ],
)
def test_parse_config_str_rejects_bad_strings(config_str, match):
    with pytest.raises(ValueError, match=match):
        rp.parse_config_str(config_str)


# ----------------------------------------------------------------------------- randomness


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_vectorised_uniforms_equal_tf_stateless_uniform(dtype):
    rng = np.random.default_rng(2)
    info = np.iinfo(dtype)
    seeds = rng.integers(info.min, info.max, (20, 2), dtype=dtype, endpoint=True)
    seeds[0], seeds[1] = (0, 0), (-1, info.max)
    for num in (1, 4, 11):
        rows = ra.stateless_uniform_rows(tf.constant(seeds), num).numpy()
        expected = np.stack([tf.random.stateless_uniform([num], seed).numpy() for seed in seeds])
        np.testing.assert_array_equal(rows, expected)


def _seeds(count: int, start: int = 0) -> np.ndarray:
    return np.stack([np.full(count, 7), np.arange(start, start + count)], 1).astype(np.int64)


def _censored_normal_moments(mean: float, std: float, low: float, high: float):
    """Mean and std of clip(Normal(mean, std), low, high), by quadrature."""
    z = np.linspace(-12.0, 12.0, 480_001)
    weight = stats.norm.pdf(z) * (z[1] - z[0])
    y = np.clip(mean + std * z, low, high)
    m = float((y * weight).sum())
    return m, float(np.sqrt(((y - m) ** 2 * weight).sum()))


def test_policy_draws_follow_timms_distributions():
    """rand-m9-mstd0.5 over 20,000 examples x 2 layers: ops uniform over the 15, each applied with
    probability 0.5, signs +-1 with probability 0.5, magnitude ~ Normal(9, 0.5) clipped to [0, 10]
    (mean, std and the mass at 10 as the censored normal has them)."""
    params = rp.parse_config_str("rand-m9-mstd0.5")
    draws = ra.policy_draws(_seeds(20_000), params)
    op, apply, magnitude, sign = (t.numpy().ravel() for t in draws)
    n = op.size
    counts = np.bincount(op, minlength=15)
    assert counts.size == 15
    assert stats.chisquare(counts).pvalue > 1e-6
    assert abs(apply.mean() - 0.5) < 5 * math.sqrt(0.25 / n)
    assert set(np.unique(sign)) == {-1.0, 1.0} and abs((sign > 0).mean() - 0.5) < 5 * 0.5 / n**0.5
    mean, std = _censored_normal_moments(9.0, 0.5, 0.0, 10.0)
    assert abs(magnitude.mean() - mean) < 5 * std / n**0.5
    assert abs(magnitude.std() - std) < 0.01
    assert magnitude.max() == 10.0 and magnitude.min() >= 0.0
    at_top = stats.norm.sf(2.0)  # P(Normal(9, .5) > 10)
    assert abs((magnitude == 10.0).mean() - at_top) < 5 * math.sqrt(at_top / n)


@pytest.mark.parametrize(
    "config_str, low, high",
    [
        ("rand-m2-mstd3-mmax5", 0.0, 5.0),  # clipped at both ends, at mmax not 10
        ("rand-m15-mstd1-mmax20", 0.0, 20.0),  # mmax lifts the bound
        ("rand-m8-mstd101", None, None),  # uniform on [0, 8]
        ("rand-m15", None, None),  # mstd 0: fixed m, clipped to 10
        ("rand-p0.2", None, None),
    ],
)
def test_policy_magnitude_and_probability_options(config_str, low, high):
    params = rp.parse_config_str(config_str)
    draws = ra.policy_draws(_seeds(10_000, start=50_000), params)
    magnitude = draws.magnitude.numpy().ravel()
    n = magnitude.size
    if params.magnitude_std == math.inf:
        assert magnitude.min() >= 0.0 and magnitude.max() <= 8.0
        assert abs(magnitude.mean() - 4.0) < 5 * (8 / math.sqrt(12)) / n**0.5
        assert abs(magnitude.std() - 8 / math.sqrt(12)) < 0.03
    elif params.magnitude_std == 0:
        assert (magnitude == min(params.magnitude, 10.0)).all()
        assert abs(draws.apply.numpy().mean() - params.prob) < 5 * 0.5 / n**0.5
    else:
        m, s = params.magnitude, params.magnitude_std
        mean, std = _censored_normal_moments(m, s, low, high)
        assert abs(magnitude.mean() - mean) < 5 * std / n**0.5
        assert magnitude.min() >= low and magnitude.max() <= high
        for bound, mass in (
            (low, stats.norm.cdf((low - m) / s)),
            (high, stats.norm.sf((high - m) / s)),
        ):
            assert abs((magnitude == bound).mean() - mass) < 5 * math.sqrt(mass / n) + 1e-4


def test_weighted_choice_is_without_replacement_and_follows_the_weights():
    """'tweights' (timm: np.random.choice(ops, n, replace=False, p=weights)): no op twice in an
    example, and the first pick has the normalised weights as its distribution."""
    params = rp.parse_config_str("rand-n3-m9-tweights")
    op = ra.policy_draws(_seeds(20_000, start=9), params).op.numpy()
    assert all(len(set(row)) == 3 for row in op)
    counts = np.bincount(op[:, 0], minlength=15)
    expected = np.array(params.choice_weights) * op.shape[0]  # every cell expects >= 99
    assert counts.size == 15 and expected.min() > 90
    assert stats.chisquare(counts, expected).pvalue > 1e-6


# ----------------------------------------------------------------------------- the policy

BATCH = np.concatenate([IMAGES] * 5)[:18]  # 18 images: the 4 fixture images, repeated
SEEDS = _seeds(18, start=100)


def rand_augment(image, seed, params: rp.RandAugmentParams, **hparams) -> tf.Tensor:
    """`rand_augment_batch` on one image [H, W, 3] with its seed [2] (`hparams`: its keywords)."""
    images, seeds = tf.convert_to_tensor(image)[None], tf.convert_to_tensor(seed)[None]
    return ra.rand_augment_batch(images, seeds, params, **hparams)[0]


def _by_hand(image: np.ndarray, seed: np.ndarray, params: rp.RandAugmentParams) -> np.ndarray:
    """The policy by hand: policy_draws' choices, level_to_arg and the per-image op functions."""
    draws = ra.policy_draws(seed[None], params)
    for layer in range(params.num_layers):
        if not draws.apply[0, layer]:
            continue
        name = params.ops[int(draws.op[0, layer])]
        arg = float(ra.level_to_arg(name, draws.magnitude[0, layer], draws.sign[0, layer]))
        image = _run_op(name, image, arg, fill=(124, 116, 104))
    return image


@pytest.mark.parametrize("config_str", ["rand-m9-mstd0.5", "rand-n4-m7-mstd2-p0.8-inc1"])
def test_rand_augment_applies_the_drawn_ops_and_batch_form_agrees(config_str):
    """Per example, rand_augment is its draws applied by hand; rand_augment_batch equals mapping
    rand_augment over the batch; same seed, same image; different seeds, different images."""
    params = rp.parse_config_str(config_str)
    single = np.stack([rand_augment(x, s, params).numpy() for x, s in zip(BATCH, SEEDS)])
    by_hand = np.stack([_by_hand(x, s, params) for x, s in zip(BATCH, SEEDS)])
    np.testing.assert_array_equal(single, by_hand)
    batch = ra.rand_augment_batch(BATCH, SEEDS, params).numpy()
    np.testing.assert_array_equal(batch, single)
    np.testing.assert_array_equal(ra.rand_augment_batch(BATCH, SEEDS, params).numpy(), batch)
    other = ra.rand_augment_batch(BATCH, SEEDS + [0, 1000], params).numpy()
    assert (other != batch).any(axis=(1, 2, 3)).mean() > 0.5
    assert (batch != BATCH).any(axis=(1, 2, 3)).mean() > 0.5  # most images were changed


def test_graph_mode_in_tf_data_matches_eager():
    """Inside tf.data (graph mode), batched and per-example forms give the eager result."""
    params = rp.parse_config_str("rand-m9-mstd0.5")
    expected = ra.rand_augment_batch(BATCH, SEEDS, params).numpy()
    ds = tf.data.Dataset.from_tensor_slices((BATCH, SEEDS))
    per_example = ds.map(lambda x, s: rand_augment(x, s, params)).batch(18)
    batched = ds.batch(6).map(lambda x, s: ra.rand_augment_batch(x, s, params)).unbatch().batch(18)
    np.testing.assert_array_equal(next(iter(per_example)).numpy(), expected)
    np.testing.assert_array_equal(next(iter(batched)).numpy(), expected)


def test_no_layers_or_never_applied_is_identity():
    for config_str in ("rand-n0", "rand-m9-p0"):
        params = rp.parse_config_str(config_str)
        np.testing.assert_array_equal(ra.rand_augment_batch(BATCH, SEEDS, params).numpy(), BATCH)
        np.testing.assert_array_equal(rand_augment(BATCH[0], SEEDS[0], params).numpy(), BATCH[0])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(image=IMAGES[0].astype(np.float32)), "images must be uint8"),
        (dict(image=IMAGES[0][..., :1]), r"images must be uint8 \[B, H, W, 3\]"),
        (dict(seed=np.array([1, 2, 3])), r"seeds must be int32 or int64 \[B, 2\]"),
        (dict(seed=np.array([1.0, 2.0])), "seeds must be int32 or int64"),
        (dict(img_mean=(124, 116, 300)), "img_mean/fill must be three integers"),
        (dict(params="rand-m9-mstd0.5"), "params must be a RandAugmentParams"),
    ],
)
def test_bad_arguments_are_programmer_errors_with_clear_messages(kwargs, match):
    """Wrong dtypes, shapes, fill colours or params are caught by assertions naming the argument
    (a config's values are checked by config.validate; img_mean's length is one of its rules)."""
    args = dict(image=IMAGES[0], seed=SEEDS[0], params=rp.RandAugmentParams())
    args.update(kwargs)
    with pytest.raises(AssertionError, match=match):
        rand_augment(**args)
