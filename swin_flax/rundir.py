"""A run's folder (--workdir): where it stands by its latest checkpoint's record, the config that
ran, and the wording of positions and summaries. No TensorFlow: a finished run answers in seconds."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import math
import os
import shlex
import stat
import sys
from typing import Any

from absl import logging
from etils import epath
from ml_collections import ConfigDict

from swin_flax import checkpoints, runfiles, runs
from swin_flax.config import flatten, from_record
from swin_flax.errors import CheckpointError, ConfigError
from swin_flax.models import swin

# The config fields that name files or folders, recorded as absolute paths.
PATH_FIELDS = ("data_dir", "archive", "pretrained")


def write_config(
    config: ConfigDict, workdir: epath.Path, command: str | None = None, resumed: bool = False
) -> None:
    """Keeps the config that ran as JSON (what the tools read) and as text to read: a `field: value`
    line per field, dotted as --config.FIELD names it, under a line per session saying what
    started it (`command`, None from Python; a `resumed` run keeps its earlier sessions' lines).
    Its paths absolute (evaluate runs anywhere)."""
    config = config.copy_and_resolve_references()
    config.update({field: runfiles.config_path(config[field]) for field in PATH_FIELDS})
    workdir.mkdir(parents=True, exist_ok=True)
    sessions = session_lines(workdir) if resumed else []
    how = command or PYTHON
    sessions.append(f"{_SESSION[resumed]}{how}".replace("\n", "\\n"))  # one line (python -c)
    fields = [f"{k}: {v!r}" for k, v in sorted(flatten(config.to_dict()).items())]
    (workdir / "config.txt").write_text("\n".join([*sessions, *fields, ""]))
    (workdir / "config.json").write_text(config.to_json_best_effort(indent=2, sort_keys=True))


_SESSION = ("# started by: ", "# resumed by: ")  # config.txt's first lines, a session each
PYTHON = "train.train_and_evaluate from Python, no command line"  # a session without a command


def session_lines(workdir: epath.Path) -> list[str]:
    """The lines of the run's config.txt that say what started each session (none in a run
    written before they were kept)."""
    with contextlib.suppress(OSError):  # none yet
        lines = (workdir / "config.txt").read_text().splitlines()
        return [line for line in lines if line.startswith(_SESSION)]
    return []


def undo_start(workdir: epath.Path, made: list[epath.Path]) -> None:
    """After a new run's start that ended before it wrote its config (the workdir not creatable,
    Ctrl-C while its state was built): the empty folders it made go, the deepest first (the
    checkpoint series, the run's folders, then `made`: the workdir and its parents it created)."""
    if runfiles.is_run_folder(workdir):
        return
    series = (workdir / runfiles.CHECKPOINTS / which for which in runfiles.SERIES)
    for folder in (*series, *(workdir / name for name in runfiles.FOLDERS), *made):
        with contextlib.suppress(OSError, ValueError):  # not there, not empty (epath's ValueError)
            folder.rmdir()


def model_identity(config: ConfigDict) -> dict[str, Any]:
    """What a checkpoint's params depend on: the model's arguments and the block layout."""
    layout = {"scan_blocks": config.scan_blocks}
    if config.scan_blocks:
        layout["scan_min_depth"] = swin.SCAN_MIN_DEPTH
    names = runs.names(config)  # several runs stack their params in this order
    layout["runs"] = names if len(names) > 1 else None
    return {**config.model.to_dict(), **layout}


# What a resumed run may change: how long it trains, how it logs, saves and finds its data, and
# what its steps keep for the backward pass, none of which changes what it computes.
# (`pretrained` and `pretrained_head` are read only when a run starts.)
RESUME_MAY_CHANGE = frozenset({
    "num_epochs", "log_every_steps", "checkpoint_every_epochs", "keep_checkpoints",
    "prefetch_batches", "profile_steps", "eval_batch_size", "best_params_dtype", "remat",
    "archive", "data_dir", "pretrained", "pretrained_head",
})  # fmt: skip


def _recorded(workdir: epath.Path) -> dict[str, Any] | None:
    """The run's config.json; None when it is missing or no JSON object (edited by hand)."""
    try:
        recorded = json.loads((workdir / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return recorded if isinstance(recorded, dict) else None


def _recipe(flat: dict[str, Any]) -> dict[str, Any]:
    """A flattened config's fields that a resumed run must keep, as they decide what it computes."""
    out = {k: v for k, v in flat.items() if k not in RESUME_MAY_CHANGE}
    if "data_seed" in out and out["data_seed"] is None:
        out["data_seed"] = out.get("seed")
    for unread in ("warmup_lr_init", "lr_min") if out.get("schedule") == "constant" else ():
        out.pop(unread, None)  # a run started before config.validate refused a value
    sweeps = [len(v) for k, v in out.items() if k.startswith("sweep.")]
    if out.get("num_runs", 1) * math.prod(n or 1 for n in sweeps) == 1:
        out["per_run_data"] = False  # one run: it has no effect
    for swept in [k.removeprefix("sweep.") for k, v in out.items() if k.startswith("sweep.") and v]:
        out.pop(swept, None)  # the sweep gives every run's value: the plain one is unused
    return out


def check_same_recipe(config: ConfigDict, workdir: epath.Path) -> None:
    """Refuses to resume the run in `workdir` with settings other than those its config.json
    records (only RESUME_MAY_CHANGE's may differ: evaluate reads that file); names the flags that
    resume it."""
    if (recorded := _recorded(workdir)) is None:
        return  # nothing to compare: this run rewrites it
    started = _recipe(from_record(recorded))  # a field it lacks: its default
    now = _recipe(flatten(config.to_dict()))
    diffs = sorted(k for k in now if k in started and started[k] != now[k])
    if recorded.get("data_seed") is None and config.data_seed is None and "data_seed" in diffs:
        diffs.remove("data_seed")  # it follows the seed: the seed is the one to give
    if not diffs:
        return

    def text(v: Any) -> str:
        if isinstance(v, tuple):
            return shlex.quote(f"({','.join(map(repr, v))}{',' if len(v) == 1 else ''})")
        return shlex.quote(v) if isinstance(v, str) else repr(v)

    if len(diffs) > 6:  # another config file, likely: a line of flags would not help
        sessions = session_lines(workdir)
        how = sessions and sessions[-1].partition(": ")[2]
        again = (  # from Python: no file or command to give again, but the run's own config
            f"take its config, evaluate.load_run_config({str(workdir)!r}), as it last ran from Python"
            if how == PYTHON
            else "give the config file and overrides it started with"
            + (how and f" (its last session ran: {how})")
            + f", and --workdir {workdir}"
        )
        raise ConfigError(
            f"--workdir {workdir} holds a run that started with other settings than this "
            f"config's: {len(diffs)} differ ({', '.join(diffs[:4])}, ...; "
            f"{workdir / 'config.txt'} lists the run's). A resumed run continues the run it "
            f"started: {again}; or a new --workdir to start afresh."
        )
    ours = ", ".join(f"{k}={text(now[k])}" for k in diffs)
    flags = " ".join(f"--config.{k}={text(started[k])}" for k in diffs)  # None: cli takes it
    raise ConfigError(
        f"--workdir {workdir} holds a run that started with other settings than this config's "
        f"({ours}). A resumed run continues the run it started (its recipe, seeds and runs): "
        f"pass {flags} to resume it, or give a new --workdir to start afresh."
    )


def resumed_config(config: ConfigDict, workdir: epath.Path) -> ConfigDict:
    """`config` with `pretrained` and `pretrained_head` as the run in `workdir` recorded them (read
    only when a run starts); warns when the command gives others."""
    if (recorded := _recorded(workdir)) is None:
        return config
    started = from_record(recorded)  # a field it lacks: its default
    changed = []
    started_from = runfiles.config_path(started["pretrained"])
    if config.pretrained and runfiles.config_path(config.pretrained) != started_from:
        changed.append("config.pretrained")
    if config.pretrained_head and config.pretrained_head != started["pretrained_head"]:
        changed.append("config.pretrained_head")
    if changed:
        how = "with its head" if changed == ["config.pretrained_head"] else "from another file"
        logging.warning(
            f"{' and '.join(changed)} {'are' if len(changed) > 1 else 'is'} read only when a run "
            f"starts: {workdir} resumes from its own checkpoint. To fine-tune {how}, give a new "
            "--workdir."
        )
    kept = config.copy_and_resolve_references()
    kept.pretrained, kept.pretrained_head = started["pretrained"], started["pretrained_head"]
    return kept


@dataclasses.dataclass
class RunTotals:
    """What a run has done over all its sessions (starts), kept in every checkpoint's record."""

    sessions: int = 0
    wall_seconds: float = 0.0  # start to stop of each session, summed
    train_seconds: float = 0.0  # in training steps, compiles included (not evaluation or saves)
    trained_images: int = 0

    def plus(self, wall: float = 0.0, train: float = 0.0, images: int = 0) -> RunTotals:
        return dataclasses.replace(
            self,
            wall_seconds=self.wall_seconds + wall,
            train_seconds=self.train_seconds + train,
            trained_images=self.trained_images + images,
        )


def times_runs(n: int) -> str:
    """' x 3 runs' after a figure each of n runs reaches; '' for one run."""
    return f" x {n} runs" if n > 1 else ""


def count(n: int, noun: str) -> str:
    """'1 epoch', '3 epochs'."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def position(step: int, steps_per_epoch: int) -> str:
    """A global step in the words every message uses: epochs counted from 1, steps within one."""
    epoch, in_epoch = divmod(step, steps_per_epoch)
    if in_epoch == 0:
        return f"global step {step} (the end of epoch {epoch})" if step else "global step 0"
    return f"global step {step} (step {in_epoch} of epoch {epoch + 1})"


def check_num_epochs(saved: dict[str, Any], num_epochs: int, workdir: epath.Path) -> bool:
    """Whether the run (latest record `saved`) trained all `num_epochs`; refuses fewer."""
    done_steps, per_epoch = saved["step"], saved.get("steps_per_epoch")
    if per_epoch:
        beyond, finished = done_steps > num_epochs * per_epoch, done_steps == num_epochs * per_epoch
        done, at_least = position(done_steps, per_epoch), -(-done_steps // per_epoch)
    else:  # a record written before steps_per_epoch was kept: only epoch ends record a test
        mid_epoch = saved.get("test_accuracy") is None
        beyond = saved["epoch"] > num_epochs or (mid_epoch and saved["epoch"] == num_epochs)
        finished = saved["epoch"] == num_epochs and not mid_epoch
        done, at_least = count(saved["epoch"], "epoch"), saved["epoch"] + mid_epoch
    if beyond:
        raise ConfigError(
            f"config.num_epochs: {workdir} has already trained to {done}, more than "
            f"--config.num_epochs={num_epochs}. Pass --config.num_epochs={at_least} or more to "
            "see its summary or to train it longer, or a new --workdir to start afresh."
        )
    return finished


def run_summary(record: dict[str, Any], seed: int) -> dict:
    """summary.json from a checkpoint's record (`seed`: the config's): the whole run over all its
    sessions; its checkpoints named relative to the run's folder (which may move)."""
    if "runs" in record:  # several runs in one process: per-run lists
        figures = (record[k] for k in ("best_accuracy", "best_epoch", "test_accuracy"))
        summary = runs.summary(record["runs"], *figures, seed)
    else:
        summary = {
            "best_test_accuracy": record["best_accuracy"],
            "best_epoch": record["best_epoch"],
            "final_test_accuracy": record.get("test_accuracy"),
        }
    summary.update(epochs=record["epoch"], steps=record["step"])
    if "totals" in record:
        totals = RunTotals(**record["totals"])
        summary.update(
            sessions=totals.sessions,
            train_seconds=totals.train_seconds,
            trained_images=totals.trained_images,
            total_seconds=totals.wall_seconds,
            train_images_per_sec=totals.trained_images / max(totals.train_seconds, 1e-9),
        )
    summary["checkpoints"] = runfiles.CHECKPOINTS
    return summary


def summary_lines(summary: dict[str, Any], workdir: str | os.PathLike) -> list[str]:
    """The final summary of the run in `workdir` as printed when it ends or is run again once
    finished."""
    best, final = summary["best_test_accuracy"], summary.get("final_test_accuracy")
    epochs = count(summary["epochs"], "epoch")
    if "sweep" in summary:  # each swept value's figures over its seeds, not over all the runs
        points = summary["sweep"]
        seeds = summary["num_runs"] // len(points)
        each = f"{seeds} seeds per swept value" if seeds > 1 else "one per swept value"
        lines = [f"{summary['num_runs']} runs ({each}), test accuracy after {epochs}:"]
        text = runs.spread_text if seeds > 1 else lambda s: f"{s['mean']:.4f}"  # one seed: its own
        for value, figures in points.items():
            lines.append(
                f"  {value}: best {text(figures['best_test_accuracy'])}, final "
                f"{text(figures['final_test_accuracy'])}"
            )

        def mean(point: str) -> str:  # its seeds' mean best test accuracy (and their std)
            s = points[point]["best_test_accuracy"]
            return f"{point} ({s['mean']:.4f}" + (f" ± {s['std']:.4f}" if seeds > 1 else "")

        first, *rest = runs.ranked(points)
        over = f" over {seeds} seeds" if seeds > 1 else ""
        if rest:  # one swept value: nothing to choose
            lines.append(f"best: {mean(first)}{over}), next {mean(rest[0])})")
    elif "runs" in summary:  # several seeds: their spread
        lines = [
            f"{summary['num_runs']} runs: best test accuracy {runs.spread_text(best)}",
            f"final test accuracy {runs.spread_text(final)} after {epochs}",
        ]
    else:
        lines = [f"best test accuracy {best:.4f} at epoch {summary['best_epoch']}"]
        if final is not None:
            lines[0] += f"; final {final:.4f} after {epochs}"
    if "sessions" in summary:
        runs_each = times_runs(summary.get("num_runs", 1))
        lines.append(
            f"trained {duration(summary['train_seconds'])} (compiles included) at "
            f"{summary['train_images_per_sec']:.0f} images/s{runs_each}, "
            f"{duration(summary['total_seconds'])} in all over "
            f"{count(summary['sessions'], 'session')}"
        )
    where = runfiles.absolute(workdir) / summary["checkpoints"]
    lines.append(f"checkpoints in {where} (best/ and latest/)")
    return lines


def announce(*lines: str) -> None:
    """Result lines on stdout (`| tee` and notebooks keep them), and in the log on stderr too
    unless the user already sees them there."""
    for line in lines:
        print(line, flush=True)
        if _log_too():
            logging.info(line)


def _log_too() -> bool:
    """False when stdout and stderr end in the same place (a terminal, `2>&1`, a notebook's cell),
    or when stderr is a terminal and stdout feeds a pipe (`| tee` shows it on that terminal)."""
    if all(type(s).__module__.startswith("ipykernel.") for s in (sys.stdout, sys.stderr)):
        return False
    out, err = _stat(sys.stdout), _stat(sys.stderr)
    if out is None or err is None:  # logged too, unless neither has a descriptor (a notebook's)
        return out is not None or err is not None
    if os.path.samestat(out, err):
        return False
    return not (sys.stderr.isatty() and (sys.stdout.isatty() or stat.S_ISFIFO(out.st_mode)))


def _stat(stream) -> os.stat_result | None:
    """What the stream's descriptor points to; None for a stream without one."""
    try:
        return os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return None


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s"


class Claim:
    """An exclusive flock on the workdir while this process trains there, so that another process
    cannot interleave its checkpoints (the system drops it at exit, even by kill -9). `take` claims
    once the folder exists; only process 0 claims."""

    def __init__(self, workdir: str | os.PathLike, active: bool = True):
        self.workdir, self.active, self._fd = epath.Path(workdir), active, None
        self.refused = False  # another process held it: its folder is not this start's to undo
        self.made: list[epath.Path] | None = None  # the folders this start made (train's)
        self._path = runfiles.absolute(workdir)  # where orbax writes, fixed at the start

    def take(self) -> None:
        if self._fd is not None or not self.active or not self.workdir.is_dir():
            return
        try:
            fd = os.open(self.workdir, os.O_RDONLY)
        except OSError:  # no local folder (a gs:// workdir): no claim
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            self.refused = True
            raise ConfigError(
                f"--workdir {self.workdir}: another process is training in it. Wait for it to end "
                "(or stop it: on SIGTERM it saves and exits), or give another --workdir."
            ) from None
        except OSError:  # a file system without flock (some network mounts): no claim
            os.close(fd)
            return
        self._fd = fd

    def moved(self) -> str | None:
        """None while --workdir still names the claimed folder (or none is claimed); else where the
        folder is now ('' when not known: deleted, or no /proc). Renamed while the run trains, its
        later checkpoints would recreate the old path: the run split in two."""
        if self._fd is None:
            return None
        with contextlib.suppress(OSError):  # a missing path counts as moved
            if os.path.samestat(os.stat(self._path), os.fstat(self._fd)):
                return None
        try:
            now = os.readlink(f"/proc/self/fd/{self._fd}")
        except OSError:
            return ""
        return "" if now.endswith(" (deleted)") else now

    @property
    def held(self) -> bool:
        """Whether this process holds the claim (taken, on a file system with flock)."""
        return self._fd is not None

    def __enter__(self) -> Claim:
        self.take()
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the lock
            self._fd = None


def _check_new_run_folder(workdir: epath.Path) -> None:
    """Refuses a --workdir given one level off for a new run: a run's evaluation reports (RUN/eval,
    where scripts/evaluate.py writes), or a folder that holds other runs (their parent)."""
    path = runfiles.absolute(workdir)  # `cd RUN; --workdir eval` too
    for folder in (path, *path.parents):
        if folder.name == runfiles.EVAL_DIR and runfiles.is_run_folder(folder.parent):
            raise ConfigError(
                f"--workdir {workdir} is in the evaluation reports of the run in {folder.parent} "
                "(scripts/evaluate.py writes them there): pass --workdir "
                f"{shlex.quote(str(folder.parent))} to resume that run, or give another folder for "
                "a new run."
            )
    runs = []
    with contextlib.suppress(OSError):  # unreadable: the checks below say what to do
        if workdir.is_dir() and not runfiles.is_run_folder(workdir):
            runs = sorted(
                str(f) for f in workdir.iterdir() if f.is_dir() and runfiles.is_run_folder(f)
            )
    if runs:
        shown = ", ".join(runs[:3]) + (f" and {len(runs) - 3} more" if len(runs) > 3 else "")
        raise ConfigError(
            f"--workdir {workdir} holds other runs ({shown}): each run has a folder of its "
            f"own. Give a new one, such as {workdir / 'NAME'}, or one of those to resume it."
        )


def _check_latest_kept(workdir: epath.Path, checkpoint_every_epochs: int) -> None:
    """Refuses a folder whose run trained but lost checkpoints/latest (deleted to save disk): a
    start afresh there would delete its curves and replace its best/ and summary.json. Its
    summary.json, or a best/ step of a later epoch than latest/'s first (best/ is written before
    latest/), says it trained; a run stopped before its first latest/ step starts afresh."""
    best = checkpoints.newest_step(checkpoints.series_dir(workdir, "best"))
    record = None
    if best is not None:
        with contextlib.suppress(CheckpointError):  # unreadable: not evidence enough
            record = checkpoints.peek_meta(workdir, "best")
    summary = (workdir / runfiles.SUMMARY).is_file()
    # The run's own setting (one session wrote best/ and no latest/): this command's may differ.
    every = (_recorded(workdir) or {}).get("checkpoint_every_epochs", checkpoint_every_epochs)
    if not summary and (record or {}).get("epoch", 0) <= every:
        return
    events = any(p.name.startswith("events.out.tfevents.") for p in workdir.iterdir())
    held = [
        *["config.json"] * runfiles.is_run_folder(workdir),
        *[f"checkpoints/best/{best}"] * (best is not None),
        *[runfiles.SUMMARY] * summary,
        *["TensorBoard events"] * events,
    ]
    serves = f"Its best/{best} still serves scripts/evaluate.py, predict.py and export.py. "
    serves *= best is not None
    raise ConfigError(
        f"--workdir {workdir} holds a run that trained ({', '.join(held)}) but no checkpoint in "
        f"{checkpoints.series_dir(workdir, 'latest')} to resume or extend it from: a start afresh "
        f"would delete its curves and replace its best/ and {runfiles.SUMMARY}. {serves}To train "
        "again, give a new --workdir (or move this one away)."
    )


def _check_length(workdir: epath.Path, made_in: epath.Path, missing: list[str]) -> None:
    """Refuses a local workdir whose path, or the name of a folder to create (`missing`: the
    folders mkdir makes in `made_in`), is longer than its file system holds, counting the deepest
    file a run writes below it (orbax's first save would fail, after a whole epoch)."""
    path = str(runfiles.absolute(workdir))
    try:
        name_max, path_max = (os.pathconf(made_in, f"PC_{n}_MAX") for n in ("NAME", "PATH"))
    except (OSError, ValueError):  # no limits known: the system will tell
        return
    shown = path if len(path) <= 120 else f"{path[:60]}...{path[-40:]}"
    if name := next((n for n in map(os.path.basename, missing) if len(n) > name_max), None):
        raise ConfigError(
            f"--workdir {shown}: its folder name {name[:30]}... has {len(name)} characters, more "
            f"than the {name_max} its file system allows (NAME_MAX). Give shorter folder names."
        )
    if len(path) + runfiles.DEEPEST_FILE >= path_max:  # path_max counts the string's final NUL
        raise ConfigError(
            f"--workdir {shown} is too long: {len(path)} characters as an absolute path, and the "
            f"files a run writes below it add up to {runfiles.DEEPEST_FILE} more, past the "
            f"{path_max - 1} the system allows (PATH_MAX). Give a path of at most "
            f"{path_max - 1 - runfiles.DEEPEST_FILE} characters."
        )


def inspect(config: ConfigDict, workdir: str | os.PathLike) -> tuple[Any, bool]:
    """(the latest checkpoint's record or None, whether config.num_epochs are all trained).
    Refuses a workdir the run cannot use before any data is read or anything compiled; writes
    nothing."""
    workdir = epath.Path(workdir)
    if workdir.exists() and not workdir.is_dir():
        raise ConfigError(
            f"--workdir {workdir} is a file, not a folder: give a folder path (it is created if new)."
        )
    path = runfiles.absolute(workdir)
    if any("]" in part.partition("[")[2] for part in path.parts):  # as a glob's [...]
        raise ConfigError(  # orbax's checkpoints there save but cannot be read
            f"--workdir {path}: a folder of its path holds [ and ], which orbax reads back as a "
            "pattern: checkpoints written there could not be restored. Give a path without them, "
            f"such as {str(path).replace('[', '_').replace(']', '_')}."
        )
    if (run := runfiles.enclosing_run(workdir)) is not None:
        raise ConfigError(
            f"--workdir {workdir} is inside the checkpoints of the run in {run}: pass --workdir "
            f"{shlex.quote(str(run))} to resume that run, or another folder to start a new one."
        )
    saved = checkpoints.peek_meta(workdir)
    if saved is None:
        _check_new_run_folder(workdir)
        _check_latest_kept(workdir, config.checkpoint_every_epochs)
    finished = False
    if saved is not None:
        check_same_recipe(config, workdir)
        if diffs := checkpoints.model_differences(saved, model_identity(config)):
            raise CheckpointError(
                f"the checkpoint in {checkpoints.series_dir(workdir, 'latest')} was written for a "
                f"different model ({'; '.join(diffs)}). Use the config that wrote it, or a new "
                "--workdir to start a fresh run."
            )
        finished = check_num_epochs(saved, config.num_epochs, workdir)
    # A local folder the run will write in, or create: it, or the folder it is created in, must
    # allow that (a bucket's permissions are its own). The folders mkdir would create are walked
    # unnormalised, up to the one it creates them in: a `..` after a link goes through the link.
    if not finished and "://" not in os.fspath(workdir):
        missing = [os.path.join(os.getcwd(), workdir)]
        while not os.path.exists(missing[-1]):
            missing.append(os.path.dirname(missing[-1]))
        made_in = epath.Path(missing.pop())
        _check_length(workdir, made_in, missing)
        if link := next((p for p in missing if os.path.islink(p)), None):
            target = os.path.join(os.path.dirname(link), os.readlink(link))
            raise ConfigError(  # e.g. a link to a disk that is not mounted
                f"--workdir {workdir} cannot be created: {link} is a link to {target}, which does "
                "not exist (or loops). Create (or mount) its target, or give another folder."
            )
        if not made_in.is_dir():
            raise ConfigError(
                f"--workdir {workdir} cannot be created: {made_in} is a file. Give a folder path."
            )
        if not os.access(made_in, os.W_OK | os.X_OK):
            raise ConfigError(
                f"--workdir {workdir} cannot be written: {made_in} is not writable by this user. "
                "Give a folder you can write (it is created if new)."
            )
    return saved, finished


def report_finished(workdir: str | os.PathLike, saved: dict[str, Any], config: ConfigDict) -> dict:
    """Prints the summary of a run that has nothing left to train, and returns it."""
    summary = run_summary(saved, config.seed)
    announce(
        f"{workdir} has trained all its {count(config.num_epochs, 'epoch')}: nothing to do.",
        *summary_lines(summary, workdir),
        "To train it longer, pass a larger --config.num_epochs; to start afresh, a new --workdir.",
    )
    return summary
