"""Writers of small data sets in the genuine CIFAR file formats (member names, pickle keys, records)."""

from __future__ import annotations

import io
import pathlib
import pickle
import tarfile

import numpy as np

CIFAR10_NAMES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


def random_split(n: int, num_classes: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, num_classes, n).astype(np.int64)
    return images, labels


def _chw_rows(images: np.ndarray) -> np.ndarray:
    """[N, 32, 32, 3] -> [N, 3072]: the files store each image as 1024 R, then G, then B bytes."""
    return images.transpose(0, 3, 1, 2).reshape(len(images), 3072)


def _add(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


def cifar10_python_tarball(path: pathlib.Path, train, test, batches: int = 5) -> pathlib.Path:
    """cifar-10-python.tar.gz: cifar-10-batches-py/data_batch_1..5 and test_batch (python-2 pickles)."""
    with tarfile.open(path, "w:gz") as tar:
        parts = np.array_split(np.arange(len(train[0])), batches)
        for i, idx in enumerate(parts, 1):
            d = {
                b"batch_label": f"training batch {i} of 5".encode(),
                b"labels": train[1][idx].tolist(),
                b"data": _chw_rows(train[0][idx]),
                b"filenames": [f"img_{j}.png".encode() for j in idx],
            }
            _add(tar, f"cifar-10-batches-py/data_batch_{i}", pickle.dumps(d, protocol=2))
        d = {
            b"batch_label": b"testing batch 1 of 1",
            b"labels": test[1].tolist(),
            b"data": _chw_rows(test[0]),
            b"filenames": [b"t.png"] * len(test[1]),
        }
        _add(tar, "cifar-10-batches-py/test_batch", pickle.dumps(d, protocol=2))
        meta = {
            b"label_names": [n.encode() for n in CIFAR10_NAMES],
            b"num_cases_per_batch": 10000,
            b"num_vis": 3072,
        }
        _add(tar, "cifar-10-batches-py/batches.meta", pickle.dumps(meta, protocol=2))
        _add(tar, "cifar-10-batches-py/readme.html", b"<html></html>")
    return path


def cifar10_binary_tarball(path: pathlib.Path, train, test, batches: int = 5) -> pathlib.Path:
    """cifar-10-binary.tar.gz: cifar-10-batches-bin/data_batch_{1..5}.bin, test_batch.bin; each record
    is 1 label byte then 3072 pixel bytes."""

    def records(images, labels):
        rows = _chw_rows(images)
        return np.concatenate([labels.astype(np.uint8)[:, None], rows], axis=1).tobytes()

    with tarfile.open(path, "w:gz") as tar:
        parts = np.array_split(np.arange(len(train[0])), batches)
        for i, idx in enumerate(parts, 1):
            _add(
                tar,
                f"cifar-10-batches-bin/data_batch_{i}.bin",
                records(train[0][idx], train[1][idx]),
            )
        _add(tar, "cifar-10-batches-bin/test_batch.bin", records(*test))
        _add(
            tar, "cifar-10-batches-bin/batches.meta.txt", "\n".join(CIFAR10_NAMES).encode() + b"\n"
        )
        _add(tar, "cifar-10-batches-bin/readme.html", b"<html></html>")
    return path


def cifar100_python_tarball(path: pathlib.Path, train, test) -> pathlib.Path:
    """cifar-100-python.tar.gz: cifar-100-python/train, test (fine and coarse labels), meta."""
    with tarfile.open(path, "w:gz") as tar:
        for name, (images, labels) in (("train", train), ("test", test)):
            d = {
                b"filenames": [b"x.png"] * len(labels),
                b"batch_label": name.encode(),
                b"fine_labels": labels.tolist(),
                b"coarse_labels": (labels // 5).tolist(),
                b"data": _chw_rows(images),
            }
            _add(tar, f"cifar-100-python/{name}", pickle.dumps(d, protocol=2))
        meta = {
            b"fine_label_names": [f"c{i}".encode() for i in range(100)],
            b"coarse_label_names": [f"s{i}".encode() for i in range(20)],
        }
        _add(tar, "cifar-100-python/meta", pickle.dumps(meta, protocol=2))
    return path
