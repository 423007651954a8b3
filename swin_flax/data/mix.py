"""CutMix and Mixup in TensorFlow ops with the semantics of timm's `Mixup` in mode 'batch'
(timm/data/mixup.py): one lambda ~ Beta(alpha, alpha) per batch, the batch mixed with its reversal,
targets lam * onehot(y) + (1 - lam) * onehot(flip(y)), label-smoothed. Randomness is stateless: a
batch mixes the same way every time it is produced (restarts, reruns)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import tensorflow as tf

from swin_flax import config

Box = tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]  # (y_lo, y_hi, x_lo, x_hi), half-open


@dataclasses.dataclass(frozen=True)
class MixConfig:
    """timm Mixup's arguments, as config.validate has checked them."""

    num_classes: int
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    cutmix_minmax: tuple[float, float] | None = None
    prob: float = 1.0
    switch_prob: float = 0.5
    mode: str = "batch"
    correct_lam: bool = True
    label_smoothing: float = 0.0

    @property
    def enabled(self) -> bool:
        return config.mixes(self)


def mix_config(mix: Mapping[str, Any], num_classes: int) -> MixConfig:
    """A MixConfig from timm Mixup's arguments (`config.mix.to_dict()`). As in timm, cutmix_minmax
    forces cutmix_alpha to 1 (lambda then comes from the box)."""
    kw = dict(mix)
    if kw.get("cutmix_minmax") is not None:
        kw.update(cutmix_minmax=tuple(float(v) for v in kw["cutmix_minmax"]), cutmix_alpha=1.0)
    return MixConfig(num_classes=int(num_classes), **kw)


def sample_lambda(seed: tf.Tensor, cfg: MixConfig) -> tuple[tf.Tensor, tf.Tensor]:
    """timm `_params_per_batch`: (lam float32 scalar before box correction, use_cutmix bool scalar);
    lam is 1 (no mixing) with probability 1 - prob."""
    if cfg.mixup_alpha <= 0 and cfg.cutmix_alpha <= 0:
        return tf.constant(1.0), tf.constant(False)
    seeds = tf.random.experimental.stateless_split(seed, 4)
    uniform = lambda s: tf.random.stateless_uniform([], s, dtype=tf.float64)
    apply = uniform(seeds[0]) < cfg.prob
    both = cfg.mixup_alpha > 0 and cfg.cutmix_alpha > 0  # else the one alpha > 0 says which
    use_cutmix = uniform(seeds[1]) < cfg.switch_prob if both else tf.constant(cfg.cutmix_alpha > 0)
    # The alphas as configured (0.8, not float32's 0.800000011920929), for the float64 Beta draw.
    f64 = lambda a: tf.constant(a, tf.float64)
    alpha = tf.where(use_cutmix, f64(cfg.cutmix_alpha), f64(cfg.mixup_alpha))
    lam = tf.where(apply, tf.cast(_beta(seeds[2], alpha), tf.float32), 1.0)
    return lam, tf.logical_and(apply, use_cutmix)


def rand_bbox(seed: tf.Tensor, lam: tf.Tensor, height: int, width: int) -> Box:
    """timm `rand_bbox`: (y_lo, y_hi, x_lo, x_hi) int32, half-open, clipped to the image; side
    int(size * sqrt(1 - lam)), centre uniform over the pixels."""
    ratio = tf.sqrt(1.0 - tf.cast(lam, tf.float64))
    s = tf.random.experimental.stateless_split(seed, 2)

    def span(seed: tf.Tensor, size: int) -> tuple[tf.Tensor, tf.Tensor]:  # (lo, hi) on one axis
        cut = tf.cast(tf.math.floor(size * ratio), tf.int32)
        centre = tf.random.stateless_uniform([], seed, minval=0, maxval=size, dtype=tf.int32)
        clip = lambda v: tf.clip_by_value(v, 0, size)
        return clip(centre - cut // 2), clip(centre + (cut + 1) // 2)

    return (*span(s[0], height), *span(s[1], width))


def rand_bbox_minmax(seed: tf.Tensor, minmax: tuple[float, float], height: int, width: int) -> Box:
    """timm `rand_bbox_minmax`: sides uniform in [int(size*min), int(size*max)), placed inside."""
    lo_h, hi_h = int(height * minmax[0]), int(height * minmax[1])
    lo_w, hi_w = int(width * minmax[0]), int(width * minmax[1])
    assert lo_h < hi_h and lo_w < hi_w, f"no box size in {minmax} (config.validate refuses it)"
    s = tf.random.experimental.stateless_split(seed, 4)
    uniform = lambda i, lo, hi: tf.random.stateless_uniform([], s[i], lo, hi, dtype=tf.int32)
    cut_h, cut_w = uniform(0, lo_h, hi_h), uniform(1, lo_w, hi_w)
    y_lo, x_lo = uniform(2, 0, height - cut_h + 1), uniform(3, 0, width - cut_w + 1)
    return y_lo, y_lo + cut_h, x_lo, x_lo + cut_w


def mix_batch(
    images: tf.Tensor, labels: tf.Tensor, seed: tf.Tensor, cfg: MixConfig
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Float images [B, H, W, C] (H, W static; any normalisation: mixing is affine) mixed with their
    reversal: (images, soft targets [B, K] float32, lam scalar); labels int [B], seed [2]."""
    off = cfg.label_smoothing / cfg.num_classes
    on = 1.0 - cfg.label_smoothing + off
    y1 = tf.one_hot(labels, cfg.num_classes, on_value=on, off_value=off, dtype=tf.float32)
    if not cfg.enabled:
        return images, y1, tf.constant(1.0)
    height, width = images.shape[1], images.shape[2]
    s = tf.random.experimental.stateless_split(seed, 2)
    lam, use_cutmix = sample_lambda(s[0], cfg)
    if cfg.cutmix_minmax is not None:
        y_lo, y_hi, x_lo, x_hi = rand_bbox_minmax(s[1], cfg.cutmix_minmax, height, width)
    else:
        y_lo, y_hi, x_lo, x_hi = rand_bbox(s[1], lam, height, width)
    rows, cols = tf.range(height)[:, None], tf.range(width)[None, :]
    in_box = (rows >= y_lo) & (rows < y_hi) & (cols >= x_lo) & (cols < x_hi)  # [H, W]
    box_lam = 1.0 - tf.cast((y_hi - y_lo) * (x_hi - x_lo), tf.float32) / float(height * width)
    cut_lam = box_lam if cfg.correct_lam or cfg.cutmix_minmax is not None else lam
    do_cut = use_cutmix & (lam < 1.0)  # timm pastes no box when lam == 1

    # CutMix takes whole pixels from the reversed batch; Mixup blends with scalar lam; lam == 1
    # leaves the batch as it is. Only the branch taken runs.
    def mixup() -> tf.Tensor:
        flipped = tf.reverse(images, [0])
        return images * tf.cast(lam, images.dtype) + flipped * tf.cast(1.0 - lam, images.dtype)

    no_cut = lambda: tf.cond(lam < 1.0, mixup, lambda: images)
    mixed = tf.cond(do_cut, lambda: _paste(images, in_box), no_cut)
    lam = tf.where(do_cut, cut_lam, lam)
    targets = lam * y1 + (1.0 - lam) * tf.reverse(y1, axis=[0])
    return mixed, targets, lam


def _paste(images: tf.Tensor, in_box: tf.Tensor) -> tf.Tensor:
    """images with the pixels of `in_box` [H, W] from the reversed batch, as [B, H*W*C] rows against
    a [1, H*W*C] mask: TF's CPU select is several times faster with a row broadcast."""
    flat = tf.reshape(images, [tf.shape(images)[0], -1])
    mask = tf.reshape(tf.repeat(in_box[:, :, None], images.shape[3], axis=2), [1, -1])
    return tf.reshape(tf.where(mask, tf.reverse(flat, [0]), flat), tf.shape(images))


def _beta(seed: tf.Tensor, alpha: tf.Tensor) -> tf.Tensor:
    """Beta(alpha, alpha) as Ga / (Ga + Gb), in float64 so that small alphas do not underflow."""
    s = tf.random.experimental.stateless_split(seed, 2)
    ga = tf.random.stateless_gamma([], s[0], alpha=alpha, dtype=tf.float64)
    gb = tf.random.stateless_gamma([], s[1], alpha=alpha, dtype=tf.float64)
    total = ga + gb
    return tf.where(total > 0, ga / tf.where(total > 0, total, 1.0), 0.5)
