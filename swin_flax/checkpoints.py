"""Orbax checkpoints of a run: `latest/` for resuming (a few kept) and `best/` by test accuracy.

Each checkpoint holds the training state (params, optimiser state, step) and a small JSON record (epoch,
step, accuracies, the model config). Orbax writes into a temporary folder and renames it when complete, so
a run killed while saving never leaves a checkpoint that a later run would pick up.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import orbax.checkpoint as ocp
from absl import logging
from etils import epath

from swin_flax.errors import CheckpointError, CheckpointWriteError


def _manager(
    directory: epath.Path, max_to_keep: int, read_only: bool = False
) -> ocp.CheckpointManager:
    # Read-only, orbax warns "Given directory is read only" and that it turns off what only writing
    # uses (max_to_keep, create, cleanup_tmp_directories): expected here, not news.
    level = logging.get_verbosity()
    logging.set_verbosity(logging.ERROR if read_only else level)
    try:
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep,
            read_only=read_only,
            cleanup_tmp_directories=True,  # what a save that was killed left
            enable_async_checkpointing=False,  # a returned save is a finished save
        )
        return ocp.CheckpointManager(directory, options=options, item_names=("state", "meta"))
    finally:
        logging.set_verbosity(level)


def _restore(
    manager: ocp.CheckpointManager, step: int | None = None, state: bool = True, target: Any = None
) -> tuple[Any, dict[str, Any]] | None:
    """(state, record) of checkpoint `step` (default: the newest complete one), or None when there
    is none. The state takes the structure of `target` (None: as saved); None when not `state`."""
    step = manager.latest_step() if step is None else step
    if step is None:
        return None
    items = {"meta": ocp.args.JsonRestore()}
    if state:
        items["state"] = ocp.args.StandardRestore(target)
    restored = manager.restore(step, args=ocp.args.Composite(**items))
    return restored.get("state"), restored["meta"]


def series_dir(workdir: str | os.PathLike, which: str) -> epath.Path:
    """The folder of one checkpoint series (`latest` or `best`) of `workdir`, absolute (orbax wants
    absolute paths)."""
    return epath.Path(os.path.abspath(workdir)) / "checkpoints" / which


def newest_step(series: epath.Path) -> int | None:
    """The newest complete step in a series folder, from the folder names alone: no manager is
    opened, since with several processes one may be creating a new run's series folder while
    another looks, and a manager would join orbax's collective steps out of turn."""
    return max(ocp.utils.checkpoint_steps(series), default=None)


class Checkpoints:
    """The two checkpoint series of one workdir: `latest` and `best`."""

    def __init__(self, workdir: str | os.PathLike, keep: int = 3, read_only: bool = False):
        self.root = series_dir(workdir, "latest").parent
        self.latest = _manager(series_dir(workdir, "latest"), keep, read_only)
        self.best = _manager(series_dir(workdir, "best"), 1, read_only)

    def save(self, which: str, step: int, state: Any, meta: Mapping[str, Any]) -> None:
        """Writes `state` (a pytree of host or device arrays) and `meta` (JSON-able) atomically.

        Orbax writes into `<step>.orbax-checkpoint-tmp*` and renames it when complete, so a failed or
        killed save leaves the previous checkpoints as they were; a failure raises
        CheckpointWriteError saying so.
        """
        manager = getattr(self, which)
        previous = manager.latest_step()
        try:
            manager.save(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(dict(meta))
                ),
                force=True,
            )
            manager.wait_until_finished()
        except Exception as e:  # orbax re-raises OS errors from its writer threads in many forms
            kept = (
                f"the previous checkpoint (step {previous}) is intact and running the same command "
                "again resumes from it"
                if previous is not None
                else "there was no earlier checkpoint in this series"
            )
            raise CheckpointWriteError(
                f"could not write the {which!r} checkpoint of step {step} in "
                f"{manager.directory} ({type(e).__name__}: {e}). Free disk space or make the "
                f"workdir writable (or choose another --workdir); {kept}."
            ) from e

    def latest_step(self, which: str = "latest") -> int | None:
        return getattr(self, which).latest_step()

    def restore_meta(self, which: str = "latest") -> dict[str, Any] | None:
        restored = _restore(getattr(self, which), state=False)
        return None if restored is None else restored[1]

    def restore(self, which: str, target: Any) -> tuple[Any, dict[str, Any]] | None:
        """Restores the newest checkpoint into the structure of `target` (None: as saved); None
        when there is no checkpoint yet."""
        return _restore(getattr(self, which), target=target)

    def close(self) -> None:
        self.latest.close()
        self.best.close()


def peek_meta(workdir: str | os.PathLike, which: str = "latest") -> dict[str, Any] | None:
    """The newest complete checkpoint's record in `workdir`, or None; creates nothing on disk.

    Lets a run refuse a checkpoint of another model before it reads data or compiles anything.
    """
    step = newest_step(series_dir(workdir, which))
    return None if step is None else read_step(series_dir(workdir, which) / str(step), True)[1]


def read_step(step_dir: str | os.PathLike, meta_only: bool = False) -> tuple[Any, dict[str, Any]]:
    """(state, record) of one checkpoint step folder `WORKDIR/checkpoints/{best,latest}/STEP`, read
    through a read-only manager of its series (state None when `meta_only`). Orbax's errors on a
    missing or truncated file propagate (OSError, ValueError)."""
    step_dir = epath.Path(os.path.abspath(step_dir))
    with _manager(step_dir.parent, 1, read_only=True) as manager:
        return _restore(manager, int(step_dir.name), state=not meta_only)


def check_model_matches(
    meta: Mapping[str, Any], model_config: Mapping[str, Any], where: str
) -> None:
    """Refuses a checkpoint written for another model, naming the fields that differ."""
    diffs = model_differences(meta, model_config)
    if diffs:
        raise CheckpointError(
            f"the checkpoint in {where} was written for a different model ({'; '.join(diffs)}). "
            "Use the config that wrote it, or a new --workdir to start a fresh run."
        )


def model_differences(
    meta: Mapping[str, Any], model_config: Mapping[str, Any], label: str = "config"
) -> list[str]:
    """`field: checkpoint A vs LABEL B` for each field of `model_config` that the checkpoint's
    record (`meta["model"]`) holds otherwise (a field it lacks counts as None). The record, read
    back from JSON, holds lists where the config may hold tuples."""
    saved = meta.get("model") or {}
    return [
        f"{k}: checkpoint {saved.get(k)!r} vs {label} {v!r}"
        for k, v in model_config.items()
        if saved.get(k) != (list(v) if isinstance(v, tuple) else v)
    ]
