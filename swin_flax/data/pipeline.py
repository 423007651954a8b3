"""tf.data input pipelines: per-host batches shaped [local_devices, per_device_batch, H, W, 3].

Order and randomness depend on (seed, epoch, position) only, never on run history: epoch e's order
is a stateless permutation keyed by (seed, e); global batch s is positions [s*G, (s+1)*G), host h
takes its h-th slice, device d the d-th block (the last partial batch is dropped). Example p's
RandAugment seed is (key(seed, e), p), host h's CutMix/Mixup seed at step s (key(seed, e), s*P + h):
any number of hosts gives the same batches, and `start_step` resumes mid-epoch exactly. Evaluation
visits every example once, in order, the last batch padded (zero images, `mask` 0) so that all
hosts run the same steps.

Transforms (torchvision's order): [RandAugment on uint8] -> float -> [bilinear resize] -> /255 ->
(x - mean) / std -> [CutMix/Mixup per host batch]."""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from swin_flax.data import mix as mix_lib
from swin_flax.data import randaugment as ra
from swin_flax.data.randaugment_params import RandAugmentParams, parse_config_str
from swin_flax.errors import ConfigError

_SHUFFLE, _AUGMENT, _MIX = 1, 2, 3  # one random stream per purpose and epoch


def steps_per_epoch(num_examples: int, global_batch_size: int) -> int:
    """Full global batches per epoch; ConfigError for none (validate cannot know the data's size)."""
    if num_examples < global_batch_size:
        raise ConfigError(
            f"config.batch_size: {global_batch_size} is larger than the {num_examples} training "
            f"images, so an epoch has no full batch; choose a batch_size of at most {num_examples}."
        )
    return num_examples // global_batch_size


def eval_steps(num_examples: int, global_batch_size: int) -> int:
    """Evaluation steps: every example once, the last batch padded (ceil)."""
    return -(-num_examples // global_batch_size)


def _layout(global_bs: int, index: int, count: int, local_devices: int) -> tuple[int, int]:
    """(host batch, per-device batch); that they divide evenly is config.validate's rule."""
    assert global_bs > 0 and global_bs % (count * local_devices) == 0, (
        f"global batch size {global_bs} does not split over {count} host(s) x {local_devices} "
        "local device(s)"
    )
    assert 0 <= index < count, f"process_index={index} is outside [0, {count})"
    return global_bs // count, global_bs // (count * local_devices)


def train_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    num_classes: int,
    global_batch_size: int,
    epoch: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
    local_device_count: int = 1,
    randaugment: str = "",
    img_mean: Sequence[int] = (124, 116, 104),
    translate_const: int = 117,
    normalize_mean: Sequence[float] = (0.5, 0.5, 0.5),
    normalize_std: Sequence[float] = (0.5, 0.5, 0.5),
    mix: Mapping[str, Any] | None = None,
    image_size: int = 32,
    start_step: int = 0,
    num_epochs: int = 1,
    prefetch: int = 2,
) -> tf.data.Dataset:
    """This host's batches of epochs [epoch, epoch + num_epochs), from step `start_step` of the
    first, of images uint8 [N, h, w, 3] and labels int [N]: dicts of 'image' float32 [D, b, S, S, 3],
    'label' int32 [D, b] and 'target' float32 [D, b, K] (CutMix/Mixup per `mix`, timm Mixup's
    arguments, else smoothed one-hot). randaugment: a timm string ('rand-m9-mstd0.5') or ''. One
    dataset for many epochs: TF optimises its RandAugment graph (a second or two) once."""
    tf_cpu_only()
    host_bs, dev_bs = _layout(global_batch_size, process_index, process_count, local_device_count)
    n_steps = steps_per_epoch(len(labels), global_batch_size)
    assert num_epochs > 0 and 0 <= start_step <= n_steps, (
        f"start_step={start_step}, {n_steps} steps"
    )
    mix_cfg = mix_lib.mix_config(mix or {}, num_classes)
    assert not (mix_cfg.enabled and host_bs % 2), f"odd host batch {host_bs} (config.validate)"
    transform = _train_transform(  # hashable settings: one trace per setting
        images.shape[1:3],
        ra_params=parse_config_str(randaugment) if randaugment else None,
        img_mean=tuple(map(int, img_mean)),
        translate_const=float(translate_const),
        size=int(image_size),
        mean=tuple(map(float, normalize_mean)),
        std=tuple(map(float, normalize_std)),
        mix_cfg=mix_cfg,
    )
    all_images = tf.constant(images)
    all_labels = tf.constant(labels.astype(np.int32))
    layout = tf.constant([host_bs, seed, global_batch_size, process_index, process_count], tf.int64)

    def batch(g):  # a global step: everything is computed from its epoch and step in the graph
        out = transform(all_images, all_labels, g // n_steps, g % n_steps, layout)
        return {k: _per_device(v, local_device_count, dev_bs) for k, v in out.items()}

    ds = tf.data.Dataset.range(epoch * n_steps + start_step, (epoch + num_epochs) * n_steps)
    return _mapped(ds, batch, prefetch)


@functools.lru_cache(maxsize=8)
def _train_transform(
    source_hw: tuple[int, int],
    *,
    ra_params: RandAugmentParams | None,
    img_mean: tuple[int, ...],
    translate_const: float,
    size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    mix_cfg: mix_lib.MixConfig,
) -> Callable:
    """One host batch's training transform, traced once per setting: epoch, step and layout [host
    batch, seed, global batch, process_index, process_count] are inputs. No autograph: its branches
    are on settings, and autograph was most of the stream's build time (docs/benchmarks.md)."""
    h, w = source_hw
    spec = [tf.TensorSpec([None, h, w, 3], tf.uint8), tf.TensorSpec([None], tf.int32)]
    spec += [tf.TensorSpec(shape, tf.int64) for shape in ([], [], [5])]  # epoch, step, layout

    @tf.function(input_signature=spec, autograph=False)
    def transform(all_images, all_labels, epoch, step, layout):
        host_bs, seed, global_bs, process_index, process_count = tf.unstack(layout)
        positions = step * global_bs + process_index * host_bs + tf.range(host_bs, dtype=tf.int64)
        index = _order(positions, tf.shape(all_labels, tf.int64)[0], seed, epoch)
        images = tf.gather(all_images, index)
        labels = tf.gather(all_labels, index)
        if ra_params is not None:
            key = _stream_key(seed, epoch, _AUGMENT)
            seeds = tf.stack([tf.fill(tf.shape(positions), key), positions], 1)
            images = ra.rand_augment_batch(
                images, seeds, ra_params, img_mean=img_mean, translate_const=translate_const
            )
        x = to_model_input(images, size, mean, std)
        mix_seed = tf.stack([_stream_key(seed, epoch, _MIX), step * process_count + process_index])
        x, target, _ = mix_lib.mix_batch(x, labels, mix_seed, mix_cfg)
        return {"image": x, "label": labels, "target": target}

    return transform


def _order(positions: tf.Tensor, n: tf.Tensor, seed: tf.Tensor, epoch: tf.Tensor) -> tf.Tensor:
    """Example index at each position of the epoch: a stateless permutation keyed by (seed, e)."""
    key = tf.stack([seed, epoch * 8 + _SHUFFLE])
    return tf.random.experimental.index_shuffle(positions, key, tf.cast(n - 1, tf.int64))


def _stream_key(seed: tf.Tensor, epoch: tf.Tensor, purpose: int) -> tf.Tensor:
    """A 63-bit key for one random stream of one epoch (paired with a position or a step)."""
    return tf.random.stateless_uniform(
        [], tf.stack([seed, epoch * 8 + purpose]), minval=0, maxval=2**62, dtype=tf.int64
    )


def eval_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    global_batch_size: int,
    process_index: int = 0,
    process_count: int = 1,
    local_device_count: int = 1,
    normalize_mean: Sequence[float] = (0.5, 0.5, 0.5),
    normalize_std: Sequence[float] = (0.5, 0.5, 0.5),
    image_size: int = 32,
    prefetch: int = 2,
) -> tf.data.Dataset:
    """This host's share of every example once, in order, in eval_steps(N, global) batches: dicts
    of 'image' float32 [D, b, S, S, 3], 'label' int32 [D, b], 'mask' float32 [D, b] (0: padding)."""
    tf_cpu_only()
    host_bs, dev_bs = _layout(global_batch_size, process_index, process_count, local_device_count)
    n = len(labels)
    n_steps = eval_steps(n, global_batch_size)
    positions = np.arange(n_steps * global_batch_size, dtype=np.int64)
    positions = positions.reshape(n_steps, process_count, host_bs)[:, process_index]
    real = positions < n
    index = np.where(real, positions, 0)
    host_images = images[index]  # [steps, host_bs, h, w, 3]
    host_images[~real] = 0
    host_labels = np.where(real, labels[index], 0).astype(np.int32)
    shard = lambda x: _per_device(x, local_device_count, dev_bs)

    def batch(image, label, mask):
        x = to_model_input(image, image_size, normalize_mean, normalize_std)
        return {"image": shard(x), "label": shard(label), "mask": shard(mask)}

    ds = tf.data.Dataset.from_tensor_slices((host_images, host_labels, real.astype(np.float32)))
    return _mapped(ds, batch, prefetch)


def resize(x: tf.Tensor, size: int) -> tf.Tensor:
    """float32 [B, h, w, C] -> [B, size, size, C]: antialiased bilinear (PIL's, torchvision's Resize
    of a PIL image), the identity at size."""
    if x.shape[1] == size and x.shape[2] == size:
        return x
    return tf.image.resize(x, (size, size), method="bilinear", antialias=True)


def to_model_input(
    images: tf.Tensor, size: int, mean: Sequence[float], std: Sequence[float]
) -> tf.Tensor:
    """uint8 [B, h, w, 3] -> float32 [B, size, size, 3]: bilinear resize (if h, w != size), then
    (x / 255 - mean) / std, the ops of torchvision's Resize (PIL bilinear, antialiased when
    shrinking) + ToTensor + Normalize."""
    x = resize(tf.cast(images, tf.float32), size)
    # Per-channel constants at full image shape: TF's CPU kernels broadcast these over the batch
    # axis several times faster than a [3] vector over the last axis (same values, same ops).
    # Subtracting 0 and dividing by 1 change nothing in IEEE arithmetic, so they are skipped.
    shape = (1, size, size, len(mean))
    x = x / 255.0
    if any(m != 0 for m in mean):
        x = x - tf.constant(np.broadcast_to(np.asarray(mean, np.float32), shape))
    if any(s != 1 for s in std):
        x = x / tf.constant(np.broadcast_to(np.asarray(std, np.float32), shape))
    return x


def _mapped(ds: tf.data.Dataset, batch: Callable[..., dict], prefetch: int) -> tf.data.Dataset:
    """`ds` mapped in order by `batch` (plain TF ops: no autograph), min(16, cores) at once, and
    prefetched. The autotuner is off: deleting a finished iterator waited for its thread, tens of
    seconds at the end of every run (docs/benchmarks.md)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    options = tf.data.Options()
    options.autotune.enabled = False
    batch = tf.autograph.experimental.do_not_convert(batch)
    ds = ds.map(batch, num_parallel_calls=min(16, cores or 1), deterministic=True)
    return ds.prefetch(prefetch).with_options(options)


def _per_device(x: tf.Tensor, devices: int, per_device: int) -> tf.Tensor:
    return tf.reshape(x, [devices, per_device, *x.shape[1:]])


def tf_cpu_only() -> None:
    """Keeps TensorFlow off the accelerators, which JAX owns (a no-op once TF has started)."""
    for kind in ("GPU", "TPU"):
        with contextlib.suppress(RuntimeError, ValueError):
            tf.config.set_visible_devices([], kind)
