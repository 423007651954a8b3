"""The config's data, read and batched for this process: the training stream from any global step
and the test split on the devices."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging
from flax import jax_utils

from swin_flax.config import data_seed
from swin_flax.data import pipeline, sources


@dataclasses.dataclass(frozen=True)
class Data:
    """Both splits in memory (uint8 images, int32 labels) and the epoch's length in steps."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    steps_per_epoch: int


def load_data(config: ml_collections.ConfigDict) -> Data:
    """Both splits, read once and logged; a batch larger than the data is refused."""
    train = sources.load_config_split(config, "train")
    test = sources.load_config_split(config, "test")
    data = Data(*train, *test, pipeline.steps_per_epoch(len(train[1]), config.batch_size))
    source = sources.describe_source(
        config.dataset, data_dir=config.data_dir, archive=config.archive
    )
    log = logging.warning if config.dataset == "synthetic" else logging.info
    log("data: %s, %d train / %d test images", source, len(train[1]), len(test[1]))
    return data


def _input_options(config: ml_collections.ConfigDict) -> dict[str, Any]:
    return dict(
        global_batch_size=config.batch_size,
        normalize_mean=tuple(config.normalize_mean),
        normalize_std=tuple(config.normalize_std),
        image_size=config.model.img_size,
    )


def _process_options() -> dict[str, int]:
    # JAX's backend starts here.
    return dict(
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        local_device_count=jax.local_device_count(),
    )


def train_options(config: ml_collections.ConfigDict, augmented: bool = True) -> dict[str, Any]:
    """`pipeline.train_dataset`'s arguments from the config, but the data, span and devices; not
    `augmented`: the same images in the same order, augmentation off (show_augmentations.py)."""
    return dict(
        num_classes=config.model.num_classes,
        seed=data_seed(config),
        randaugment=config.randaugment if augmented else "",
        img_mean=tuple(config.randaugment_img_mean),
        translate_const=config.randaugment_translate_const,
        mix={**config.mix.to_dict(), **({} if augmented else {"prob": 0.0})},
        prefetch=config.prefetch_batches,
        **_input_options(config),
    )


def train_batches(
    config: ml_collections.ConfigDict, data: Data, start: int, augmented: bool = True
) -> Iterator[dict]:
    """Every training batch from global step `start` on, as one tf.data stream (its graph is
    optimised once, not per epoch); `augmented`: as `train_options`."""
    epoch, start_step = divmod(start, data.steps_per_epoch)
    return pipeline.train_dataset(
        data.train_images,
        data.train_labels,
        epoch=epoch,
        start_step=start_step,
        num_epochs=config.num_epochs - epoch,
        **train_options(config, augmented),
        **_process_options(),
    ).as_numpy_iterator()


def eval_batches(config: ml_collections.ConfigDict, data: Data) -> Iterable[dict]:
    """The test split in eval batches on the devices, the last padded and masked; each pass over
    the iterable is one over the split, its graph built once. A batch larger than the split
    shrinks to it (rounded up to the devices): its padding would only cost memory."""
    d = jax.device_count()
    batch = min(config.eval_batch_size, -(-len(data.test_labels) // d) * d)
    options = {**_input_options(config), **_process_options(), "global_batch_size": batch}
    return _Passes(pipeline.eval_dataset(data.test_images, data.test_labels, **options))


@dataclasses.dataclass(frozen=True)
class _Passes:
    """A dataset as an iterable of device batches, a fresh iterator per pass."""

    dataset: Any

    def __iter__(self) -> Iterator[dict]:
        return jax_utils.prefetch_to_device(self.dataset.as_numpy_iterator(), 2)
