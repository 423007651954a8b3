"""A run's folder (--workdir): what it holds and what it says about the run.

Reads the latest checkpoint's record to tell where a run stands (new, to resume, finished), writes the
config that ran, and words positions and summaries the same way in every message. No TensorFlow: a
finished run answers in seconds.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Any

import ml_collections
from absl import logging
from etils import epath

from swin_flax import checkpoints
from swin_flax.errors import ConfigError
from swin_flax.models import swin


def check_workdir(workdir: epath.Path) -> None:
    if workdir.exists() and not workdir.is_dir():
        raise ConfigError(
            f"--workdir {workdir} is a file, not a folder: give a folder path (it is created if new)."
        )


def write_config(config: ml_collections.ConfigDict, workdir: epath.Path) -> None:
    """Keeps the config that ran, as readable text and as JSON, so a run can be repeated."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.txt").write_text(str(config))
    (workdir / "config.json").write_text(config.to_json_best_effort(indent=2, sort_keys=True))


def model_identity(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """What a checkpoint's params depend on: the model's arguments and the block layout (which
    stages stack their blocks: `scan_blocks` and, when it is on, swin.SCAN_MIN_DEPTH)."""
    layout = {"scan_blocks": config.scan_blocks}
    if config.scan_blocks:
        layout["scan_min_depth"] = swin.SCAN_MIN_DEPTH
    return {**config.model.to_dict(), **layout}


@dataclasses.dataclass
class RunTotals:
    """What a run has done over all its sessions (starts), kept in every checkpoint's record so
    that summary.json describes the whole run however often it was stopped and resumed."""

    sessions: int = 0
    wall_seconds: float = 0.0  # start to stop of each session, summed
    train_seconds: float = 0.0  # time in training steps (evaluation and checkpoints excluded)
    trained_images: int = 0

    def plus(self, wall: float = 0.0, train: float = 0.0, images: int = 0) -> RunTotals:
        return dataclasses.replace(
            self,
            wall_seconds=self.wall_seconds + wall,
            train_seconds=self.train_seconds + train,
            trained_images=self.trained_images + images,
        )


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
    """Whether the run in `workdir` (its latest record `saved`) already trained `num_epochs`
    epochs; refuses a num_epochs below what it trained."""
    done_steps, per_epoch = saved["step"], saved.get("steps_per_epoch")
    target = num_epochs * per_epoch if per_epoch else None
    beyond = done_steps > target if target is not None else saved["epoch"] > num_epochs
    if beyond:
        done = position(done_steps, per_epoch) if per_epoch else f"{saved['epoch']} epochs"
        raise ConfigError(
            f"config.num_epochs: {workdir} has already trained to {done}, more than "
            f"--config.num_epochs={num_epochs}. Pass --config.num_epochs={saved['epoch']} or more "
            "to see its summary or to train it longer, or a new --workdir to start afresh."
        )
    return done_steps == target if target is not None else saved["epoch"] == num_epochs


def finished_summary(workdir: epath.Path, saved: dict[str, Any]) -> dict[str, Any]:
    """The summary of a run that has nothing left to train (summary.json, else its record)."""
    path = workdir / "summary.json"
    if path.exists():
        return json.loads(path.read_text())
    return {
        "best_test_accuracy": saved["best_accuracy"],
        "best_epoch": saved["best_epoch"],
        "final_test_accuracy": saved.get("test_accuracy"),
        "epochs": saved["epoch"],
        "steps": saved["step"],
        "checkpoints": str(checkpoints.series_dir(workdir, "latest").parent),
    }


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The final summary as printed when a run ends or is run again once finished."""
    lines = [
        f"best test accuracy {summary['best_test_accuracy']:.4f} at epoch {summary['best_epoch']}"
        + (
            f"; final {summary['final_test_accuracy']:.4f} after {count(summary['epochs'], 'epoch')}"
            if summary.get("final_test_accuracy") is not None
            else ""
        )
    ]
    if "sessions" in summary:
        lines.append(
            f"trained {duration(summary['train_seconds'])} at {summary['train_images_per_sec']:.0f} "
            f"images/s, {duration(summary['total_seconds'])} in all over "
            f"{count(summary['sessions'], 'session')}"
        )
    lines.append(f"checkpoints in {summary['checkpoints']} (best/ and latest/)")
    return lines


def announce(line: str) -> None:
    """A line the user reads as the result (epoch lines, the summary): on stdout, so that `| tee`
    and notebooks keep it, and in the log on stderr unless that is the same terminal."""
    print(line, flush=True)
    if not _same_terminal():
        logging.info(line)


def _same_terminal() -> bool:
    try:
        out, err = os.fstat(sys.stdout.fileno()), os.fstat(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):  # e.g. captured streams without a descriptor
        return False
    return sys.stdout.isatty() and sys.stderr.isatty() and out.st_rdev == err.st_rdev


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s"


def inspect(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> tuple[Any, bool]:
    """(the latest checkpoint's record or None, whether config.num_epochs are all trained).

    Refuses a workdir that is a file, a checkpoint of another model and a num_epochs below what the
    run has trained, before any data is read or anything compiled; writes nothing.
    """
    workdir = epath.Path(workdir)
    check_workdir(workdir)
    saved = checkpoints.peek_meta(workdir)
    if saved is None:
        return None, False
    where = str(checkpoints.series_dir(workdir, "latest"))
    checkpoints.check_model_matches(saved, model_identity(config), where)
    return saved, check_num_epochs(saved, config.num_epochs, workdir)


def report_finished(workdir: str | os.PathLike, saved: dict[str, Any], num_epochs: int) -> dict:
    """Prints the summary of a run that has nothing left to train, and returns it."""
    summary = finished_summary(epath.Path(workdir), saved)
    announce(f"{workdir} has trained all its {count(num_epochs, 'epoch')}: nothing to do.")
    for line in summary_lines(summary):
        announce(line)
    announce(
        "To train it longer, pass a larger --config.num_epochs; to start afresh, a new --workdir."
    )
    return summary
