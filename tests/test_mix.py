"""CutMix / Mixup against timm Mixup's definitions (timm/data/mixup.py), checked by formula."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import tensorflow as tf

from swin_flax.data import mix

H = W = 32
K = 10


def batch(n: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    # Continuous random pixels: no two images share a value, so every pixel's origin is visible.
    x = rng.uniform(-1, 1, (n, H, W, 3)).astype(np.float32)
    y = rng.integers(0, K, n).astype(np.int32)
    return x, y


def run(x, y, seed, **kw):
    cfg = mix.mix_config(kw, K)
    out = mix.mix_batch(tf.constant(x), tf.constant(y), tf.constant(seed, tf.int64), cfg)
    return [np.asarray(v) for v in out]


def expected_targets(y, lam, smoothing=0.0):
    """timm mixup_target: lam * onehot(y) + (1 - lam) * onehot(flip(y)), smoothed one-hots."""
    off = smoothing / K
    on = 1.0 - smoothing + off
    y1 = np.full((len(y), K), off, np.float64)
    y1[np.arange(len(y)), y] = on
    return lam * y1 + (1 - lam) * y1[::-1]


@tf.function
def _lambdas(seeds, cfg_key):
    cfg = _CFGS[cfg_key]
    return tf.map_fn(
        lambda s: mix.sample_lambda(s, cfg),
        seeds,
        fn_output_signature=(tf.float32, tf.bool),
    )


_CFGS = {}


def sample_many(n: int, **kw):
    cfg = mix.mix_config(kw, K)
    key = repr(sorted(kw.items()))
    _CFGS[key] = cfg
    seeds = tf.stack([tf.fill([n], tf.constant(7, tf.int64)), tf.range(n, dtype=tf.int64)], 1)
    lam, cut = _lambdas(seeds, key)
    return np.asarray(lam, np.float64), np.asarray(cut)


def box_of(mixed, x):
    """The pasted region: pixels (same in every image and channel) that came from flip(x)."""
    from_flip = (mixed == x[::-1]) & (mixed != x)
    region = from_flip.all(axis=(0, 3))
    assert np.array_equal(
        from_flip, np.broadcast_to(region[None, :, :, None], x.shape) & (x != x[::-1])
    )
    return region


@pytest.mark.parametrize("seed", range(6))
def test_cutmix_pastes_the_flipped_batch_and_lambda_is_the_box_area(seed):
    x, y = batch(8, seed)
    mixed, targets, lam = run(x, y, [seed, 1], cutmix_alpha=1.0, switch_prob=0.0)
    region = box_of(mixed, x)
    np.testing.assert_array_equal(mixed[:, region], x[::-1][:, region])  # exactly the flipped
    np.testing.assert_array_equal(mixed[:, ~region], x[:, ~region])  # exactly the original
    rows, cols = np.nonzero(region.any(1))[0], np.nonzero(region.any(0))[0]
    if region.any():  # a solid rectangle
        assert region[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].all()
    assert lam == np.float32(1 - region.sum() / (H * W))  # exactly (H * W is a power of 2)
    np.testing.assert_allclose(targets, expected_targets(y, float(lam)), atol=1e-6)
    np.testing.assert_allclose(targets.sum(1), 1.0, atol=1e-6)


def test_rand_bbox_follows_timm_formula():
    """Side int(32 * sqrt(1 - lam)); centre cy uniform in [0, 32); bounds clipped as timm's
    yl = clip(cy - cut // 2), yh = clip(cy + (cut + 1) // 2)."""
    centres = []
    for i, lam in enumerate(np.linspace(0.05, 0.95, 40)):
        for j in range(12):
            box = mix.rand_bbox(tf.constant([i, j], tf.int64), tf.constant(lam, tf.float32), H, W)
            yl, yh, xl, xh = (int(v) for v in box)
            cut = int(H * np.sqrt(1 - np.float64(np.float32(lam))))
            for lo, hi in ((yl, yh), (xl, xh)):
                cands = [
                    c
                    for c in range(H)
                    if (lo, hi) == (max(c - cut // 2, 0), min(c + (cut + 1) // 2, H))
                ]
                assert cands, (lam, lo, hi, cut)
                if lo > 0 and hi < H:
                    centres.append(cands[0])
    # Unclipped centres spread over the middle of the image.
    assert min(centres) < 8 and max(centres) > 24


def test_rand_bbox_minmax_sides_and_placement():
    lo, hi = 0.2, 0.8
    sides = []
    for i in range(150):
        yl, yh, xl, xh = (int(v) for v in mix.rand_bbox_minmax(tf.constant([i, 3]), (lo, hi), H, W))
        assert 0 <= yl < yh <= H and 0 <= xl < xh <= W
        sides += [yh - yl, xh - xl]
    # timm: np.random.randint(int(H * lo), int(H * hi)) -> [6, 25).
    assert min(sides) == int(H * lo) and max(sides) == int(H * hi) - 1


def test_cutmix_minmax_lambda_from_box():
    x, y = batch(4, 1)
    for s in range(5):
        mixed, targets, lam = run(x, y, [s, 0], cutmix_minmax=(0.3, 0.6), prob=1.0)
        region = box_of(mixed, x)
        assert int(0.3 * H) <= region.any(1).sum() < int(0.6 * H)
        assert int(0.3 * W) <= region.any(0).sum() < int(0.6 * W)
        assert lam == np.float32(1 - region.sum() / (H * W))


def test_correct_lam_false_keeps_the_sampled_lambda():
    x, y = batch(4, 2)
    seen_clipped = False
    for s in range(20):
        cfg = mix.MixConfig(num_classes=K, cutmix_alpha=1.0, correct_lam=False)
        mixed, _, lam = (
            np.asarray(v)
            for v in mix.mix_batch(tf.constant(x), tf.constant(y), tf.constant([s, 5]), cfg)
        )
        area = box_of(mixed, x).sum()
        # int() truncation and clipping only shrink the box: area <= (1 - lam) * H * W.
        assert area <= (1 - lam) * H * W + 1e-3
        seen_clipped |= area < int(H * np.sqrt(1 - lam)) ** 2
    assert seen_clipped


def test_mixup_blends_with_the_reversed_batch():
    x, y = batch(6, 3)
    mixed, targets, lam = run(x, y, [4, 4], mixup_alpha=0.4, cutmix_alpha=0.0)
    assert 0 < lam < 1
    np.testing.assert_allclose(mixed, lam * x + (1 - lam) * x[::-1], atol=1e-6)
    np.testing.assert_allclose(targets, expected_targets(y, float(lam)), atol=1e-6)


def test_label_smoothing_values():
    x, y = batch(4, 4)
    _, targets, lam = run(x, y, [0, 0], label_smoothing=0.1)  # mixing off
    assert lam == 1.0
    np.testing.assert_array_equal(run(x, y, [0, 0])[0], x)
    # off = 0.1 / 10 = 0.01, on = 1 - 0.1 + 0.01 = 0.91 (timm).
    np.testing.assert_allclose(targets[np.arange(4), y], 0.91, rtol=1e-6)
    np.testing.assert_allclose(np.sort(targets, 1)[:, :-1], 0.01, rtol=1e-6)
    _, targets, lam = run(x, y, [1, 2], cutmix_alpha=1.0, label_smoothing=0.1)
    np.testing.assert_allclose(targets, expected_targets(y, float(lam), 0.1), atol=1e-6)
    np.testing.assert_allclose(targets.sum(1), 1.0, atol=1e-6)


def test_lambda_is_beta_alpha_alpha():
    lam, cut = sample_many(3000, cutmix_alpha=1.0)
    assert cut.all()
    assert scipy.stats.kstest(lam, scipy.stats.beta(1.0, 1.0).cdf).pvalue > 1e-3
    lam, cut = sample_many(3000, mixup_alpha=0.4)
    assert not cut.any()
    assert scipy.stats.kstest(lam, scipy.stats.beta(0.4, 0.4).cdf).pvalue > 1e-3
    # Beta(a, a): mean 1/2, variance 1 / (4 (2a + 1)) = 0.1389 for a = 0.4.
    assert abs(lam.mean() - 0.5) < 0.02 and abs(lam.var() - 1 / 7.2) < 0.01


def test_prob_and_switch_prob():
    n = 3000
    lam, cut = sample_many(n, mixup_alpha=0.8, cutmix_alpha=1.0, prob=0.3, switch_prob=0.25)
    applied = lam < 1.0
    # Binomial: 0.3 of batches mixed, of those 0.25 CutMix (4-sigma bounds).
    assert abs(applied.mean() - 0.3) < 4 * np.sqrt(0.3 * 0.7 / n)
    assert not cut[~applied].any()
    k = applied.sum()
    assert abs(cut[applied].mean() - 0.25) < 4 * np.sqrt(0.25 * 0.75 / k)
    # The mixup and cutmix lambdas follow their own alphas.
    assert scipy.stats.kstest(lam[cut], scipy.stats.beta(1.0, 1.0).cdf).pvalue > 1e-3
    assert scipy.stats.kstest(lam[applied & ~cut], scipy.stats.beta(0.8, 0.8).cdf).pvalue > 1e-3


def test_deterministic_in_the_seed():
    x, y = batch(8, 5)
    a = run(x, y, [3, 9], cutmix_alpha=1.0, mixup_alpha=1.0)
    b = run(x, y, [3, 9], cutmix_alpha=1.0, mixup_alpha=1.0)
    c = run(x, y, [3, 10], cutmix_alpha=1.0, mixup_alpha=1.0)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[0], c[0])


def test_cutmix_minmax_forces_alpha_one():
    """As timm; the mix fields' ranges are config.validate's rules (tests/test_config.py)."""
    cfg = mix.mix_config({"cutmix_minmax": (0.3, 0.6)}, K)
    assert cfg.cutmix_alpha == 1.0 and cfg.enabled  # timm forces alpha 1 with minmax
    assert not mix.mix_config({"mixup_alpha": 0.0, "cutmix_alpha": 0.0}, K).enabled


def test_no_alpha_draws_no_mix_even_with_a_box_range():
    """A MixConfig made directly (not by mix_config, which sets cutmix_alpha 1 for a box range) with
    both alphas 0 draws lambda 1 and no CutMix at every seed: there is no Beta to draw from."""
    cfg = mix.MixConfig(num_classes=K, cutmix_minmax=(0.2, 0.8))
    for seed in ([0, 1], [5, 9]):
        lam, cut = mix.sample_lambda(tf.constant(seed, tf.int64), cfg)
        assert float(lam) == 1.0 and not bool(cut)
