"""CIFAR-10/100 read directly from the published python-pickle and binary tarballs
(https://www.cs.toronto.edu/~kriz/cifar.html) or an extracted folder, with no tfds or checksums;
what a file holds is checked here (truncation, corruption, the wrong data set)."""

from __future__ import annotations

import bz2
import collections
import gzip
import io
import lzma
import os
import pathlib
import pickle
import tarfile
import zlib

import numpy as np

from swin_flax.errors import DataError

# The class names by label (CIFAR-100's fine labels, as the archive's meta file lists them): the
# one record of the class counts (sources.num_classes, the label check here).
CLASS_NAMES = {
    "cifar10": (
        "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
    ),
    "cifar100": tuple(
        """apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus
        butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch
        crab crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo
        keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle mountain mouse
        mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy
        porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper
        snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television
        tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm""".split()  # noqa: SIM905
    ),
}  # fmt: skip
PRETTY = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}  # the names users know
_PIXELS = 32 * 32 * 3

# One on-disk CIFAR layout: its files per split and where a file keeps its labels (the key of a
# python batch, or (label bytes, label index) of a binary record).
_Layout = collections.namedtuple("_Layout", "name folder train test labels")
_PY_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))  # CIFAR-10's training files
_BIN_BATCHES = tuple(f"{name}.bin" for name in _PY_BATCHES)
_LAYOUTS = {
    "cifar10": (
        _Layout("cifar-10-python", "cifar-10-batches-py", _PY_BATCHES, ("test_batch",), b"labels"),
        _Layout(
            "cifar-10-binary", "cifar-10-batches-bin", _BIN_BATCHES, ("test_batch.bin",), (1, 0)
        ),
    ),
    "cifar100": (
        _Layout("cifar-100-python", "cifar-100-python", ("train",), ("test",), b"fine_labels"),
        _Layout("cifar-100-binary", "cifar-100-binary", ("train.bin",), ("test.bin",), (2, 1)),
    ),
}
_WANTED_NAMES = {n for layouts in _LAYOUTS.values() for lo in layouts for n in lo.train + lo.test}
DATASETS = tuple(_LAYOUTS)  # the data sets an archive can hold (config.validate asks)


def read_archive(path: str, dataset: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """`split` of CIFAR-10/100 as (images uint8 [N, 32, 32, 3], labels int32 [N]), from any of the
    four tarballs or a folder up to two levels above the extracted batch files."""
    path = os.path.expanduser(os.fspath(path))
    if not os.path.exists(path):
        raise DataError(f"archive {path} does not exist (--config.archive).")
    if os.path.basename(path) in _WANTED_NAMES and os.path.isfile(path):
        raise DataError(
            f"archive {path} is one batch file of an extracted CIFAR archive: give the folder "
            f"holding them all, --config.archive={os.path.dirname(path) or os.curdir}."
        )
    if os.path.isdir(path):
        names = _folder_files(path)
        where = lambda rel: os.path.join(path, rel)
        read = lambda rel: _read(where(rel))
    else:
        members = _tar_files(path)
        names, read = list(members), members.__getitem__
        where = lambda rel: f"{path} (member {rel})"
    layout, folder = _find_layout(names, path, dataset)
    rels = [os.path.join(folder, f) for f in (layout.train if split == "train" else layout.test)]
    parts = [_decode(read(rel), where(rel), layout.labels) for rel in rels]
    images, labels = (np.concatenate(part) for part in zip(*parts))
    n = len(CLASS_NAMES[dataset])
    if labels.min() < 0 or labels.max() >= n:
        raise DataError(f"{path}: labels outside [0, {n}) for {dataset}; is it the right archive?")
    return images, labels


def resolve(path: str, dataset: str) -> str:
    """What `read_archive` reads for `path`: the tarball itself, or the batch folder in a folder."""
    path = os.path.expanduser(os.fspath(path))
    if not os.path.isdir(path):
        return path
    return os.path.normpath(os.path.join(path, _find_layout(_folder_files(path), path, dataset)[1]))


def _decode(data: bytes, where: str, labels: bytes | tuple[int, int]):
    """One batch file (rows of R, G, B 32x32 planes) -> (images [N, 32, 32, 3], labels int32 [N])."""
    if isinstance(labels, tuple):  # binary records: label bytes, then the pixels
        label_bytes, label_index = labels
        record = label_bytes + _PIXELS
        if len(data) == 0 or len(data) % record:
            raise DataError(
                f"{where} is truncated or corrupt: {len(data):,} bytes is not a whole number of "
                f"{record}-byte CIFAR records."
            )
        rows = np.frombuffer(data, np.uint8).reshape(-1, record)
        pixels, y = rows[:, label_bytes:], rows[:, label_index].astype(np.int32)
    else:  # a python batch: a pickled dict
        try:
            d = _SafeUnpickler(io.BytesIO(data), encoding="bytes").load()
            pixels, y = np.asarray(d[b"data"]), np.asarray(d[labels], np.int32)
        except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as e:
            raise DataError(
                f"{where} is truncated or corrupt, or not a CIFAR python batch "
                f"({type(e).__name__}: {e})."
            ) from None
        if pixels.ndim != 2 or pixels.shape[1] != _PIXELS or len(y) != len(pixels):
            raise DataError(
                f"{where} is not a CIFAR python batch: data {pixels.shape}, {len(y)} labels "
                f"(expected [N, {_PIXELS}] and N labels)."
            )
        if pixels.dtype != np.uint8:  # the genuine batches' pixels are bytes, 0..255
            raise DataError(
                f"{where} is not a CIFAR python batch: its data are {pixels.dtype}, where CIFAR's "
                "are uint8 pixel values 0..255."
            )
    return np.ascontiguousarray(pixels.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)), y


def _find_layout(names: list[str], path: str, dataset: str) -> tuple[_Layout, str]:
    """The layout and the folder (relative to the archive root) holding all of its files; refused
    when more than one folder does (a download beside one extraction: the extraction, named in the
    log line, as a folder of `tar xzf`'s is read)."""
    folders: dict[str, set[str]] = {}
    for rel in names:
        folders.setdefault(os.path.dirname(rel), set()).add(os.path.basename(rel))
    layouts = _LAYOUTS[dataset]
    held = []  # (layout, folder, the layout's files it lacks) of each folder with some of them
    for lo in layouts:
        for folder, found in sorted(folders.items()):
            lacks = [f for f in lo.train + lo.test if f not in found]
            if len(lacks) < len(lo.train + lo.test):
                held.append((lo, folder, lacks))
    complete = [(lo, folder) for lo, folder, lacks in held if not lacks]
    if len(complete) > 1:
        each = [os.path.normpath(os.path.join(path, folder)) for _, folder in complete]
        raise DataError(
            f"{path} holds more than one extracted {PRETTY[dataset]}: {', '.join(each)}. Give the "
            f"one meant, e.g. --config.archive={each[0]}."
        )
    if complete:
        return complete[0]
    downloads = [os.path.join(path, f"{lo.name}.tar.gz") for lo in layouts]
    downloads = [d for d in downloads if os.path.isfile(d)]  # in the folder of the downloads
    other = "cifar100" if dataset == "cifar10" else "cifar10"
    for layout in _LAYOUTS[other]:
        if any(set(layout.train) <= found for found in folders.values()):
            raise DataError(
                f"{path} holds {layout.name} but dataset={dataset!r}: set --config.dataset={other} "
                f"--config.model.num_classes={len(CLASS_NAMES[other])}."
            )
    if downloads:
        raise DataError(
            f"{path} holds no extracted {PRETTY[dataset]} batches but the downloaded "
            f"{os.path.basename(downloads[0])}: give the archive itself: "
            f"--config.archive={downloads[0]} (it is read without extracting)."
        )
    if held:  # an extraction or a download cut short: the fullest one
        lo, folder, lacks = min(held, key=lambda h: len(h[2]))
        if not os.path.isdir(path):
            lacks = ", ".join(os.path.join(folder, f) for f in lacks)
            raise DataError(f"the archive {path} lacks {lacks}: download it again.")
        raise DataError(
            f"{os.path.normpath(os.path.join(path, folder))} lacks {', '.join(lacks)} of "
            f"{lo.name}: copy or extract it again."
        )
    expected = ", ".join(
        f"{lo.folder}/{{{','.join(lo.train + lo.test)}}}" for lo in _LAYOUTS[dataset]
    )
    raise DataError(f"{path} holds no {PRETTY[dataset]} batches; expected {expected}.")


_COMPRESSIONS = {b"\x1f\x8b": gzip, b"BZh": bz2, b"\xfd7zXZ": lzma}  # magic bytes: codec


def _tar_files(path: str) -> dict[str, bytes]:
    """The wanted members of a tarball, decompressed whole first so that the codec's checksum
    catches corruption anywhere, not only in headers."""
    out, raw = {}, _read(path)
    try:
        for magic, codec in _COMPRESSIONS.items():
            if raw.startswith(magic):
                raw = codec.decompress(raw)
                break
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            for m in tar:
                if m.isfile() and os.path.basename(m.name) in _WANTED_NAMES:
                    out[os.path.normpath(m.name)] = tar.extractfile(m).read()
    except (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError, ValueError) as e:
        if raw.startswith(b"PK\x03\x04"):
            raise DataError(
                f"archive {path} is a zip file, which is not read: unzip it and give the folder "
                "it makes as --config.archive."
            ) from None
        if raw and not raw.startswith(tuple(_COMPRESSIONS)) and raw[257:262] != b"ustar":
            raise DataError(  # neither compressed nor a tar header's magic: another kind of file
                f"archive {path} is not a tar archive (compressed with gzip, bz2 or xz, or plain): "
                "give the CIFAR archive as downloaded (e.g. cifar-10-python.tar.gz), or point "
                "--config.archive at an extracted folder."
            ) from None
        raise DataError(
            f"archive {path} is truncated or corrupt ({type(e).__name__}: {e}); download it again "
            "or point --config.archive at an extracted folder."
        ) from None
    return out


def _folder_files(root: str) -> list[str]:
    """Relative paths of the wanted files at most two folders below `root`. A folder that cannot
    be read is named only when nothing was found (a mount's lost+found beside the data is not)."""
    found, errors = [], []
    for dirpath, dirnames, filenames in os.walk(root, onerror=errors.append):
        rel = os.path.relpath(dirpath, root)
        if rel != "." and os.sep in rel:  # two folders down: look no deeper
            dirnames.clear()
        found += [os.path.normpath(os.path.join(rel, f)) for f in filenames if f in _WANTED_NAMES]
    if errors and not found:
        raise _unreadable(errors[0])
    return found


def _read(path: str) -> bytes:
    try:
        return pathlib.Path(path).read_bytes()
    except OSError as e:
        raise _unreadable(e) from None


def _unreadable(e: OSError) -> DataError:
    """A file or folder that cannot be read, said so (os.walk alone would skip such a folder)."""
    if isinstance(e, PermissionError):
        return DataError(
            f"{e.filename} cannot be read: permission denied for this user. Make it readable "
            f"(chmod -R a+rX {e.filename}, as its owner), or copy the data somewhere readable and "
            "give that as --config.archive."
        )
    return DataError(f"{e.filename} cannot be read ({e.strerror}).")


class _SafeUnpickler(pickle.Unpickler):
    """Unpickles CIFAR batches and nothing else: a pickle can run arbitrary code, so every global
    is refused but the few numpy reconstructors a CIFAR batch needs."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    }  # fmt: skip

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")
        return super().find_class(module, name)
