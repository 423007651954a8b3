"""Where the images come from: tensorflow-datasets, a local CIFAR archive, or a synthetic set.

Every source returns the same thing, a whole split in memory: `images` uint8 [N, 32, 32, 3] (HWC,
RGB) and `labels` int32 [N] (for CIFAR-100 the 100 fine labels). CIFAR is small (150 MB for the
training split), so reading it once and shuffling/augmenting from memory in tf.data is simplest.

This module imports no TensorFlow at load time (config validation, evaluate and predict import it);
tensorflow-datasets is imported when a tfds split is actually read. Inputs are config values that
config.validate has checked; what it cannot know (files' contents, the network) is checked here.
"""

from __future__ import annotations

import bz2
import glob
import gzip
import io
import lzma
import os
import pathlib
import pickle
import tarfile
import threading
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from typing import NamedTuple

import ml_collections
import numpy as np
from absl import logging

from swin_flax.config import DATASETS
from swin_flax.errors import DataError

SPLITS = ("train", "test")
IMAGE_SHAPE = (32, 32, 3)
_PIXELS = 32 * 32 * 3

_NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "synthetic": 10}
_PRETTY = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}

# What tfds downloads (and accepts in its manual directory), with the size it verifies.
_TFDS_ARCHIVE = {
    "cifar10": ("cifar-10-binary.tar.gz", 170_052_171, "https://www.cs.toronto.edu/~kriz/"),
    "cifar100": ("cifar-100-binary.tar.gz", 168_513_733, "https://www.cs.toronto.edu/~kriz/"),
}


def num_classes(dataset: str) -> int:
    """Number of classes of `dataset` ('cifar10', 'cifar100' or 'synthetic')."""
    return _NUM_CLASSES[dataset]


CIFAR10_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
# The 100 fine labels in label order (the archive's fine_label_names.txt, which tfds reads).
CIFAR100_NAMES = tuple(
    """apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus
    butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab
    crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard
    lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle mountain mouse mushroom
    oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy porcupine
    possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper snail snake
    spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger tractor
    train trout tulip turtle wardrobe whale willow_tree wolf woman worm""".split()  # noqa: SIM905
)


def class_names(dataset: str) -> tuple[str, ...]:
    """Names of the classes of `dataset`, indexed by label. Synthetic classes are named for their
    stripes: orientation and cycles across the image (see `synthetic_split`). ValueError for an
    unknown name: predict reads it from a run's config.json, which no validate has seen."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset={dataset!r} is not one of {DATASETS}.")
    if dataset == "cifar10":
        return CIFAR10_NAMES
    if dataset == "cifar100":
        return CIFAR100_NAMES
    return tuple(
        f"stripes_{round(float(np.rad2deg(_ANGLES[c % 5])))}deg_x{int(_FREQS[c // 5])}"
        for c in range(_NUM_CLASSES["synthetic"])
    )


def load_config_split(
    config: ml_collections.ConfigDict, split: str
) -> tuple[np.ndarray, np.ndarray]:
    """The data source a (validated) config names, one split: uint8 images [N, 32, 32, 3] and int32
    labels [N]. What training and evaluation read."""
    return load_split(
        config.dataset,
        split,
        data_dir=config.data_dir,
        archive=config.archive,
        synthetic_examples=config[f"synthetic_{split}_examples"],
        seed=config.seed,
    )


def load_split(
    dataset: str,
    split: str,
    *,
    data_dir: str | None = None,
    archive: str | None = None,
    synthetic_examples: int | None = None,
    seed: int = 0,
    download: bool = True,
    probe_url: str | None = None,
    probe_timeout_s: float = 5.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Reads one split whole: (images uint8 [N, 32, 32, 3], labels int32 [N]).

    dataset: 'cifar10' | 'cifar100' | 'synthetic'. split: 'train' | 'test'.
    archive: a local CIFAR archive (python or binary tarball) or a folder with one extracted; when
      set, tfds is not used and nothing is downloaded (not with 'synthetic': config.validate's rule).
    data_dir: tfds' data directory (None: tfds' default, ~/tensorflow_datasets or $TFDS_DATA_DIR).
    synthetic_examples: size of a synthetic split (None: 50,000 train / 10,000 test, CIFAR's sizes).
    seed: seeds the synthetic set only (train and test are different draws from the same classes).
    download: let tfds download and prepare the data when it is missing (False: fail at once).
    probe_url, probe_timeout_s: the address tried, before tfds downloads anything, to tell quickly
      whether this machine is online (None: the dataset's download URL).
    """
    assert dataset in DATASETS and split in SPLITS, (dataset, split)
    assert not (dataset == "synthetic" and archive), "config.validate: no archive for synthetic"
    if dataset == "synthetic":
        default = 50_000 if split == "train" else 10_000
        n = default if synthetic_examples is None else synthetic_examples
        logging.debug("Generating the synthetic %s split (%d images).", split, n)
        return synthetic_split(n, seed=seed, split=split)
    if archive:
        images, labels = read_archive(archive, dataset, split)
    else:
        images, labels = _load_tfds(dataset, split, data_dir, download, probe_url, probe_timeout_s)
    where = describe_source(dataset, data_dir=data_dir, archive=archive)
    logging.debug("Read the %s split of %s: %d images.", split, where, len(labels))
    return images, labels


def pretty_name(dataset: str) -> str:
    """'CIFAR-10' for 'cifar10': the name users know."""
    return _PRETTY.get(dataset, dataset)


def load_or_synthetic(
    dataset: str,
    split: str,
    *,
    data_dir: str | None = None,
    archive: str | None = None,
    synthetic_examples: int | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, str]:
    """For tools (benchmarks, pictures), not training: the named data if it can be read without
    downloading, else a CIFAR-sized synthetic split. Returns (images, labels, where from)."""
    if dataset != "synthetic":
        try:
            images, labels = load_split(
                dataset, split, data_dir=data_dir, archive=archive, download=False
            )
            return images, labels, describe_source(dataset, data_dir=data_dir, archive=archive)
        except DataError:
            logging.warning(
                "%s is not available without downloading; using synthetic data.", dataset
            )
    images, labels = load_split(
        "synthetic", split, synthetic_examples=synthetic_examples, seed=seed
    )
    note = "" if dataset == "synthetic" else f" ({dataset} is not available here)"
    return images, labels, describe_source("synthetic") + note


def describe_source(
    dataset: str, *, data_dir: str | None = None, archive: str | None = None
) -> str:
    """Where a run's data comes from, in the words of the console's data line (one wording for
    training's log, the tools and TensorBoard)."""
    if dataset == "synthetic":
        return "the SYNTHETIC data set (striped patterns, NOT CIFAR)"
    if archive:
        return f"{_PRETTY[dataset]} from the archive {archive}"
    return f"{_PRETTY[dataset]} from tensorflow-datasets ({data_dir or 'its default data_dir'})"


# --------------------------------------------------------------------------------------------
# tensorflow-datasets
# --------------------------------------------------------------------------------------------


def _load_tfds(
    dataset: str,
    split: str,
    data_dir: str | None,
    download: bool,
    probe_url: str | None,
    probe_timeout_s: float,
) -> tuple[np.ndarray, np.ndarray]:
    _fail_fast_if_unobtainable(dataset, data_dir, download, probe_url, probe_timeout_s)
    import tensorflow_datasets as tfds  # noqa: PLC0415 (heavy; only when tfds is the source)

    from swin_flax.data.pipeline import tf_cpu_only  # noqa: PLC0415 (TensorFlow)

    tf_cpu_only()  # tfds starts TF: keep it off JAX's accelerators
    builder = tfds.builder(dataset, data_dir=data_dir)
    if not builder.is_prepared():
        logging.info("Preparing %s with tfds in %s.", dataset, builder.data_dir_root)
        builder.download_and_prepare()
    ds = builder.as_dataset(split=split, as_supervised=True, shuffle_files=False)
    images, labels = [], []
    for x, y in tfds.as_numpy(ds.batch(10_000)):
        images.append(x)
        labels.append(y)
    if not images:
        raise DataError(f"tfds {dataset} split {split!r} in {builder.data_dir} is empty.")
    return np.concatenate(images).astype(np.uint8), np.concatenate(labels).astype(np.int32)


def _fail_fast_if_unobtainable(
    dataset: str,
    data_dir: str | None,
    download: bool,
    probe_url: str | None,
    probe_timeout_s: float,
) -> None:
    """Raises DataError in seconds when tfds could neither read nor obtain the data.

    tfds itself would retry a download for minutes before failing offline. Runs before tensorflow
    is imported: the data is obtainable if it is prepared, if the archive sits in tfds' manual
    directory (<data_dir>/downloads/manual/, where tfds' DownloadManager looks for it by file
    name) or download cache, or if the download URL answers.
    """
    name, size, base_url = _TFDS_ARCHIVE[dataset]
    default_root = os.environ.get("TFDS_DATA_DIR", os.path.join("~", "tensorflow_datasets"))
    root = os.path.expanduser(os.fspath(data_dir or default_root))
    if glob.glob(os.path.join(glob.escape(root), dataset, "*", "dataset_info.json")):
        return  # prepared (tfds makes the final check)
    manual = os.path.join(root, "downloads", "manual", name)
    if os.path.exists(manual):
        got = os.path.getsize(manual)
        if got != size:
            raise DataError(
                f"{manual} is not the genuine {name} ({got:,} bytes, expected {size:,}); tfds "
                "verifies the checksum and would reject it. Replace it with the original file, or "
                f"read it directly, without tfds or checksums: --config.archive={manual}"
            )
        return
    stem = name.split(".")[0]
    if glob.glob(os.path.join(glob.escape(root), "downloads", f"*{stem}*")):
        return  # downloaded earlier into tfds' cache
    url = probe_url or base_url + name
    if not download:
        raise DataError(_missing_message(dataset, root, manual, "downloads are turned off"))
    reason = _unreachable(url, probe_timeout_s)
    if reason is not None:
        why = f"cannot be downloaded: {url} is unreachable ({reason})"
        raise DataError(_missing_message(dataset, root, manual, why))


def _unreachable(url: str, timeout_s: float) -> str | None:
    """None if `url` answers within `timeout_s` (any HTTP status), else why not.

    Runs in a daemon thread joined with a deadline, since name resolution ignores socket timeouts.
    """
    result: list[str | None] = []

    def probe() -> None:
        try:
            urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout_s)
            result.append(None)
        except urllib.error.HTTPError:
            result.append(None)  # the server answered: we are online
        except Exception as e:  # noqa: BLE001 (any failure to connect means offline here)
            result.append(f"{type(e).__name__}: {e}")

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout_s + 0.5)
    return result[0] if result else f"no answer within {timeout_s:g} s"


def _missing_message(dataset: str, root: str, manual: str, why: str) -> str:
    pretty = _PRETTY[dataset]
    name = _TFDS_ARCHIVE[dataset][0]
    py_name = name.replace("binary", "python")
    return (
        f"{pretty} is not prepared in the tfds data_dir {root} and {why}. "
        "Supply the data in one of three ways:\n"
        f"  1. tensorflow-datasets: point --config.data_dir at a directory where {dataset} is "
        f"already prepared (`tfds build {dataset} --data_dir=DIR` on a machine online), or place "
        f"the genuine {name} at {manual} and rerun (tfds prepares it offline from there).\n"
        f"  2. A local archive, read directly: --config.archive=PATH to {py_name}, {name}, or a "
        "folder where either is extracted.\n"
        "  3. Synthetic data (no download; striped patterns, not CIFAR): "
        "--config.dataset=synthetic."
    )


# --------------------------------------------------------------------------------------------
# Local archives: python-pickle and binary tarballs, or extracted folders
# --------------------------------------------------------------------------------------------


class _Layout(NamedTuple):
    """One on-disk CIFAR layout: the files of each split, and how to decode one of them."""

    name: str
    folder: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    decode: Callable[[bytes, str], tuple[np.ndarray, np.ndarray]]


def _decode_records(label_bytes: int, label_index: int) -> Callable:
    record = label_bytes + _PIXELS

    def decode(data: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
        if len(data) == 0 or len(data) % record:
            raise DataError(
                f"{where} is truncated or corrupt: {len(data):,} bytes is not a whole number of "
                f"{record}-byte CIFAR records."
            )
        rows = np.frombuffer(data, np.uint8).reshape(-1, record)
        return _chw_to_hwc(rows[:, label_bytes:]), rows[:, label_index].astype(np.int32)

    return decode


def _decode_pickle(label_key: bytes) -> Callable:
    def decode(data: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
        try:
            d = _SafeUnpickler(io.BytesIO(data), encoding="bytes").load()
            pixels = np.asarray(d[b"data"], np.uint8)
            labels = np.asarray(d[label_key], np.int32)
        except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as e:
            raise DataError(
                f"{where} is truncated or corrupt, or not a CIFAR python batch "
                f"({type(e).__name__}: {e})."
            ) from None
        if pixels.ndim != 2 or pixels.shape[1] != _PIXELS or len(labels) != len(pixels):
            raise DataError(
                f"{where} is not a CIFAR python batch: data {pixels.shape}, {len(labels)} labels "
                f"(expected [N, {_PIXELS}] and N labels)."
            )
        return _chw_to_hwc(pixels), labels

    return decode


_LAYOUTS = {
    "cifar10": (
        _Layout(
            "cifar-10-python",
            "cifar-10-batches-py",
            tuple(f"data_batch_{i}" for i in range(1, 6)),
            ("test_batch",),
            _decode_pickle(b"labels"),
        ),
        _Layout(
            "cifar-10-binary",
            "cifar-10-batches-bin",
            tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
            ("test_batch.bin",),
            _decode_records(1, 0),
        ),
    ),
    "cifar100": (
        _Layout(
            "cifar-100-python",
            "cifar-100-python",
            ("train",),
            ("test",),
            _decode_pickle(b"fine_labels"),
        ),
        _Layout(
            "cifar-100-binary",
            "cifar-100-binary",
            ("train.bin",),
            ("test.bin",),
            _decode_records(2, 1),
        ),
    ),
}


def read_archive(path: str, dataset: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Reads `split` of CIFAR-10/100 from a tarball or an extracted folder, without checksums.

    Accepted: cifar-10-python.tar.gz, cifar-10-binary.tar.gz, cifar-100-python.tar.gz,
    cifar-100-binary.tar.gz (any tar compression), or a folder holding one of them extracted (the
    folder itself, its parent, or any folder up to two levels above the batch files).
    """
    path = os.path.expanduser(os.fspath(path))
    if not os.path.exists(path):
        raise DataError(f"archive {path} does not exist (--config.archive).")
    if os.path.isdir(path):
        files = dict(_folder_files(path))
        read = lambda rel: pathlib.Path(path, rel).read_bytes()
        where = lambda rel: os.path.join(path, rel)
    else:
        files = _tar_files(path)
        read = lambda rel: files[rel]
        where = lambda rel: f"{path} (member {rel})"
    layout, folder = _find_layout(files, path, dataset)
    parts = []
    for name in layout.train if split == "train" else layout.test:
        rel = os.path.join(folder, name) if folder else name
        parts.append(layout.decode(read(rel), where(rel)))
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    n = num_classes(dataset)
    if labels.min() < 0 or labels.max() >= n:
        raise DataError(f"{path}: labels outside [0, {n}) for {dataset}; is it the right archive?")
    return images, labels


def _find_layout(files, path: str, dataset: str) -> tuple[_Layout, str]:
    """The layout and the folder (relative to the archive root) holding all of its files."""
    folders: dict[str, set[str]] = {}
    for rel in files:
        folders.setdefault(os.path.dirname(rel), set()).add(os.path.basename(rel))
    for layout in _LAYOUTS[dataset]:
        need = set(layout.train) | set(layout.test)
        for folder, names in sorted(folders.items(), key=lambda kv: kv[0].count(os.sep)):
            if need <= names:
                return layout, folder
    other = "cifar100" if dataset == "cifar10" else "cifar10"
    for layout in _LAYOUTS[other]:
        if any(set(layout.train) <= names for names in folders.values()):
            raise DataError(
                f"{path} holds {layout.name} but dataset={dataset!r}: set --config.dataset={other}."
            )
    expected = ", ".join(
        f"{lo.folder}/{{{','.join(lo.train + lo.test)}}}" for lo in _LAYOUTS[dataset]
    )
    raise DataError(f"{path} holds no {_PRETTY[dataset]} batches; expected {expected}.")


def _tar_files(path: str) -> dict[str, bytes]:
    """The wanted members of a tarball. The whole compressed stream is decompressed first, so its
    checksum (gzip CRC, bz2/xz checks) catches corruption anywhere, not only in headers."""
    out = {}
    try:
        with open(path, "rb") as f:
            raw = f.read()
        for magic, decompress in _COMPRESSIONS:
            if raw.startswith(magic):
                raw = decompress(raw)
                break
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            for m in tar:
                if m.isfile() and os.path.basename(m.name) in _WANTED_NAMES:
                    f = tar.extractfile(m)
                    out[os.path.normpath(m.name)] = f.read() if f else b""
    except (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError, ValueError) as e:
        raise DataError(
            f"archive {path} is truncated or corrupt ({type(e).__name__}: {e}); download it again "
            "or point --config.archive at an extracted folder."
        ) from None
    return out


_COMPRESSIONS = (
    (b"\x1f\x8b", gzip.decompress),
    (b"BZh", bz2.decompress),
    (b"\xfd7zXZ", lzma.decompress),
)


_WANTED_NAMES = {n for layouts in _LAYOUTS.values() for lo in layouts for n in lo.train + lo.test}


def _folder_files(root: str, max_depth: int = 2) -> Iterator[tuple[str, None]]:
    """(relative path, None) for each wanted file at most `max_depth` folders below `root`."""
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        depth = 0 if rel_dir == "." else rel_dir.count(os.sep) + 1
        if depth >= max_depth:
            dirnames[:] = []
        for f in filenames:
            if f in _WANTED_NAMES:
                yield (f if rel_dir == "." else os.path.join(rel_dir, f)), None


def _chw_to_hwc(rows: np.ndarray) -> np.ndarray:
    """CIFAR rows (1024 R, 1024 G, 1024 B values; row-major 32x32 planes) -> [N, 32, 32, 3]."""
    return np.ascontiguousarray(rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


class _SafeUnpickler(pickle.Unpickler):
    """Unpickles CIFAR batches (dicts of lists, bytes and numpy arrays) and nothing else.

    A pickle can run arbitrary code when loaded; this refuses every global except the few numpy
    reconstructors a CIFAR batch needs.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")
        return super().find_class(module, name)


# --------------------------------------------------------------------------------------------
# Synthetic
# --------------------------------------------------------------------------------------------

# Class c: stripes at angle _ANGLES[c % 5], _FREQS[c // 5] cycles across the image, in a foreground
# colour whose hue centres on c / 10. Per image: jittered angle and frequency, random phase (a
# random shift of the pattern), background colour, contrast and pixel noise.
_ANGLES = np.deg2rad([0.0, 36.0, 72.0, 108.0, 144.0])
_FREQS = np.array([2.0, 4.0])


def synthetic_split(
    num_examples: int, *, seed: int = 0, split: str = "train"
) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic CIFAR-shaped split: 10 classes of noisy coloured stripes, deterministic in seed.

    A class is an orientation (5) x a frequency (2), with a class-leaning hue; per-image jitter,
    contrast and noise keep it from being solved in a step. Train and test are different draws.
    """
    rng = np.random.default_rng([seed, SPLITS.index(split), 0x5717])
    labels = rng.permutation(np.arange(num_examples) % 10).astype(np.int32)
    images = np.empty((num_examples, *IMAGE_SHAPE), np.uint8)
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float32) - 15.5
    for start in range(0, num_examples, 4096):
        c = labels[start : start + 4096]
        n = len(c)
        theta = _ANGLES[c % 5] + rng.normal(0.0, np.deg2rad(7.0), n)
        freq = _FREQS[c // 5] * rng.uniform(0.85, 1.15, n)
        phase = rng.uniform(0.0, 2 * np.pi, n)
        cos, sin = np.cos(theta)[:, None, None], np.sin(theta)[:, None, None]
        arg = (2 * np.pi / 32.0) * freq[:, None, None] * (xx * cos + yy * sin) + phase[
            :, None, None
        ]
        wave = 0.5 + 0.5 * np.sin(arg.astype(np.float32))
        hue = (c / 10.0 + rng.normal(0.0, 0.07, n)) % 1.0
        fg = _hsv_to_rgb(hue, rng.uniform(0.5, 1.0, n), rng.uniform(0.6, 1.0, n)) * 255.0
        bg = rng.uniform(0.0, 255.0, (n, 3))
        contrast = rng.uniform(0.35, 1.0, n)[:, None]
        fg = bg + contrast * (fg - bg)
        bg, fg = bg.astype(np.float32), fg.astype(np.float32)
        img = bg[:, None, None, :] + (fg - bg)[:, None, None, :] * wave[..., None]
        img += 24.0 * rng.standard_normal(img.shape, np.float32)
        images[start : start + n] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return images, labels


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV (each [n] in [0, 1]) -> RGB [n, 3] in [0, 1]."""
    i = np.floor(h * 6.0).astype(int) % 6
    f = h * 6.0 - np.floor(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    table = np.stack([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)])  # [6,3,n]
    return table[i, :, np.arange(len(h))]
