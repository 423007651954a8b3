"""Data sources: CIFAR archives in their genuine layouts, tfds (mocked and offline), synthetic."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import pickle
import shutil
import socket
import struct
import tarfile
import time
from unittest import mock

import numpy as np
import pytest

from swin_flax.config import default_config
from swin_flax.data import archives, sources

# ---------------------------------------------------------------------------------------------
# Writers of the genuine file formats (https://www.cs.toronto.edu/~kriz/cifar.html), independent
# of the reader: rows of 3072 bytes = 1024 red, 1024 green, 1024 blue values, each plane row-major.
# ---------------------------------------------------------------------------------------------


class _Py2Pickler(pickle._Pickler):
    """Writes what Python 2's cPickle wrote for the CIFAR batches: protocol 2, every str/bytes as
    a py2 `str` (SHORT_BINSTRING / BINSTRING), numpy arrays via numpy.core.multiarray."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_py2_str(self, obj):
        if isinstance(obj, str):
            obj = obj.encode("latin-1")
        n = len(obj)
        head = (
            pickle.SHORT_BINSTRING + bytes([n])
            if n < 256
            else pickle.BINSTRING + struct.pack("<i", n)
        )
        self.write(head + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str
    dispatch[str] = _save_py2_str


def py2_pickle(obj) -> bytes:
    f = io.BytesIO()
    _Py2Pickler(f, protocol=2).dump(obj)
    return f.getvalue().replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")


def random_rows(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3072), dtype=np.uint8)


def expected_hwc(rows: np.ndarray) -> np.ndarray:
    """images[i, r, c, ch] = rows[i, ch * 1024 + r * 32 + c] (the CIFAR page's description)."""
    r, c, ch = np.meshgrid(np.arange(32), np.arange(32), np.arange(3), indexing="ij")
    return rows[:, ch * 1024 + r * 32 + c]


def _add(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    info.mtime = 1243000000
    tar.addfile(info, io.BytesIO(payload))


def make_data(n_train: int, n_test: int, num_classes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    train = (random_rows(n_train, seed + 1), rng.integers(0, num_classes, n_train))
    test = (random_rows(n_test, seed + 2), rng.integers(0, num_classes, n_test))
    return train, test


def write_cifar10_python(path, train, test, per_batch: int) -> None:
    with tarfile.open(path, "w:gz") as tar:
        _add(tar, "cifar-10-batches-py/readme.html", b"<html></html>")
        for i in range(5):
            sl = slice(i * per_batch, (i + 1) * per_batch)
            d = {
                b"batch_label": f"training batch {i + 1} of 5".encode(),
                b"labels": [int(v) for v in train[1][sl]],
                b"data": train[0][sl],
                b"filenames": [f"img_{j}.png".encode() for j in range(per_batch)],
            }
            _add(tar, f"cifar-10-batches-py/data_batch_{i + 1}", py2_pickle(d))
        d = {
            b"batch_label": b"testing batch 1 of 1",
            b"labels": [int(v) for v in test[1]],
            b"data": test[0],
            b"filenames": [f"t_{j}.png".encode() for j in range(len(test[1]))],
        }
        _add(tar, "cifar-10-batches-py/test_batch", py2_pickle(d))
        meta = {b"label_names": [b"airplane"] * 10, b"num_cases_per_batch": per_batch}
        _add(tar, "cifar-10-batches-py/batches.meta", py2_pickle(meta))


def _records(rows: np.ndarray, *label_columns: np.ndarray) -> bytes:
    labels = np.stack([np.asarray(col, np.uint8) for col in label_columns], 1)
    return np.concatenate([labels, rows], 1).tobytes()


def write_cifar10_binary(path, train, test, per_batch: int) -> None:
    with tarfile.open(path, "w:gz") as tar:
        _add(tar, "cifar-10-batches-bin/batches.meta.txt", b"airplane\n" * 10)
        for i in range(5):
            sl = slice(i * per_batch, (i + 1) * per_batch)
            _add(
                tar,
                f"cifar-10-batches-bin/data_batch_{i + 1}.bin",
                _records(train[0][sl], train[1][sl]),
            )
        _add(tar, "cifar-10-batches-bin/test_batch.bin", _records(test[0], test[1]))
        _add(tar, "cifar-10-batches-bin/readme.html", b"<html></html>")


def write_cifar100_python(path, train, test) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, (rows, fine) in (("train", train), ("test", test)):
            d = {
                b"filenames": [b"x.png"] * len(fine),
                b"batch_label": f"{name}ing batch 1 of 1".encode(),
                b"fine_labels": [int(v) for v in fine],
                b"coarse_labels": [int(v) // 5 for v in fine],
                b"data": rows,
            }
            _add(tar, f"cifar-100-python/{name}", py2_pickle(d))
        meta = {b"fine_label_names": [b"apple"] * 100, b"coarse_label_names": [b"fruit"] * 20}
        _add(tar, "cifar-100-python/meta", py2_pickle(meta))


def write_cifar100_binary(path, train, test) -> None:
    with tarfile.open(path, "w:gz") as tar:
        _add(tar, "cifar-100-binary/coarse_label_names.txt", b"fruit\n" * 20)
        _add(tar, "cifar-100-binary/fine_label_names.txt", b"apple\n" * 100)
        for name, (rows, fine) in (("train", train), ("test", test)):
            # Records: coarse label byte, fine label byte, 3072 pixels.
            _add(tar, f"cifar-100-binary/{name}.bin", _records(rows, fine // 5, fine))


def check_equal(got, rows, labels) -> None:
    images, lab = got
    assert images.dtype == np.uint8 and images.shape == (len(rows), 32, 32, 3)
    assert lab.dtype == np.int32
    np.testing.assert_array_equal(images, expected_hwc(rows))
    np.testing.assert_array_equal(lab, labels)


# ---------------------------------------------------------------------------------------------
# Archives
# ---------------------------------------------------------------------------------------------

PER_BATCH = 4  # 5 training batches of 4 images, a test batch of 6


@pytest.fixture(scope="module")
def cifar10(tmp_path_factory):
    d = tmp_path_factory.mktemp("c10")
    train, test = make_data(5 * PER_BATCH, 6, 10, seed=3)
    write_cifar10_python(d / "cifar-10-python.tar.gz", train, test, PER_BATCH)
    write_cifar10_binary(d / "cifar-10-binary.tar.gz", train, test, PER_BATCH)
    return d, train, test


@pytest.mark.parametrize("name", ["cifar-10-python.tar.gz", "cifar-10-binary.tar.gz"])
def test_cifar10_tarballs_read_back_equal(cifar10, name):
    d, train, test = cifar10
    check_equal(sources.load_split("cifar10", "train", archive=str(d / name)), *train)
    check_equal(sources.load_split("cifar10", "test", archive=str(d / name)), *test)


@pytest.mark.parametrize("name", ["cifar-10-python.tar.gz", "cifar-10-binary.tar.gz"])
def test_cifar10_extracted_folders_read_back_equal(cifar10, tmp_path, name):
    d, train, test = cifar10
    with tarfile.open(d / name) as tar:
        tar.extractall(tmp_path, filter="data")
    inner = next(p for p in tmp_path.iterdir() if p.is_dir())
    for folder in (tmp_path, inner):  # the folder holding the extracted one, or the batches' own
        check_equal(sources.load_split("cifar10", "train", archive=str(folder)), *train)
        check_equal(sources.load_split("cifar10", "test", archive=str(folder)), *test)


@pytest.mark.parametrize("writer", [write_cifar100_python, write_cifar100_binary])
def test_cifar100_fine_labels(tmp_path, writer):
    train, test = make_data(12, 5, 100, seed=5)
    path = tmp_path / "cifar100.tar.gz"
    writer(path, train, test)
    check_equal(sources.load_split("cifar100", "train", archive=str(path)), *train)
    check_equal(sources.load_split("cifar100", "test", archive=str(path)), *test)
    assert sources.num_classes("cifar100") == 100


def test_wrong_dataset_for_archive_says_which(tmp_path):
    train, test = make_data(12, 5, 100, seed=5)
    write_cifar100_python(tmp_path / "c100.tar.gz", train, test)
    with pytest.raises(  # both flags that read it: its name and its class count
        sources.DataError,
        match="cifar-100-python.*--config.dataset=cifar100 --config.model.num_classes=100\\.$",
    ):
        sources.load_split("cifar10", "train", archive=str(tmp_path / "c100.tar.gz"))


@pytest.mark.parametrize("name", ["cifar-10-python.tar.gz", "cifar-10-binary.tar.gz"])
def test_truncated_tarball_names_the_file(cifar10, tmp_path, name):
    data = (cifar10[0] / name).read_bytes()
    bad = tmp_path / name
    bad.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(sources.DataError, match=f"{bad}.*truncated or corrupt"):
        sources.load_split("cifar10", "test", archive=str(bad))


def test_corrupt_tarball_names_the_file(cifar10, tmp_path):
    raw = gzip.decompress((cifar10[0] / "cifar-10-binary.tar.gz").read_bytes())
    data = bytearray(gzip.compress(raw))
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)  # zero a stretch of the deflate stream
    bad = tmp_path / "cifar-10-binary.tar.gz"
    bad.write_bytes(bytes(data))
    with pytest.raises(sources.DataError, match=f"{bad}.*truncated or corrupt"):
        sources.load_split("cifar10", "train", archive=str(bad))


@pytest.mark.parametrize("content", [b"notes, not an archive\n" * 40, bytes(range(256)) * 4])
def test_a_file_that_is_no_tar_archive_is_called_so(tmp_path, content):
    """A file that is neither compressed nor a tar (no "ustar" at byte 257 of its first header) is
    not called truncated, whose advice (download it again) would not help."""
    bad = tmp_path / "notes.txt"
    bad.write_bytes(content)
    with pytest.raises(sources.DataError, match=f"archive {bad} is not a tar archive") as e:
        sources.load_split("cifar10", "test", archive=str(bad))
    assert "truncated" not in str(e.value)


def test_truncated_extracted_files_name_the_file(cifar10, tmp_path):
    d = cifar10[0]
    for name in ("cifar-10-binary.tar.gz", "cifar-10-python.tar.gz"):
        with tarfile.open(d / name) as tar:
            tar.extractall(tmp_path, filter="data")
    for folder, member in (
        ("cifar-10-batches-bin", "data_batch_3.bin"),
        ("cifar-10-batches-py", "data_batch_3"),
    ):
        path = tmp_path / folder / member
        path.write_bytes(path.read_bytes()[:-100])
        with pytest.raises(sources.DataError, match=f"{path} is truncated or corrupt"):
            sources.load_split("cifar10", "train", archive=str(tmp_path / folder))


def test_pickle_that_runs_code_is_refused(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    evil = pickle.dumps(os.system, protocol=2)  # a global outside the numpy reconstructors
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(evil)
    with pytest.raises(sources.DataError, match="test_batch.*refusing to load"):
        sources.load_split("cifar10", "test", archive=str(folder))


def test_missing_archive_and_empty_folder(tmp_path):
    with pytest.raises(sources.DataError, match="does not exist"):
        sources.load_split("cifar10", "train", archive=str(tmp_path / "nope.tar.gz"))
    with pytest.raises(sources.DataError, match="holds no CIFAR-10 batches"):
        sources.load_split("cifar10", "train", archive=str(tmp_path))


@pytest.mark.parametrize("name", ["cifar-10-python.tar.gz", "cifar-10-binary.tar.gz"])
def test_a_folder_of_the_downloads_names_the_archive_to_give(cifar10, tmp_path, name):
    """The folder the .tar.gz was downloaded into, given instead of the file: the paragraph names
    the file to give, which then reads as it is."""
    d, train, _ = cifar10
    shutil.copy(d / name, tmp_path / name)
    (tmp_path / "notes.txt").write_text("downloaded today")
    with pytest.raises(sources.DataError) as refused:
        sources.load_split("cifar10", "train", archive=str(tmp_path))
    assert str(refused.value) == (
        f"{tmp_path} holds no extracted CIFAR-10 batches but the downloaded {name}: give the "
        f"archive itself: --config.archive={tmp_path / name} (it is read without extracting)."
    )
    check_equal(sources.load_split("cifar10", "train", archive=str(tmp_path / name)), *train)


def _extract(tarball, into) -> None:
    with tarfile.open(tarball) as tar:
        tar.extractall(into, filter="data")


def test_a_folder_holding_two_extractions_is_refused_naming_each(cifar10, tmp_path):
    """A folder with two extractions was read from one of them without a word: each is named,
    none read. The downloaded archive beside one extraction (`tar xzf` in its folder) is not a
    second copy: the extraction is read, and the log line names it (next test)."""
    d, train, test = cifar10
    other = tmp_path / "other.tar.gz"
    other_data = make_data(10, 4, 10, seed=9)
    write_cifar10_python(other, *other_data, per_batch=2)
    two = tmp_path / "two"
    _extract(d / "cifar-10-python.tar.gz", two / "a")
    _extract(other, two / "b")
    each = [two / "a" / "cifar-10-batches-py", two / "b" / "cifar-10-batches-py"]
    with pytest.raises(sources.DataError) as refused:
        sources.load_split("cifar10", "train", archive=str(two))
    assert str(refused.value) == (
        f"{two} holds more than one extracted CIFAR-10: {each[0]}, {each[1]}. Give the one "
        f"meant, e.g. --config.archive={each[0]}."
    )
    check_equal(sources.load_split("cifar10", "test", archive=str(two / "a")), *test)
    beside = tmp_path / "beside"
    _extract(other, beside)
    shutil.copy(d / "cifar-10-python.tar.gz", beside)
    check_equal(sources.load_split("cifar10", "train", archive=str(beside)), *other_data[0])


def test_the_data_log_line_names_the_batch_folder_read(cifar10, tmp_path, monkeypatch):
    """The folder given may hold more than the data; the line names the batch folder read, in the
    training log and the tools alike."""
    from swin_flax.data import inputs

    d, train, test = cifar10
    _extract(d / "cifar-10-binary.tar.gz", tmp_path / "data")
    c = default_config()
    c.archive, c.batch_size = str(tmp_path), 4
    lines = []
    monkeypatch.setattr(inputs.logging, "info", lambda fmt, *args: lines.append(fmt % args))
    inputs.load_data(c)
    batches = tmp_path / "data" / "cifar-10-batches-bin"
    assert lines == [f"data: CIFAR-10 from the archive {batches}, 20 train / 6 test images"]
    # The tools' line (show_augmentations, evaluate's reports) too.
    _, _, where = sources.load_or_synthetic("cifar10", "test", archive=str(tmp_path))
    assert where == f"CIFAR-10 from the archive {batches}"


def test_a_partial_extraction_names_the_missing_batches(cifar10, tmp_path):
    _extract(cifar10[0] / "cifar-10-python.tar.gz", tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    (folder / "data_batch_3").unlink()
    with pytest.raises(sources.DataError) as refused:
        sources.load_split("cifar10", "test", archive=str(tmp_path))
    assert str(refused.value) == (
        f"{folder} lacks data_batch_3 of cifar-10-python: copy or extract it again."
    )


def test_a_tarball_lacking_a_member_names_it_and_says_to_download_again(tmp_path):
    """A tarball without cifar-100-python/test (was: "TARBALL/cifar-100-python lacks test of
    cifar-100-python: copy or extract it again", a path that is no folder)."""
    train, _ = make_data(12, 5, 100, seed=5)
    path = tmp_path / "cifar-100-python.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        d = {b"fine_labels": [int(v) for v in train[1]], b"data": train[0]}
        _add(tar, "cifar-100-python/train", py2_pickle(d))
    with pytest.raises(sources.DataError) as refused:
        sources.load_split("cifar100", "train", archive=str(path))
    assert str(refused.value) == (
        f"the archive {path} lacks cifar-100-python/test: download it again."
    )


@pytest.mark.parametrize("name", ["cifar-10-python.tar.gz", "cifar-10-binary.tar.gz"])
def test_a_batch_file_given_names_its_folder(cifar10, tmp_path, name):
    """One extracted batch file given as the archive (was: "is not a tar archive")."""
    d, train, _ = cifar10
    _extract(d / name, tmp_path)
    (folder,) = tmp_path.iterdir()
    batch = folder / ("data_batch_2.bin" if "binary" in name else "data_batch_2")
    with pytest.raises(sources.DataError) as refused:
        sources.load_split("cifar10", "train", archive=str(batch))
    assert str(refused.value) == (
        f"archive {batch} is one batch file of an extracted CIFAR archive: give the folder "
        f"holding them all, --config.archive={folder}."
    )
    check_equal(sources.load_split("cifar10", "train", archive=str(folder)), *train)


@pytest.mark.parametrize("dtype", ["float32", "int64"])
def test_pixels_that_are_not_bytes_are_refused(tmp_path, dtype):
    """The genuine python batches hold uint8 pixels; float pixels in [0, 1] (or ints) were cast
    to uint8 without a word (floats all 0 or 1)."""
    train, test = make_data(12, 5, 100, seed=5)
    rows = train[0].astype(np.float32) / 255 if dtype == "float32" else train[0].astype(dtype)
    path = tmp_path / "cifar-100-python.tar.gz"
    write_cifar100_python(path, (rows, train[1]), test)
    with pytest.raises(sources.DataError) as refused:
        sources.load_split("cifar100", "train", archive=str(path))
    assert str(refused.value) == (
        f"{path} (member cifar-100-python/train) is not a CIFAR python batch: its data are "
        f"{dtype}, where CIFAR's are uint8 pixel values 0..255."
    )
    check_equal(sources.load_split("cifar100", "test", archive=str(path)), *test)


def _deny(monkeypatch, denied) -> None:
    """Opening or listing `denied` fails as it does for a user without permission (the tests may
    run as root, whom permissions do not stop)."""

    def refuse(path):
        if os.path.normpath(os.fspath(path)) == str(denied):
            raise PermissionError(13, "Permission denied", os.fspath(path))

    real_open, real_scandir = io.open, os.scandir
    monkeypatch.setattr(io, "open", lambda f, *a, **k: refuse(f) or real_open(f, *a, **k))
    monkeypatch.setattr(os, "scandir", lambda p=".": refuse(p) or real_scandir(p))


@pytest.mark.parametrize("denied", ["tarball", "folder", "batch file"])
def test_an_unreadable_archive_is_said_to_be_unreadable(cifar10, tmp_path, monkeypatch, denied):
    """Each was reported as something else: a corrupt download, a folder without batches, or a
    bare '[Errno 13] Permission denied'."""
    tarball = cifar10[0] / "cifar-10-binary.tar.gz"
    _extract(tarball, tmp_path)
    given, target = {
        "tarball": (tarball, tarball),
        "folder": (tmp_path, tmp_path),
        "batch file": (tmp_path, tmp_path / "cifar-10-batches-bin" / "test_batch.bin"),
    }[denied]
    _deny(monkeypatch, target)
    with pytest.raises(sources.DataError) as refused:
        sources.load_split("cifar10", "test", archive=str(given))
    assert str(refused.value) == (
        f"{target} cannot be read: permission denied for this user. Make it readable (chmod -R "
        f"a+rX {target}, as its owner), or copy the data somewhere readable and give that as "
        "--config.archive."
    )


def test_an_unreadable_folder_beside_the_data_is_passed_over(cifar10, tmp_path, monkeypatch):
    """A mounted disk's root-only lost+found (or another user's folder) beside an extraction."""
    d, train, test = cifar10
    _extract(d / "cifar-10-binary.tar.gz", tmp_path)
    (tmp_path / "lost+found").mkdir()
    _deny(monkeypatch, tmp_path / "lost+found")
    check_equal(sources.load_split("cifar10", "test", archive=str(tmp_path)), *test)


def test_a_zip_file_is_said_to_be_one(tmp_path):
    import zipfile

    path = tmp_path / "cifar-10-python.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("cifar-10-batches-py/test_batch", b"x")
    with pytest.raises(sources.DataError) as refused:
        sources.load_split("cifar10", "test", archive=str(path))
    assert str(refused.value) == (
        f"archive {path} is a zip file, which is not read: unzip it and give the folder it makes "
        "as --config.archive."
    )


# ---------------------------------------------------------------------------------------------
# tensorflow-datasets
# ---------------------------------------------------------------------------------------------


def _closed_port_url() -> str:
    """An http URL on localhost where nothing listens: connecting is refused at once (offline)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/cifar-10-binary.tar.gz"


def test_tfds_prepared_split_is_read_through_tfds(tmp_path):
    import tensorflow_datasets as tfds

    # Make the empty data_dir look prepared (metadata only); mock_data then serves fake examples.
    builder = tfds.builder("cifar10", data_dir=str(tmp_path))
    os.makedirs(builder.data_dir)
    builder.info.write_to_directory(builder.data_dir)
    with tfds.testing.mock_data(num_examples=23, data_dir=str(tmp_path)):
        images, labels = sources.load_split(
            "cifar10", "train", data_dir=str(tmp_path), probe_url=_closed_port_url()
        )
    assert images.shape == (23, 32, 32, 3) and images.dtype == np.uint8
    assert labels.shape == (23,) and labels.dtype == np.int32
    assert labels.min() >= 0 and labels.max() < 10
    assert images.std() > 0  # mock_data fills random pixels


def test_tfds_offline_missing_data_fails_fast_naming_the_three_ways(tmp_path):
    t0 = time.monotonic()
    with pytest.raises(sources.DataError) as err:
        sources.load_split("cifar10", "train", data_dir=str(tmp_path), probe_url=_closed_port_url())
    elapsed = time.monotonic() - t0
    assert elapsed < 10, f"took {elapsed:.1f} s"
    msg = str(err.value)
    manual = os.path.join(str(tmp_path), "downloads", "manual", "cifar-10-binary.tar.gz")
    assert "--config.data_dir" in msg and manual in msg  # 1. tfds prepared or manual archive
    assert "--config.archive=PATH" in msg  # 2. local archive
    assert "--config.dataset=synthetic" in msg  # 3. synthetic
    assert not os.path.exists(os.path.join(str(tmp_path), "cifar10", "3.0.2", "dataset_info.json"))


def test_download_off_fails_at_once_and_tools_fall_back_to_synthetic(tmp_path, monkeypatch):
    t0 = time.monotonic()
    with pytest.raises(
        sources.DataError, match="(?s)downloads are turned off.*--config.archive=PATH"
    ):
        sources.load_split("cifar100", "test", data_dir=str(tmp_path), download=False)
    assert time.monotonic() - t0 < 10
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))  # tfds' default folder, empty
    images, labels, where = sources.load_or_synthetic("cifar10", "test", synthetic_examples=20)
    assert images.shape == (20, 32, 32, 3) and "SYNTHETIC" in where
    assert where.endswith(
        f"(cifar10 cannot be read from tfds' folder {tmp_path} without downloading)"
    )
    # An archive or a data_dir the user named is read or refused, never replaced by synthetic data.
    (tmp_path / "cut.tar.gz").write_bytes(b"\x1f\x8b not a whole archive")
    with pytest.raises(sources.DataError, match="truncated or corrupt"):
        sources.load_or_synthetic("cifar10", "test", archive=str(tmp_path / "cut.tar.gz"))
    with pytest.raises(
        sources.DataError, match=f"data_dir {tmp_path},? and downloads are turned off"
    ):
        sources.load_or_synthetic("cifar10", "test", data_dir=str(tmp_path))


def test_tfds_manual_dir_with_a_non_genuine_archive(cifar10, tmp_path):
    manual = tmp_path / "downloads" / "manual"
    manual.mkdir(parents=True)
    fake = manual / "cifar-10-binary.tar.gz"
    fake.write_bytes((cifar10[0] / "cifar-10-binary.tar.gz").read_bytes())
    with pytest.raises(sources.DataError, match=f"not the genuine.*--config.archive={fake}"):
        sources.load_split("cifar10", "test", data_dir=str(tmp_path), probe_url=_closed_port_url())
    # The suggested fix works: read the same file directly.
    check_equal(sources.load_split("cifar10", "test", archive=str(fake)), *cifar10[2])


def test_tfds_manual_dir_with_an_archive_of_the_right_size_but_not_genuine(tmp_path, monkeypatch):
    """A file of the genuine size whose bytes differ: refused before tfds starts (was tfds'
    NonMatchingChecksumError traceback, with its folders left in the data_dir); the genuine file
    (its size and SHA-256 as the registry lists them) is left to tfds."""
    manual = tmp_path / "downloads" / "manual"
    manual.mkdir(parents=True)
    fake = manual / "cifar-100-binary.tar.gz"
    with open(fake, "wb") as f:
        f.truncate(168_513_733)  # the genuine size (sparse: zeros)
    before = _files(tmp_path)
    with pytest.raises(sources.DataError) as refused:
        sources.load_split("cifar100", "test", data_dir=str(tmp_path), download=False)
    assert str(refused.value) == (
        f"{fake} is not the genuine cifar-100-binary.tar.gz (of the right size, but its SHA-256 "
        "is fd058f69f721805550c8dd797f4de14bd3d770bb7d7440c3f0f21578af4611aa, expected "
        "58a81ae192c23a4be8b1804d68e518ed807d710a4eb253b1f2a199162a40d8ec); tfds verifies the "
        "checksum and would reject it. Replace it with the original file, or read it directly, "
        f"without tfds or checksums: --config.archive={fake} in place of --config.data_dir."
    )
    assert _files(tmp_path) == before
    # A file matching the registry's size and SHA-256 (here a stand-in's) passes to tfds.
    fake.write_bytes(b"genuine")
    genuine = ("cifar-100-binary.tar.gz", 7, hashlib.sha256(b"genuine").hexdigest())
    monkeypatch.setitem(sources._TFDS_ARCHIVE, "cifar100", genuine)
    sources._fail_fast_if_unobtainable("cifar100", str(tmp_path), False, None, 1.0)


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100"])
def test_the_genuine_archive_is_the_one_tfds_registry_lists(dataset):
    """Each archive's URL, size and SHA-256 as the installed tensorflow-datasets verifies them (its
    registry, url_checksums/DATASET.txt: URL, size, SHA-256, file name, tab-separated), so that a
    tfds upgrade that changes them fails here, not in a user's offline check."""
    from importlib import resources  # noqa: PLC0415

    registry = resources.files("tensorflow_datasets") / "url_checksums" / f"{dataset}.txt"
    rows = [line.split("\t") for line in registry.read_text().splitlines() if line.strip()]
    name, size, sha256 = sources._TFDS_ARCHIVE[dataset]
    assert [sources._TFDS_URL + name, str(size), sha256, name] in rows, rows


def test_tfds_manual_dir_with_the_python_archive_names_it(tmp_path):
    """cifar-100-python.tar.gz in tfds' manual folder, which tfds does not read: named, with the
    way to read it (was the paragraph of the three ways, as if the folder were empty)."""
    train, test = make_data(12, 5, 100, seed=5)
    manual = tmp_path / "downloads" / "manual"
    manual.mkdir(parents=True)
    python = manual / "cifar-100-python.tar.gz"
    write_cifar100_python(python, train, test)
    with pytest.raises(sources.DataError) as refused:
        sources.load_split("cifar100", "test", data_dir=str(tmp_path), download=False)
    assert str(refused.value) == (
        f"{python} is the python version of CIFAR-100, which tfds does not read: it prepares "
        f"cifar100 from cifar-100-binary.tar.gz only (placed at {manual}/cifar-100-binary.tar.gz). "
        f"Read this one directly, without tfds: --config.archive={python} in place of "
        "--config.data_dir."
    )
    check_equal(sources.load_split("cifar100", "test", archive=str(python)), *test)


@pytest.mark.parametrize("under", ["downloads", "downloads/cifar100"])
def test_a_download_cut_short_is_not_taken_for_a_cached_one(tmp_path, under):
    """tfds downloads into a FILE.tmp.* folder and, once whole, moves the file beside its .INFO
    record: a download cut short (offline now) is not the cache tfds prepares from, so the check
    fails at once (tfds had retried the download for minutes); a whole one passes to tfds."""
    folder = tmp_path / under
    cut = folder / "cs.toronto.edu_kriz_cifar-100-binaryJKLM.tar.gz.tmp.0123456789abcdef"
    cut.mkdir(parents=True)
    (cut / "cifar-100-binary.tar.gz").write_bytes(b"\x1f\x8b partial")
    with pytest.raises(sources.DataError, match="downloads are turned off. Supply the data"):
        sources._fail_fast_if_unobtainable("cifar100", str(tmp_path), False, None, 1.0)
    whole = folder / "cs.toronto.edu_kriz_cifar-100-binaryJKLM.tar.gz"
    whole.write_bytes(b"whole")
    (folder / f"{whole.name}.INFO").write_text("{}")
    sources._fail_fast_if_unobtainable("cifar100", str(tmp_path), False, None, 1.0)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A data_dir that tfds itself prepared (its own cifar10 builder and writer) from a small
    archive in the genuine binary layout, served in place of the download; and its images."""
    import tensorflow_datasets as tfds

    d = tmp_path_factory.mktemp("tfds")
    train, test = make_data(5 * PER_BATCH, 6, 10, seed=4)
    write_cifar10_binary(d / "c.tar.gz", train, test, PER_BATCH)
    with tarfile.open(d / "c.tar.gz") as tar:
        tar.extractall(d / "extracted", filter="data")
    names = d / "extracted" / "cifar-10-batches-bin" / "batches.meta.txt"
    names.write_text("\n".join(archives.CLASS_NAMES["cifar10"]) + "\n")  # tfds wants distinct names
    serve = lambda self, url: str(d / "extracted")
    with mock.patch.object(tfds.download.DownloadManager, "download_and_extract", serve):
        tfds.builder("cifar10", data_dir=str(d / "data")).download_and_prepare()
    (version,) = os.listdir(d / "data" / "cifar10")  # the version tfds prepares and reads
    return d / "data", version, train


def _rows_and_labels(images, labels) -> list:
    """A split as a sorted list of (pixels, label): tfds serves the images in an order of its
    own."""
    return sorted(zip((im.tobytes() for im in images), labels.tolist()))


def _files(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_a_data_dir_tfds_prepared_is_read_image_for_image(prepared):
    data_dir, _, (rows, labels) = prepared
    images, got = sources.load_split("cifar10", "train", data_dir=str(data_dir), download=False)
    assert _rows_and_labels(images, got) == _rows_and_labels(expected_hwc(rows), labels)


def test_a_data_dir_of_another_tfds_version_is_refused_naming_both(prepared, tmp_path):
    """A data_dir prepared by another tfds (cifar10/3.0.1/ where this one reads 3.0.2): refused in
    seconds, both versions named; tfds had tried to download for minutes, writing incomplete.*/ and
    downloads/ into the user's folder."""
    data_dir, version, _ = prepared
    shutil.copytree(data_dir / "cifar10" / version, tmp_path / "cifar10" / "3.0.1")
    before = _files(tmp_path)
    with pytest.raises(sources.DataError) as refused:
        sources.load_split("cifar10", "test", data_dir=str(tmp_path), probe_url=_closed_port_url())
    msg = str(refused.value)
    assert "holds cifar10 3.0.1 only" in msg and f"reads {version}," in msg
    assert f"tfds build cifar10 --data_dir={tmp_path}`" in msg and "--config.archive=PATH" in msg
    assert _files(tmp_path) == before


@pytest.mark.parametrize("damage", ["missing", "truncated", "zeroed"])
def test_a_data_dir_copied_in_part_names_the_files(prepared, tmp_path, damage):
    """A data_dir copied in part (a shard missing, cut short, or damaged) was a TensorFlow
    traceback (NotFoundError, DataLossError); now one paragraph naming the files and the fixes."""
    data_dir, version, _ = prepared
    shutil.copytree(data_dir, tmp_path / "data")
    folder = tmp_path / "data" / "cifar10" / version
    (shard,) = folder.glob("cifar10-train.tfrecord-*")
    if damage == "missing":
        shard.unlink()
    elif damage == "truncated":
        shard.write_bytes(shard.read_bytes()[:-1000])
    else:
        shard.write_bytes(shard.read_bytes()[:100] + bytes(40) + shard.read_bytes()[140:])
    with pytest.raises(sources.DataError) as refused:
        sources.load_split("cifar10", "train", data_dir=str(tmp_path / "data"), download=False)
    msg = str(refused.value)
    assert f"The train split of cifar10 in {folder} cannot be read" in msg
    assert "cifar10-train.tfrecord-*" in msg and "Copy the data_dir again" in msg
    assert "--config.archive=PATH" in msg and "{{" not in msg and "'" not in msg
    if damage == "missing":
        assert f"({shard}; No such file or directory)" in msg
        # The tools: damaged data in tfds' default folder is said, not replaced by synthetic data.
        with pytest.MonkeyPatch.context() as m:
            m.setenv("TFDS_DATA_DIR", str(tmp_path / "data"))
            with pytest.raises(sources.DataError, match="cannot be read"):
                sources.load_or_synthetic("cifar10", "train")


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        ("", "its dataset_info.json is empty"),
        ("{}", "its dataset_info.json is empty"),
        ('{"name": "cifar10"', "its dataset_info.json cannot be read: Expecting"),
        ("no splits", "its dataset_info.json lists no train split"),
        ("test only", "its dataset_info.json lists no train split"),
        ("[1]", "its dataset_info.json is not that of cifar10 VERSION"),  # JSON, but no object
        ('"x"', "its dataset_info.json is not that of cifar10 VERSION"),
        ("5", "its dataset_info.json is not that of cifar10 VERSION"),
    ],
    ids=["empty", "braces", "cut_short", "no_splits", "test_only", "list", "text", "number"],
)
def test_a_data_dir_with_a_damaged_info_file_names_it(prepared, tmp_path, damage, why):
    """dataset_info.json emptied, cut short, or listing no train split, as after a copy in part:
    one paragraph as for a shard (were tracebacks: ParseError, AssertionError, KeyError)."""
    data_dir, version, _ = prepared
    shutil.copytree(data_dir, tmp_path / "data")
    folder = tmp_path / "data" / "cifar10" / version
    info_file = folder / "dataset_info.json"
    info = json.loads(info_file.read_text())
    keep = {"no splits": [], "test only": [s for s in info["splits"] if s["name"] == "test"]}
    if damage in keep:
        info["splits"] = keep[damage]
    info_file.write_text(json.dumps(info) if damage in keep else damage)
    with pytest.raises(sources.DataError) as refused:
        sources.load_split("cifar10", "train", data_dir=str(tmp_path / "data"), download=False)
    msg = str(refused.value)
    why = why.replace("VERSION", version)
    assert msg.startswith(f"The train split of cifar10 in {folder} cannot be read ({why}"), msg
    assert msg.endswith(
        "): its files (dataset_info.json) are missing, cut short or damaged, as after an "
        "incomplete copy. Copy the data_dir again, whole, or read the genuine archive directly: "
        "--config.archive=PATH."
    )
    if damage == "test only":  # the split it lists is read
        assert len(sources.load_split("cifar10", "test", data_dir=str(tmp_path / "data"))[1]) == 6


def test_a_data_dir_holding_both_cifar_archives_names_the_one_of_the_dataset(tmp_path):
    """Both data sets' downloads in the folder given as data_dir: the one suggested is the
    dataset's (was the first by name, cifar-10-python.tar.gz, for cifar100 too)."""
    for name in ("cifar-10-python.tar.gz", "cifar-100-python.tar.gz"):
        (tmp_path / name).write_bytes(b"")
    for dataset, name in (
        ("cifar10", "cifar-10-python.tar.gz"),
        ("cifar100", "cifar-100-python.tar.gz"),
    ):
        with pytest.raises(sources.DataError) as refused:
            sources.load_split(dataset, "test", data_dir=str(tmp_path), download=False)
        assert str(refused.value) == (
            f"The tfds data_dir {tmp_path} holds {name}, a CIFAR archive or its extraction, not "
            f"tfds' prepared data: read it directly with --config.archive={tmp_path / name}."
        )


def test_usual_data_dir_mistakes_name_what_was_found(cifar10, prepared, tmp_path):
    """An archive given as data_dir, a folder holding one or its extraction, the data set's own
    folder (one level too deep), a folder that does not exist: each named (was: the paragraph of
    the three ways for all)."""
    archive = cifar10[0] / "cifar-10-python.tar.gz"
    shutil.copy(archive, tmp_path / "cifar-10-python.tar.gz")
    (tmp_path / "extracted").mkdir()
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "extracted", filter="data")
    data_dir, version, _ = prepared
    too_deep = data_dir / "cifar10"
    cases = {
        archive: f"is a file, not a folder: if it is a CIFAR archive, read it directly with "
        f"--config.archive={archive}.",
        tmp_path: "holds cifar-10-python.tar.gz, a CIFAR archive or its extraction, not tfds' "
        "prepared data: read it directly with --config.archive="
        f"{tmp_path / 'cifar-10-python.tar.gz'}.",
        tmp_path / "extracted": "holds cifar-10-batches-py, a CIFAR archive or its extraction, not "
        f"tfds' prepared data: read it directly with --config.archive="
        f"{tmp_path / 'extracted' / 'cifar-10-batches-py'}.",
        too_deep: f"is a data set's own folder (it holds {version}/dataset_info.json), one level "
        f"below tfds' data_dir: give its parent, --config.data_dir={data_dir}.",
    }
    for given, says in cases.items():
        with pytest.raises(sources.DataError) as refused:
            sources.load_split("cifar10", "test", data_dir=str(given), probe_url=_closed_port_url())
        assert str(refused.value) == f"The tfds data_dir {given} {says}"
    with pytest.raises(sources.DataError, match=f"{tmp_path / 'nope'} \\(no such folder\\), and"):
        sources.load_split(
            "cifar10", "test", data_dir=str(tmp_path / "nope"), probe_url=_closed_port_url()
        )
    # The fixes named work: the extraction read directly.
    sources.load_split(
        "cifar10", "test", archive=str(tmp_path / "extracted" / "cifar-10-batches-py")
    )


def test_the_data_line_names_the_folder_tfds_reads(monkeypatch, tmp_path):
    """tfds' default data_dir is named as a folder another shell can be pointed at (was: 'its
    default data_dir')."""
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    assert sources.describe_source("cifar10") == (
        f"CIFAR-10 from tensorflow-datasets ({tmp_path / 'tfds'})"
    )
    monkeypatch.delenv("TFDS_DATA_DIR")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert sources.describe_source("cifar100") == (
        f"CIFAR-100 from tensorflow-datasets ({tmp_path / 'tensorflow_datasets'})"
    )
    assert sources.describe_source("cifar10", data_dir="/data/tfds") == (
        "CIFAR-10 from tensorflow-datasets (/data/tfds)"
    )


# ---------------------------------------------------------------------------------------------
# Synthetic
# ---------------------------------------------------------------------------------------------


def test_synthetic_shapes_determinism_and_splits():
    a = sources.load_split("synthetic", "train", synthetic_examples=300)
    b = sources.synthetic_split(300, seed=0, split="train")
    c = sources.synthetic_split(300, seed=8, split="train")
    t = sources.load_split("synthetic", "test", synthetic_examples=300)
    assert a[0].shape == (300, 32, 32, 3) and a[0].dtype == np.uint8 and a[1].dtype == np.int32
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0]) and not np.array_equal(a[0], t[0])
    np.testing.assert_array_equal(np.bincount(a[1], minlength=10), [30] * 10)
    assert sources.num_classes("synthetic") == 10
    assert sources.load_split("synthetic", "test")[0].shape == (10_000, 32, 32, 3)


def _stripe_features(images: np.ndarray) -> np.ndarray:
    """Energy of the grey image's 2-D spectrum in 5 orientation x 2 frequency bins."""
    grey = images.astype(np.float32).mean(-1)
    spec = np.abs(np.fft.fft2(grey - grey.mean((1, 2), keepdims=True))) ** 2
    fy, fx = np.meshgrid(np.fft.fftfreq(32) * 32, np.fft.fftfreq(32) * 32, indexing="ij")
    radius, angle = np.hypot(fx, fy), np.rad2deg(np.arctan2(fy, fx)) % 180
    feats = []
    for lo, hi in ((1.5, 3.0), (3.0, 5.5)):
        for a in (0, 36, 72, 108, 144):
            d = np.minimum(np.abs(angle - a), 180 - np.abs(angle - a))
            sel = (radius >= lo) & (radius < hi) & (d < 18)
            feats.append(spec[:, sel].sum(1))
    f = np.stack(feats, 1)
    return f / f.sum(1, keepdims=True)


def test_synthetic_classes_are_learnable_but_not_trivial():
    """A nearest-centroid classifier on stripe-spectrum features (fit on train, scored on test)
    is far above chance (10%), while the pixels alone are not separable by their mean colour."""
    x, y = sources.load_split("synthetic", "train", synthetic_examples=2000)
    xt, yt = sources.load_split("synthetic", "test", synthetic_examples=1000)
    f, ft = _stripe_features(x), _stripe_features(xt)
    centroids = np.stack([f[y == k].mean(0) for k in range(10)])
    pred = np.argmin(((ft[:, None] - centroids[None]) ** 2).sum(-1), 1)
    assert (pred == yt).mean() > 0.6
    # Mean colour alone (what a model sees at step 0) is a weak cue.
    m, mt = x.mean((1, 2)), xt.mean((1, 2))
    centroids = np.stack([m[y == k].mean(0) for k in range(10)])
    pred = np.argmin(((mt[:, None] - centroids[None]) ** 2).sum(-1), 1)
    assert 0.1 < (pred == yt).mean() < 0.5


def test_load_config_split_reads_what_the_config_names(cifar10):
    c = default_config()
    c.dataset, c.synthetic_test_examples, c.seed = "synthetic", 30, 3
    images, labels = sources.load_config_split(c, "test")
    # One fixed synthetic set whatever the seed, as CIFAR: run k of several (all drawn from the
    # first seed's config) sees the data a single run with seed k sees.
    np.testing.assert_array_equal(images, sources.synthetic_split(30, seed=0, split="test")[0])
    c.dataset, c.archive = "cifar10", str(cifar10[0] / "cifar-10-binary.tar.gz")
    check_equal(sources.load_config_split(c, "train"), *cifar10[1])
    assert sources.describe_source("cifar10", archive=c.archive) == (
        f"CIFAR-10 from the archive {c.archive}"
    )


def test_bad_arguments_are_programmer_errors():
    """The dataset name and 'archive only with a CIFAR dataset' are config.validate's rules
    (tests/test_config.py, tests/test_bad_input.py); here a wrong call is an assertion."""
    with pytest.raises(AssertionError, match="imagenet"):
        sources.load_split("imagenet", "train")
    with pytest.raises(AssertionError, match="val"):
        sources.load_split("cifar10", "val")
    with pytest.raises(AssertionError, match="no archive for synthetic"):
        sources.load_split("synthetic", "train", archive="/x.tar.gz")


def test_a_dataset_without_a_known_archive_is_left_to_tfds(tmp_path):
    """A dataset added as docs/architecture.md says (its name and class names) that has no entry
    in the offline check's archive table: tfds downloads it itself (it was a KeyError traceback);
    with downloads off, unless prepared, it is refused at once; the data line names it as tfds
    does."""
    sources._fail_fast_if_unobtainable("svhn_cropped", str(tmp_path), True, None, 1.0)
    with pytest.raises(
        sources.DataError, match="svhn_cropped is not prepared in the tfds data_dir"
    ):
        sources._fail_fast_if_unobtainable("svhn_cropped", str(tmp_path), False, None, 1.0)
    (tmp_path / "svhn_cropped" / "3.1.0").mkdir(parents=True)
    (tmp_path / "svhn_cropped" / "3.1.0" / "dataset_info.json").write_text("{}")
    sources._fail_fast_if_unobtainable("svhn_cropped", str(tmp_path), False, None, 1.0)
    assert sources.describe_source("svhn_cropped", data_dir=str(tmp_path), archive=None) == (
        f"svhn_cropped from tensorflow-datasets ({tmp_path})"
    )


def test_a_data_dir_in_a_bucket_is_looked_up_there(monkeypatch):
    """A gs:// data_dir: the local glob cannot see it, so its prepared version's exact path is
    looked up (found: tfds reads it, even with downloads off); a bucket this machine cannot reach
    is said so, not 'not prepared'."""
    looked, reachable = [], [True]

    class Bucket(str):  # epath's gs:// path, as far as the check uses it
        def __new__(cls, *parts):
            return super().__new__(cls, "/".join(parts))

        def exists(self):
            looked.append(str(self))
            if not reachable[0]:
                raise OSError("Could not resolve host: www.googleapis.com")
            return True

    monkeypatch.setattr(sources.epath, "Path", Bucket)
    sources._fail_fast_if_unobtainable("cifar10", "gs://b/tfds", False, None, 1.0)
    assert looked == ["gs://b/tfds/cifar10/3.0.2/dataset_info.json"]
    reachable[0] = False
    with pytest.raises(sources.DataError) as refused:
        sources._fail_fast_if_unobtainable("cifar10", "gs://b/tfds", False, None, 1.0)
    assert str(refused.value) == (
        "gs://b/tfds/cifar10/3.0.2/dataset_info.json cannot be looked up (OSError: Could not "
        "resolve host: www.googleapis.com): check the --config.data_dir path and this machine's "
        "access to it (network, credentials)."
    )
