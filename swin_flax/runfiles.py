"""Where a run of scripts/main.py keeps its files: its folder holds config.json, checkpoints/ and
eval/ (evaluate.py's reports). Path logic only (no jax, no orbax): the config's checks use it too."""

from __future__ import annotations

import os

from etils import epath

CHECKPOINTS = "checkpoints"
SERIES = ("latest", "best")  # checkpoints/latest (resuming), checkpoints/best
EVAL_DIR = "eval"
SUMMARY = "summary.json"  # written when the run has trained all its epochs
PRETRAINED = "pretrained.txt"  # what a run started from config.pretrained loaded, resized, left new
# The files a run writes beside its folders (with its TensorBoard events, events.out.tfevents.*).
TOP_FILES = ("config.json", "config.txt", SUMMARY, PRETRAINED)
# The folders a run writes: its checkpoints, TensorBoard's runs/ of several runs (reports.py) and
# plugins/ of a profile, the scripts' compilation cache (cli.compilation_cache_dir). Not eval/, the
# tools' reports, nor a folder the user makes in it.
FOLDERS = (CHECKPOINTS, "runs", "plugins", "compilation_cache")
# The room a run's paths need below its folder (rundir.inspect refuses a longer workdir path). Its
# checkpoints as being written, /checkpoints/latest/STEP.orbax-checkpoint-tmp/state.orbax-
# checkpoint-tmp/ocdbt.process_0/d/<32 hex digits>.__lock, take 127 for a 1-digit step, 135 for 9;
# the compilation cache 90 and a function's name; one run's event file about 45 and the host's
# name (up to 64); several runs' event files runs/[aggregate/]NAME/ more: 220 leaves NAME about 90
# with the longest host name (measured: test_reliability.py).
DEEPEST_FILE = 220


def absolute(path: str | os.PathLike) -> epath.Path:
    """`path` made absolute, as orbax wants; a URL (gs://...) as it is."""
    text = os.fspath(path)
    return epath.Path(text if "://" in text else os.path.abspath(text))


def config_path(path: str | None) -> str | None:
    """A path a config names (data_dir, archive, pretrained) as a run records it and the tools read
    it: `~` expanded (also where the shell left it, quoted), made absolute; a URL as it is."""
    return path and str(absolute(os.path.expanduser(path)))


def is_run_folder(path: str | os.PathLike) -> bool:
    """Whether `path` is the folder of a run of scripts/main.py (it holds the run's config.json)."""
    return (epath.Path(path) / "config.json").is_file()


def is_step_folder(path: str | os.PathLike) -> bool:
    """Whether `path` is a checkpoint step folder: it holds state/ and meta/, as Checkpoints.save
    writes them."""
    path = epath.Path(path)
    return (path / "state").is_dir() and (path / "meta").is_dir()


def enclosing_run(path: str | os.PathLike) -> epath.Path | None:
    """The run folder whose checkpoints/ is or holds `path` (a --workdir given too deep), else None."""
    path = absolute(path)
    for folder in (path, *path.parents):
        if folder.name == CHECKPOINTS and any((folder / s).is_dir() for s in SERIES):
            return folder.parent
    return None


def inside(path: str, folder: str) -> bool:
    """Whether the real path `path` is the real folder `folder` or lies in it."""
    return os.path.relpath(path, folder).split(os.sep)[0] != os.pardir


def is_run_file(path: str, run: str) -> bool:
    """Whether the real path `path` in the real run folder `run` is, or would be, among the run's
    own files: a file it writes beside its folders, its TensorBoard events, one of its FOLDERS or
    anything in them. A new name beside them, or in another folder, is not; nor a path outside
    `run` (its relative path starts with ..)."""
    first, *rest = os.path.relpath(path, run).split(os.sep)
    top = not rest and (first in TOP_FILES or first.startswith("events.out.tfevents."))
    return top or first in FOLDERS
