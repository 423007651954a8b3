"""tf.data pipelines: sharding, order, determinism, exact resume, padding, normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from swin_flax.config import default_config
from swin_flax.data import inputs, pipeline, viz
from swin_flax.errors import ConfigError

K = 10
BASELINE = dict(normalize_mean=(0.5, 0.5, 0.5), normalize_std=(0.5, 0.5, 0.5))
STRONG = dict(
    randaugment="rand-m9-mstd0.5",
    img_mean=(124, 116, 104),
    translate_const=117,
    normalize_mean=(0.0, 0.0, 0.0),
    normalize_std=(1.0, 1.0, 1.0),
    mix=dict(cutmix_alpha=1.0, mixup_alpha=0.0, prob=1.0, switch_prob=0.0, label_smoothing=0.0),
)


def indexed_images(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Image i is flat: red = i % 256, green = i // 256, blue = 7; label (i * 7) % K."""
    i = np.arange(n)
    images = np.zeros((n, 32, 32, 3), np.uint8)
    images[..., 0] = (i % 256)[:, None, None]
    images[..., 1] = (i // 256)[:, None, None]
    images[..., 2] = 7
    return images, ((i * 7) % K).astype(np.int32)


def decode(images: np.ndarray, mean=(0.5,) * 3, std=(0.5,) * 3) -> np.ndarray:
    """Example index of each image of a batch [D, b, H, W, 3] (undoes the normalisation)."""
    px = np.rint((images[..., 0, 0, :] * np.array(std) + np.array(mean)) * 255).astype(int)
    assert (px[..., 2] == 7).all()
    return (px[..., 0] + 256 * px[..., 1]).reshape(-1)


def epoch_order(num_examples: int, seed: int, epoch: int) -> np.ndarray:
    """Example index at each position of epoch `epoch`: what the training pipeline reads."""
    seed, epoch = tf.constant(seed, tf.int64), tf.constant(epoch, tf.int64)
    positions = tf.range(num_examples, dtype=tf.int64)
    return pipeline._order(positions, num_examples, seed, epoch).numpy()


def train(images, labels, **kw):
    args = dict(num_classes=K, global_batch_size=16, epoch=0, seed=0, **BASELINE)
    args.update(kw)
    return list(pipeline.train_dataset(images, labels, **args).as_numpy_iterator())


def assert_batches_equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def test_train_batches_shapes_and_targets():
    images, labels = indexed_images(100)
    batches = train(images, labels, local_device_count=2)
    assert len(batches) == 6  # 100 // 16: the last partial batch is dropped
    b = batches[0]
    assert b["image"].shape == (2, 8, 32, 32, 3) and b["image"].dtype == np.float32
    assert b["label"].shape == (2, 8) and b["label"].dtype == np.int32
    assert b["target"].shape == (2, 8, K) and b["target"].dtype == np.float32
    # Mixing off: targets are the one-hot labels; labels belong to the images.
    idx = decode(b["image"])
    np.testing.assert_array_equal(b["label"].reshape(-1), labels[idx])
    np.testing.assert_array_equal(b["target"].reshape(-1, K), np.eye(K)[labels[idx]])


def test_streams_run_without_tf_data_autotuning():
    """Deleting a finished iterator with the autotuner on waited for its thread at the end of
    every training run (docs/benchmarks.md): both streams keep it off."""
    images, labels = indexed_images(40)
    args = dict(num_classes=K, global_batch_size=16, epoch=0, seed=0, **BASELINE)
    train_ds = pipeline.train_dataset(images, labels, **args)
    eval_ds = pipeline.eval_dataset(images, labels, global_batch_size=16, **BASELINE)
    assert train_ds.options().autotune.enabled is False
    assert eval_ds.options().autotune.enabled is False


@pytest.mark.parametrize(
    "option",
    [
        dict(randaugment="rand-n3-m9-tweights"),
        dict(randaugment="rand-m7-mstd101-mmax15"),
        dict(randaugment="rand-m9-inc1-mstd0.5-p0.7"),
        dict(mix=dict(mixup_alpha=0.8)),
        dict(mix=dict(mixup_alpha=0.8, cutmix_alpha=1.0, prob=0.8, label_smoothing=0.1)),
        dict(mix=dict(cutmix_minmax=(0.2, 0.8))),
        dict(mix=dict(cutmix_alpha=1.0, correct_lam=False)),
        dict(image_size=40),
    ],
    ids=str,
)
def test_every_transform_option_builds_without_autograph(option):
    """The transform is traced as plain TF ops, so a branch on a tensor anywhere it calls would
    fail here, at build time: each option's stream yields batches of the expected shapes whose
    targets are distributions over the classes."""
    images, labels = indexed_images(64)
    size = option.get("image_size", 32)
    for b in train(images, labels, **option):
        assert b["image"].shape == (1, 16, size, size, 3) and np.isfinite(b["image"]).all()
        np.testing.assert_allclose(b["target"].sum(-1), 1.0, atol=1e-6)
        assert (b["target"] >= 0).all()


def test_epoch_order_is_a_permutation_of_seed_and_epoch_only():
    images, labels = indexed_images(100)
    order = lambda batches: np.concatenate([decode(b["image"]) for b in batches])
    a = order(train(images, labels, local_device_count=2))
    assert len(a) == 96 and len(set(a)) == 96  # 6 full batches, no example twice
    np.testing.assert_array_equal(order(train(images, labels, local_device_count=4)), a)
    np.testing.assert_array_equal(order(train(images, labels, prefetch=1)), a)
    assert not np.array_equal(order(train(images, labels, epoch=1)), a)
    assert not np.array_equal(order(train(images, labels, seed=1)), a)
    # Shuffled across the whole set, not within blocks.
    assert set(a) - set(range(48)) and abs(np.corrcoef(a, np.arange(96))[0, 1]) < 0.5


def test_steps_per_epoch_and_eval_steps():
    assert pipeline.steps_per_epoch(50_000, 1024) == 48  # 848 images dropped each epoch
    assert pipeline.eval_steps(10_000, 1024) == 10
    with pytest.raises(ConfigError, match="config.batch_size: 16 is larger than the 10 training"):
        pipeline.steps_per_epoch(10, 16)


def test_deterministic_and_start_step_skips_exactly():
    images, labels = indexed_images(96)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, images.shape, dtype=np.uint8)  # content for RandAugment
    kw = dict(STRONG, global_batch_size=16, local_device_count=2, epoch=3, seed=5)
    full = train(images, labels, **kw)
    assert len(full) == 6
    assert_batches_equal(train(images, labels, **kw), full)
    assert_batches_equal(train(images, labels, start_step=4, **kw), full[4:])
    assert train(images, labels, start_step=6, **kw) == []
    # RandAugment and CutMix did change the images (uint8 / 255 would be exact otherwise).
    plain = train(images, labels, **dict(kw, randaugment="", mix={}))
    assert not np.array_equal(plain[0]["image"], full[0]["image"])
    np.testing.assert_array_equal(plain[0]["label"], full[0]["label"])


def test_several_epochs_in_one_dataset_equal_the_epochs_one_by_one():
    images, labels = indexed_images(64)
    kw = dict(STRONG, randaugment="", global_batch_size=16, local_device_count=2, seed=4)
    joined = train(images, labels, epoch=2, start_step=1, num_epochs=3, **kw)
    single = train(images, labels, epoch=2, start_step=1, **kw)
    single += train(images, labels, epoch=3, **kw) + train(images, labels, epoch=4, **kw)
    assert len(joined) == 3 * 4 - 1
    assert_batches_equal(joined, single)
    # Each epoch visits its own order; all three differ.
    orders = [np.sort(epoch_order(64, 4, e)[:64]) for e in (2, 3, 4)]
    for o in orders:
        np.testing.assert_array_equal(o, np.arange(64))
    assert len({tuple(epoch_order(64, 4, e)) for e in (2, 3, 4)}) == 3
    # The steps are produced as they are read: a stream of 10**12 epochs starts at once.
    args = {"num_classes": K, **BASELINE, **kw}
    endless = pipeline.train_dataset(
        images, labels, epoch=2, start_step=1, num_epochs=10**12, **args
    )
    assert_batches_equal(list(endless.take(len(single)).as_numpy_iterator()), single)


@pytest.mark.parametrize("randaugment", ["", "rand-m9-mstd0.5"])
def test_host_split_concatenates_to_the_one_host_batch(randaugment):
    images, _ = indexed_images(96)
    images = np.random.default_rng(1).integers(0, 256, images.shape, dtype=np.uint8)
    labels = np.arange(96, dtype=np.int32) % K
    kw = dict(STRONG, randaugment=randaugment, mix={}, global_batch_size=16, epoch=2, seed=9)
    one = train(images, labels, process_count=1, local_device_count=4, **kw)
    hosts = [
        train(images, labels, process_index=h, process_count=2, local_device_count=2, **kw)
        for h in range(2)
    ]
    assert len(hosts[0]) == len(hosts[1]) == len(one) == 6
    for s, b in enumerate(one):
        for k in b:
            joined = np.concatenate([hosts[0][s][k], hosts[1][s][k]], axis=0)
            np.testing.assert_array_equal(joined, b[k], err_msg=f"step {s} {k}")


def test_cutmix_in_the_pipeline_mixes_each_host_batch():
    images, labels = indexed_images(256)
    kw = dict(STRONG, randaugment="", global_batch_size=32, local_device_count=2)
    lams = []
    for h in range(2):
        mixed = train(images, labels, process_index=h, process_count=2, **kw)
        plain = train(images, labels, process_index=h, process_count=2, **dict(kw, mix={}))
        for b, p in zip(mixed, plain):
            np.testing.assert_array_equal(b["label"], p["label"])  # original labels
            y = b["label"].reshape(-1)
            t = b["target"].reshape(-1, K)
            np.testing.assert_allclose(t.sum(1), 1.0, atol=1e-6)
            # One lambda per host batch (over its devices); mixed with itself reversed.
            lam = t[np.arange(len(y)), y][y != y[::-1]]
            assert np.ptp(lam) < 1e-6
            lam = lam[0]
            expected = lam * np.eye(K)[y] + (1 - lam) * np.eye(K)[y[::-1]]
            np.testing.assert_allclose(t, expected, atol=1e-6)
            # The pasted box comes from the reversed host batch and its area is 1 - lambda.
            x, x0 = b["image"].reshape(-1, 32, 32, 3), p["image"].reshape(-1, 32, 32, 3)
            box = (x != x0).any(-1)  # images differ pixel-wise from their reversed partners
            np.testing.assert_array_equal(x[box], x0[::-1][box])
            np.testing.assert_array_equal(x[~box], x0[~box])
            assert box[0].mean() == np.float32(1 - lam)
            lams.append(lam)
    assert len(set(np.round(lams, 6))) > len(lams) // 2  # hosts and steps draw their own


def test_batch_that_does_not_divide_is_a_clear_error():
    """An odd host batch with mixing on and a batch that does not split over the devices are
    config.validate's rules (test_config), and here, like a start_step or process_index out of
    range, assertions."""
    images, labels = indexed_images(64)
    with pytest.raises(AssertionError, match="odd host batch 3"):
        train(
            images,
            labels,
            global_batch_size=6,
            local_device_count=3,
            process_count=2,
            mix=dict(cutmix_alpha=1.0),
        )
    with pytest.raises(AssertionError, match="global batch size 30 does not split over 1 host.*4"):
        train(images, labels, global_batch_size=30, local_device_count=4)
    with pytest.raises(AssertionError, match="2 host.*x 4 local device"):
        pipeline.eval_dataset(
            images, labels, global_batch_size=12, process_count=2, local_device_count=4
        )
    with pytest.raises(AssertionError, match="start_step=9"):
        train(images, labels, start_step=9)
    with pytest.raises(AssertionError, match="process_index=2"):
        train(images, labels, process_index=2, process_count=2)


@pytest.mark.parametrize("process_count", [1, 2])
def test_eval_counts_every_test_image_exactly_once(process_count):
    images, labels = indexed_images(10_000)
    seen = []
    for h in range(process_count):
        batches = list(
            pipeline.eval_dataset(
                images,
                labels,
                global_batch_size=1024,
                process_index=h,
                process_count=process_count,
                local_device_count=2,
                **BASELINE,
            ).as_numpy_iterator()
        )
        assert len(batches) == 10  # every host runs the same number of batches
        for b in batches:
            assert b["image"].shape == (2, 512 // process_count, 32, 32, 3)
            assert b["mask"].dtype == np.float32
            real = b["mask"].reshape(-1) == 1
            assert set(np.unique(b["mask"])) <= {0.0, 1.0}
            idx = decode(
                np.where(
                    real[:, None, None, None],
                    b["image"].reshape(-1, 32, 32, 3),
                    (np.array([0, 0, 7]) / 255.0 - 0.5) / 0.5,
                )[None]
            )
            seen.append(idx[real])
            np.testing.assert_array_equal(b["label"].reshape(-1)[real], labels[idx[real]])
    seen = np.concatenate(seen)
    assert len(seen) == 10_000
    np.testing.assert_array_equal(np.sort(seen), np.arange(10_000))


def test_baseline_normalisation_is_exact():
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    images[0, 0, 0] = [0, 128, 255]
    labels = np.zeros(40, np.int32)
    expected = (images.astype(np.float32) / np.float32(255) - np.float32(0.5)) / np.float32(0.5)
    (b,) = list(
        pipeline.eval_dataset(images, labels, global_batch_size=40, **BASELINE).as_numpy_iterator()
    )
    np.testing.assert_array_equal(b["image"][0], expected)
    np.testing.assert_array_equal(b["image"][0, 0, 0, 0, [0, 2]], [-1.0, 1.0])  # 0 and 255
    assert abs(b["image"][0, 0, 0, 0, 1] - 1 / 255) < 1e-7  # 128
    # Training without augmentation uses the same transform, per channel too.
    mean, std = (0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261)
    (t,) = train(images, labels, global_batch_size=40, normalize_mean=mean, normalize_std=std)
    order = epoch_order(40, 0, 0)
    exp = (images[order].astype(np.float32) / np.float32(255) - np.float32(mean)) / np.float32(std)
    np.testing.assert_array_equal(t["image"][0], exp)
    # The strong recipe's ToTensor only: x / 255.
    (s,) = list(
        pipeline.eval_dataset(
            images, labels, global_batch_size=40, normalize_mean=(0, 0, 0), normalize_std=(1, 1, 1)
        ).as_numpy_iterator()
    )
    np.testing.assert_array_equal(s["image"][0], images.astype(np.float32) / np.float32(255))


@pytest.mark.parametrize("size", [64, 24])
def test_resize_matches_pillow_bilinear(size):
    """Up and down: torchvision's Resize on PIL images is PIL's bilinear filter, which widens
    its support when shrinking (antialiasing). PIL rounds to uint8: within 1 grey level."""
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    (b,) = list(
        pipeline.eval_dataset(
            images,
            np.zeros(4, np.int32),
            global_batch_size=4,
            image_size=size,
            normalize_mean=(0, 0, 0),
            normalize_std=(1, 1, 1),
        ).as_numpy_iterator()
    )
    assert b["image"].shape == (1, 4, size, size, 3)
    pil = [np.asarray(Image.fromarray(im).resize((size, size), Image.BILINEAR)) for im in images]
    diff = np.abs(b["image"][0] * 255 - np.stack(pil).astype(np.float32))
    assert diff.max() <= 1.0 + 1e-4 and diff.mean() < 0.4


def test_grid_undoes_normalisation_and_tiles():
    images, labels = indexed_images(20)
    images = np.random.default_rng(4).integers(0, 256, images.shape, dtype=np.uint8)
    for norm in (BASELINE, dict(normalize_mean=(0, 0, 0), normalize_std=(1, 1, 1))):
        (b,) = list(
            pipeline.eval_dataset(images, labels, global_batch_size=20, **norm).as_numpy_iterator()
        )
        back = viz.to_uint8(b["image"][0], norm["normalize_mean"], norm["normalize_std"])
        np.testing.assert_array_equal(back, images)
    grid = viz.batch_grid(b["image"], (0, 0, 0), (1, 1, 1), count=10, cols=4, scale=2)
    # 3 rows x 4 columns of 64-pixel tiles with 2-pixel gaps.
    assert grid.shape == (3 * 66 + 2, 4 * 66 + 2, 3) and grid.dtype == np.uint8
    np.testing.assert_array_equal(grid[2:66:2, 68:132:2], images[1])
    assert (grid[:2] == 255).all() and (grid[-66:, -66:] == 255).all()  # gaps, empty tiles


def test_before_after_grid_alternates_rows():
    rng = np.random.default_rng(5)
    before = rng.integers(0, 256, (5, 4, 4, 3), dtype=np.uint8)
    after = rng.integers(0, 256, (5, 4, 4, 3), dtype=np.uint8)
    grid = viz.before_after_grid(before, after, cols=3, scale=1)
    assert grid.shape == (4 * 6 + 2, 3 * 6 + 2, 3)  # rows: b0-2, a0-2, b3-4, a3-4
    tile = lambda r, c: grid[2 + 6 * r : 6 + 6 * r, 2 + 6 * c : 6 + 6 * c]
    np.testing.assert_array_equal(tile(0, 2), before[2])
    np.testing.assert_array_equal(tile(1, 2), after[2])
    np.testing.assert_array_equal(tile(2, 1), before[4])
    np.testing.assert_array_equal(tile(3, 1), after[4])
    assert (tile(3, 2) == 255).all()


def test_an_eval_batch_larger_than_the_test_split_shrinks_to_it():
    """eval_batch_size 4096 over 37 test images: one batch of 38 (2 devices), not 4096 of which
    4059 are padding (a huge eval_batch_size ran out of memory)."""
    c = default_config()
    c.eval_batch_size = 4096
    images, labels = indexed_images(37)
    batches = list(inputs.eval_batches(c, inputs.Data(images, labels, images, labels, 1)))
    assert [b["image"].shape for b in batches] == [(2, 19, 32, 32, 3)]
    assert float(np.sum(batches[0]["mask"])) == 37.0
