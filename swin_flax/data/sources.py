"""Where the images come from: tensorflow-datasets, a CIFAR archive (`archives.py`) or a synthetic
set (`synthetic.py`), each a whole split in memory: images uint8 [N, 32, 32, 3] (RGB), labels int32
[N] (CIFAR-100's fine labels). No TensorFlow at import: config validation, evaluate and predict
import this module."""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import threading
import urllib.error
import urllib.request

import ml_collections
import numpy as np
from absl import logging
from etils import epath

from swin_flax.config import DATASETS
from swin_flax.data import synthetic
from swin_flax.data.archives import CLASS_NAMES, PRETTY, read_archive, resolve
from swin_flax.data.synthetic import synthetic_split
from swin_flax.errors import DataError

_CLASS_NAMES = {**CLASS_NAMES, "synthetic": synthetic.NAMES}  # by label

# What tfds downloads (and accepts in its manual directory), with the size and SHA-256 it verifies
# (its registry, tensorflow_datasets/url_checksums/).
_TFDS_ARCHIVE = {
    "cifar10": (
        "cifar-10-binary.tar.gz",
        170_052_171,
        "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
    ),
    "cifar100": (
        "cifar-100-binary.tar.gz",
        168_513_733,
        "58a81ae192c23a4be8b1804d68e518ed807d710a4eb253b1f2a199162a40d8ec",
    ),
}
_TFDS_URL = "https://www.cs.toronto.edu/~kriz/"


def class_names(dataset: str) -> tuple[str, ...]:
    """The class names of `dataset` by label; ValueError for an unknown one (predict reads it from
    a run's config.json, which no validate has seen)."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset={dataset!r} is not one of {DATASETS}.")
    return _CLASS_NAMES[dataset]


def num_classes(dataset: str) -> int:
    return len(_CLASS_NAMES[dataset])


def load_config_split(
    config: ml_collections.ConfigDict, split: str
) -> tuple[np.ndarray, np.ndarray]:
    return load_split(
        config.dataset,
        split,
        data_dir=config.data_dir,
        archive=config.archive,
        synthetic_examples=config[f"synthetic_{split}_examples"],
    )


def load_split(
    dataset: str,
    split: str,
    *,
    data_dir: str | None = None,
    archive: str | None = None,
    synthetic_examples: int | None = None,
    download: bool = True,
    probe_url: str | None = None,
    probe_timeout_s: float = 5.0,
) -> tuple[np.ndarray, np.ndarray]:
    """One whole split ('train' | 'test'): from `archive` (a CIFAR tarball or folder) if set, else
    with tfds from `data_dir`, downloading if `download` and online (probed at `probe_url`, default
    the download URL). Synthetic: `synthetic_examples` images (None: CIFAR's 50,000 / 10,000), one
    fixed set whatever config.seed, as CIFAR is."""
    assert dataset in DATASETS and split in ("train", "test"), (dataset, split)
    assert not (dataset == "synthetic" and archive), "config.validate: no archive for synthetic"
    if dataset == "synthetic":
        default = 50_000 if split == "train" else 10_000
        n = default if synthetic_examples is None else synthetic_examples
        logging.debug("Generating the synthetic %s split (%d images).", split, n)
        return synthetic_split(n, split=split)
    if archive:
        images, labels = read_archive(archive, dataset, split)
    else:
        _fail_fast_if_unobtainable(dataset, data_dir, download, probe_url, probe_timeout_s)
        images, labels = _load_tfds(dataset, split, data_dir)
    if logging.level_debug():  # describing an archive's folder walks it
        where = describe_source(dataset, data_dir=data_dir, archive=archive)
        logging.debug("Read the %s split of %s: %d images.", split, where, len(labels))
    return images, labels


def load_or_synthetic(
    dataset: str,
    split: str,
    *,
    data_dir: str | None = None,
    archive: str | None = None,
    synthetic_examples: int | None = None,
) -> tuple[np.ndarray, np.ndarray, str]:
    """For tools, not training: (images, labels, where from) of the named data if readable without
    downloading, else a synthetic split; only tfds' default folder may hold nothing (a named
    archive or data_dir, or the data prepared there but damaged, is read or refused, never
    replaced)."""
    if dataset != "synthetic":
        try:
            images, labels = load_split(
                dataset, split, data_dir=data_dir, archive=archive, download=False
            )
            return images, labels, describe_source(dataset, data_dir=data_dir, archive=archive)
        except DataError:
            prepared = os.path.join(_prepared_folder(dataset, None), "dataset_info.json")
            if archive or data_dir or os.path.isfile(prepared):
                raise  # named, or prepared in the default folder but damaged: said, not replaced
    images, labels = load_split("synthetic", split, synthetic_examples=synthetic_examples)
    note = ""
    if dataset != "synthetic":  # tfds' default folder: a named one was refused above
        note = (
            f" ({dataset} cannot be read from tfds' folder {_tfds_root(None)} without downloading)"
        )
    return images, labels, describe_source("synthetic") + note


def describe_source(
    dataset: str, *, data_dir: str | None = None, archive: str | None = None
) -> str:
    """Where a run's data comes from: one wording for the training log, the tools and TensorBoard;
    an archive's folder by the batch folder in it that is read (the folder may hold others)."""
    if dataset == "synthetic":
        return "the SYNTHETIC data set (striped patterns, NOT CIFAR)"
    if archive:
        return f"{PRETTY[dataset]} from the archive {resolve(archive, dataset)}"
    name = PRETTY.get(dataset, dataset)  # a tfds name as it is
    return f"{name} from tensorflow-datasets ({_tfds_root(data_dir)})"


def _tfds_root(data_dir: str | None) -> str:
    """The folder tfds reads: `data_dir`, else $TFDS_DATA_DIR, else ~/tensorflow_datasets (as tfds
    resolves it), so that the console names a folder another shell can be pointed at."""
    default = os.environ.get("TFDS_DATA_DIR", os.path.join("~", "tensorflow_datasets"))
    return os.path.expanduser(os.fspath(data_dir or default))


def _load_tfds(dataset: str, split: str, data_dir: str | None) -> tuple[np.ndarray, np.ndarray]:
    import tensorflow_datasets as tfds  # noqa: PLC0415 (heavy; only when tfds is the source)
    from google.protobuf.json_format import ParseError  # noqa: PLC0415
    from tensorflow import errors  # noqa: PLC0415

    from swin_flax.data.pipeline import tf_cpu_only  # noqa: PLC0415 (TensorFlow)

    tf_cpu_only()  # tfds starts TF: keep it off JAX's accelerators
    root = _tfds_root(data_dir)  # the folder the checks looked in (tfds reads $TFDS_DATA_DIR once)
    folder = _prepared_folder(dataset, data_dir)
    unreadable = lambda why, files: DataError(
        f"The {split} split of {dataset} in {folder} cannot be read ({why.strip(' .')}): its files "
        f"({files}) are missing, cut short or damaged, as after an incomplete copy. Copy the "
        "data_dir again, whole, or read the genuine archive directly: --config.archive=PATH."
    )
    try:  # a data_dir copied in part: a shard or dataset_info.json missing, cut short or damaged
        ds = tfds.load(dataset, split=split, data_dir=root, as_supervised=True)  # prepares it
        # In batches, not batch_size=-1 (whole split at once), which tfds' mock_data cannot serve.
        batches = list(tfds.as_numpy(ds.batch(10_000)))
    except (errors.NotFoundError, errors.DataLossError, errors.FailedPreconditionError) as e:
        # Less TF's op names and the quotes around the failing op's message.
        why = re.sub(r"\{\{.*?\}\}|\[Op:.*|(?<=\s)'|'(?=\s)", "", e.message, flags=re.S)
        raise unreadable(why, f"{dataset}-{split}.tfrecord-*") from None
    except (ParseError, AssertionError, KeyError, ValueError):  # tfds on a damaged info file
        if not (why := _info_fault(os.path.join(folder, "dataset_info.json"), dataset, split)):
            raise
        raise unreadable(why, "dataset_info.json") from None
    if not batches:
        raise DataError(f"tfds {dataset} split {split!r} in {root} is empty.")
    images, labels = (np.concatenate(parts) for parts in zip(*batches))
    return images.astype(np.uint8), labels.astype(np.int32)


def _info_fault(path: str, dataset: str, split: str) -> str:
    """What in a prepared folder's dataset_info.json keeps tfds from reading `split` ('' if
    nothing): asked once tfds has failed, so a sound file leaves tfds' own error as it is."""
    try:
        info = json.loads(epath.Path(path).read_text() or "{}")
    except (OSError, ValueError) as e:
        return f"its dataset_info.json cannot be read: {e}"
    if not info:  # an empty file, {}, [], null
        return "its dataset_info.json is empty"
    version = _tfds_version(dataset)
    if not isinstance(info, dict) or info.get("version") != version:  # or JSON, but no object
        return f"its dataset_info.json is not that of {dataset} {version}"
    if split not in [s.get("name") for s in info.get("splits", [])]:
        return f"its dataset_info.json lists no {split} split"
    return ""


def _prepared_folder(dataset: str, data_dir: str | None) -> str:
    """Where tfds keeps `dataset` prepared at the version it reads: DATA_DIR/name[/config]/VERSION."""
    return os.path.join(_tfds_root(data_dir), dataset, _tfds_version(dataset))


def _tfds_version(dataset: str) -> str:
    """The version of `dataset` ('name', or 'name/config': its builder's) that tfds.load reads,
    from tfds' registry: nothing prepared, no TensorFlow."""
    import tensorflow_datasets as tfds  # noqa: PLC0415

    return str(tfds.builder_cls(dataset.split("/")[0]).VERSION)


def _fail_fast_if_unobtainable(
    dataset: str, data_dir: str | None, download: bool, probe_url: str | None, timeout_s: float
) -> None:
    """DataError in seconds, not after tfds' minutes of download retries, when the version of the
    data this tfds reads is neither prepared, in tfds' manual directory or download cache, nor
    downloadable (the URL answers); at once for a data_dir that is no tfds folder."""
    import tensorflow_datasets as tfds  # noqa: PLC0415 (its registry only: no TensorFlow)

    root = _tfds_root(data_dir)
    version = _tfds_version(dataset)
    in_root = lambda *parts: glob.glob(os.path.join(glob.escape(root), *parts))
    info = os.path.join(_prepared_folder(dataset, data_dir), "dataset_info.json")
    if os.path.isfile(info) or ("://" in root and _in_bucket(epath.Path(info))):
        return  # prepared (tfds makes the final check)
    _refuse_a_mistaken_data_dir(root, dataset)
    prepared = in_root(dataset, "[0-9]*", "dataset_info.json")  # by another tensorflow-datasets
    others = sorted(os.path.basename(os.path.dirname(p)) for p in prepared)
    if others:
        missing = (
            f"The tfds data_dir {root} holds {dataset} {', '.join(others)} only, prepared by "
            f"another tensorflow-datasets; this one ({tfds.__version__}) reads {version}"
        )
    else:
        gone = "" if os.path.isdir(root) or "://" in root else " (no such folder)"
        missing = (
            f"{PRETTY.get(dataset, dataset)} is not prepared in the tfds data_dir {root}{gone}"
        )
    if dataset not in _TFDS_ARCHIVE:
        if download:
            return
        raise DataError(
            f"{missing}, and downloads are turned off: point --config.data_dir at a directory "
            f"where it is prepared (`tfds build {dataset} --data_dir=DIR` on a machine online)."
        )
    name, size, sha256 = _TFDS_ARCHIVE[dataset]
    manual = os.path.join(root, "downloads", "manual", name)
    if os.path.exists(manual):
        if (got := os.path.getsize(manual)) != size:
            why = f"{got:,} bytes, expected {size:,}"
        else:  # tfds' registry lists the SHA-256 as hex
            with open(manual, "rb") as f:
                digest = hashlib.file_digest(f, "sha256").hexdigest()
            if digest == sha256:
                return
            why = f"of the right size, but its SHA-256 is {digest}, expected {sha256}"
        raise DataError(
            f"{manual} is not the genuine {name} ({why}); tfds verifies the checksum and would "
            "reject it. Replace it with the original file, or read it directly, without tfds or "
            f"checksums: --config.archive={manual} in place of --config.data_dir."
        )
    python = os.path.join(os.path.dirname(manual), name.replace("binary", "python"))
    if os.path.exists(python):
        raise DataError(
            f"{python} is the python version of {PRETTY[dataset]}, which tfds does not read: it "
            f"prepares {dataset} from {name} only (placed at {manual}). Read this one directly, "
            f"without tfds: --config.archive={python} in place of --config.data_dir."
        )
    # A whole download in tfds' cache has its .INFO file beside it (a download cut short, a
    # FILE.tmp.* folder, has none); by data set (DIR/downloads/cifar10/), or at the top.
    stem = name.split(".")[0]
    cached = in_root("downloads", f"*{stem}*") + in_root("downloads", dataset, f"*{stem}*")
    if any(os.path.isfile(p) and os.path.isfile(p + ".INFO") for p in cached):
        return
    url = probe_url or _TFDS_URL + name
    why = "downloads are turned off" if not download else _unreachable(url, timeout_s)
    if why is None:
        return
    archives = f"{name.replace('binary', 'python')}, {name}, or a folder where either is extracted"
    if others:
        raise DataError(
            f"{missing}, and {why}. Prepare it with this version (`tfds build {dataset} "
            f"--data_dir={root}` on a machine online, or the genuine {name} placed at {manual}), "
            f"or read the genuine archive directly: --config.archive=PATH to {archives}."
        )
    raise DataError(
        f"{missing}, and {why}. "
        "Supply the data in one of three ways:\n"
        f"  1. tensorflow-datasets: point --config.data_dir at a directory where {dataset} is "
        f"already prepared (`tfds build {dataset} --data_dir=DIR` on a machine online), or place "
        f"the genuine {name} at {manual} and rerun (tfds prepares it offline from there).\n"
        f"  2. A local archive, read directly: --config.archive=PATH to {archives}.\n"
        "  3. Synthetic data (no download; striped patterns, not CIFAR): "
        "--config.dataset=synthetic."
    )


def _in_bucket(path: epath.Path) -> bool:
    """Whether `path` (gs://...) exists; a bucket this machine cannot reach is said so at once."""
    try:
        return path.exists()
    except Exception as e:  # noqa: BLE001 (each file system backend raises its own)
        raise DataError(
            f"{path} cannot be looked up ({type(e).__name__}: {str(e).splitlines()[0]}): check "
            "the --config.data_dir path and this machine's access to it (network, credentials)."
        ) from None


def _refuse_a_mistaken_data_dir(root: str, dataset: str) -> None:
    """DataError naming what a data_dir is instead of tfds' folder, for the usual mistakes: a CIFAR
    archive, a folder holding one or its extraction (their names start with cifar-, tfds' with
    cifar10; `dataset`'s own named first), or a data set's own folder (one level too deep)."""
    if os.path.isfile(root):
        raise DataError(
            f"The tfds data_dir {root} is a file, not a folder: if it is a CIFAR archive, read it "
            f"directly with --config.archive={root}."
        )
    held = sorted(glob.glob(os.path.join(glob.escape(root), "cifar-*")))
    own = f"{PRETTY.get(dataset, dataset).lower()}-"  # cifar-10- (no prefix of cifar-100-)
    held.sort(key=lambda p: not os.path.basename(p).startswith(own))
    if held:
        raise DataError(
            f"The tfds data_dir {root} holds {os.path.basename(held[0])}, a CIFAR archive or its "
            "extraction, not tfds' prepared data: read it directly with "
            f"--config.archive={held[0]}."
        )
    inside = glob.glob(os.path.join(glob.escape(root), "*", "dataset_info.json"))
    if inside:
        parent = os.path.dirname(os.path.normpath(root))
        raise DataError(
            f"The tfds data_dir {root} is a data set's own folder (it holds "
            f"{os.path.relpath(inside[0], root)}), one level below tfds' data_dir: give its "
            f"parent, --config.data_dir={parent}."
        )


def _unreachable(url: str, timeout_s: float) -> str | None:
    """None if `url` answers (any HTTP status) within `timeout_s`, else why not. A daemon thread
    with a deadline, as name resolution ignores socket timeouts."""
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
    reason = result[0] if result else f"no answer within {timeout_s:g} s"
    return None if reason is None else f"cannot be downloaded: {url} is unreachable ({reason})"
