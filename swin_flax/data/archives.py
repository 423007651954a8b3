"""CIFAR-10/100 read directly from their published archives (the python-pickle and binary tarballs of
https://www.cs.toronto.edu/~kriz/cifar.html) or an extracted folder: no tfds and no checksums, only
tarfile, a restricted unpickler and numpy. `read_archive` returns (images uint8 [N, 32, 32, 3],
labels int32 [N]); what a file holds is checked here (truncation, corruption, the wrong data set).
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import pathlib
import pickle
import tarfile
import zlib
from collections.abc import Callable, Iterator
from typing import NamedTuple

import numpy as np

from swin_flax.errors import DataError

NUM_CLASSES = {"cifar10": 10, "cifar100": 100}
PRETTY = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}  # the names users know
_PIXELS = 32 * 32 * 3


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
    n = NUM_CLASSES[dataset]
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
    raise DataError(f"{path} holds no {PRETTY[dataset]} batches; expected {expected}.")


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
