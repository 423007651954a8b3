"""Orbax checkpoints of a run: `latest/` for resuming (a few kept) and `best/` by test accuracy,
each the training state and a JSON record. Orbax renames a step's folder once it is complete, so a
run killed while saving leaves no checkpoint that a later run would pick up."""

from __future__ import annotations

import errno
import json
import os
import time
from collections.abc import Callable, Mapping
from concurrent import futures
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

from swin_flax import errors
from swin_flax.errors import CheckpointError, CheckpointWriteError, WorkdirMoved
from swin_flax.runfiles import CHECKPOINTS, SERIES, absolute


def _state_handler() -> ocp.PyTreeCheckpointHandler:
    """orbax's StandardSave handler, but host arrays are written without a deep copy (0.3 s for the
    recipe's 383 MiB; see `Checkpoints.save`) and uncompressed (float32 weights shrink under 10%
    for twice the write's CPU time, which the input pipeline needs)."""
    th = ocp.type_handlers
    kept = [(t, th.get_type_handler(t)) for t in (int, float, bytes, np.number, jax.Array, str)]
    registry = th.create_type_handler_registry(
        *kept, (np.ndarray, th.NumpyHandler(deepcopy_host_arrays=False))
    )
    return ocp.PyTreeCheckpointHandler(type_handler_registry=registry, use_compression=False)


def _manager(directory: epath.Path, max_to_keep: int, read_only: bool) -> ocp.CheckpointManager:
    # Read-only, orbax warns "Given directory is read only" and that it turns off what only writing
    # uses (max_to_keep, create, cleanup_tmp_directories): expected here, not news.
    level = logging.get_verbosity()
    logging.set_verbosity(logging.ERROR if read_only else level)
    try:
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep,
            read_only=read_only,
            cleanup_tmp_directories=True,  # what a save that was killed left
            enable_async_checkpointing=False,  # the writer thread of `Checkpoints` waits for it
        )
        handlers = {"state": _state_handler(), "meta": ocp.JsonCheckpointHandler()}
        return ocp.CheckpointManager(
            directory, options=options, item_names=("state", "meta"), item_handlers=handlers
        )
    finally:
        logging.set_verbosity(level)


def _array_leaves(state: Any) -> Any:
    """NumPy scalars as 0-d arrays, as orbax's StandardSave stores them (restored as arrays)."""
    as_array = lambda x: x if isinstance(x, np.ndarray | jax.Array) else np.asarray(x)
    return jax.tree.map(lambda x: as_array(x) if hasattr(x, "__array__") else x, state)


def _restore(
    manager: ocp.CheckpointManager, step: int, state: bool = True, target: Any = None
) -> tuple[Any, dict[str, Any]]:
    """(state or None, record) of checkpoint `step`, the state shaped as `target` (None: as saved)."""
    items = {"meta": ocp.args.JsonRestore()}
    if state:
        args = None if target is None else ocp.checkpoint_utils.construct_restore_args(target)
        items["state"] = ocp.args.PyTreeRestore(target, restore_args=args)
    restored = manager.restore(step, args=ocp.args.Composite(**items))
    return restored.get("state"), restored["meta"]


def as_dtype(tree: Any, dtype: str | np.dtype) -> Any:
    """Every array of `tree` as `dtype`, on the host (best/ params: config.best_params_dtype)."""
    return jax.tree.map(lambda x: np.asarray(x, jax.numpy.dtype(dtype)), tree)


# What orbax raises on a step it cannot read: a missing item or file, a truncated blob, a tree that
# is not the one saved.
READ_ERRORS = (OSError, ValueError, KeyError)
_RESUME = (
    "Move that step folder out of its series to resume from the step before it (latest/ keeps "
    "config.keep_checkpoints), or give a new --workdir to start afresh."
)


def damaged(step_dir: str | os.PathLike, e: Exception, advice: str) -> CheckpointError:
    """The error for an unreadable step, quoting the cause's first line (orbax's can be long)."""
    cause = (str(e).strip().splitlines() or [""])[0]
    cause = cause if len(cause) <= 160 else cause[:160] + " ..."
    return CheckpointError(
        f"the checkpoint {step_dir} cannot be read ({type(e).__name__}: {cause}): it is incomplete "
        f"or damaged. {advice}"
    )


def series_dir(workdir: str | os.PathLike, which: str) -> epath.Path:
    """The absolute folder of series `which` (`latest` or `best`) of `workdir`."""
    return absolute(workdir) / CHECKPOINTS / which


def steps_held(series: epath.Path) -> list[int]:
    """The complete steps of a series, from the folder names alone: with several processes, a
    manager would join orbax's collective steps out of turn."""
    return ocp.utils.checkpoint_steps(series)


def newest_step(series: epath.Path) -> int | None:
    """The newest complete step of a series (see `steps_held`)."""
    return max(steps_held(series), default=None)


def _save(manager: ocp.CheckpointManager, step: int, items: Any, previous: int | None) -> None:
    """orbax's synchronous save; a failure's error names `previous`, the step it leaves newest."""
    try:
        manager.save(step, args=items, force=True)
    except Exception as e:  # orbax re-raises OS errors from its writer threads in many forms
        if errors.lost_peer(e):  # orbax's barrier with the other processes, not the disk
            raise errors.ProcessLost(f"a checkpoint save's barrier failed ({e})") from e
        kept = (
            f"the previous checkpoint (step {previous}) is intact and running the same command "
            "again resumes from it"
            if previous is not None
            else "there was no earlier checkpoint in this series"
        )
        too_long = any(getattr(x, "errno", None) == errno.ENAMETOOLONG for x in errors.chain(e))
        fix = (
            "Its paths are longer than the file system allows: move the run to a folder of a "
            "shorter path and give that as --workdir"
            if too_long or "File name too long" in str(e)  # orbax's threads: maybe only its text
            else "Free disk space or make the workdir writable (or choose another --workdir)"
        )
        raise CheckpointWriteError(
            f"could not write the {manager.directory.name!r} checkpoint of step {step} in "
            f"{manager.directory} ({type(e).__name__}: {e}). {fix}; {kept}."
        ) from e


class Checkpoints:
    """The `latest` and `best` series of one workdir. `save` hands the write to one thread (orbax's
    async save blocked the loop 40-110 ms), in order and none after one that failed; a series'
    next save or read waits for its write, `close` for all; a failure raises at the next `save` or
    at `close`. With several processes saves are synchronous: orbax's collective barriers, run from
    another thread, could interleave with the training's in another order on each host.
    `in_place` (the run's claim) tells the thread, before each write, that the workdir is still
    where it was: orbax would recreate a moved one's old path."""

    def __init__(
        self,
        workdir: str | os.PathLike,
        keep: int = 3,
        read_only: bool = False,
        asynchronous: bool = True,
        in_place: Callable[[], bool] = lambda: True,
    ):
        self.root = series_dir(workdir, "latest").parent
        self.latest = _manager(series_dir(workdir, "latest"), keep, read_only)
        self.best = _manager(series_dir(workdir, "best"), 1, read_only)
        self._writer = None
        if asynchronous and not read_only and jax.process_count() == 1:
            self._writer = futures.ThreadPoolExecutor(1, thread_name_prefix="checkpoint_writer")
        self._in_flight: dict[str, futures.Future] = {}
        self._failed: CheckpointWriteError | None = None  # the first, until raised
        self._told_slow = False
        self._in_place = in_place

    def save(self, which: str, step: int, state: Any, meta: Mapping[str, Any]) -> None:
        """Starts writing `state` and `meta` (JSON-able). Host arrays are not copied: leave them
        unchanged until the series' next save or `close` (nothing writes to jax.device_get's). A
        step already saved is replaced (a `best` can be ahead of `latest` after a kill; the
        resumed run trains that epoch again)."""
        manager = getattr(self, which)
        waited = self._settle(which)
        if self._failed is not None:  # raised once
            error, self._failed = self._failed, None
            raise error
        if waited > 1.0 and not self._told_slow:
            self._told_slow = True
            logging.info(
                f"checkpoint writes take longer than the epochs between them: the {which!r} save of "
                f"step {step} waited {waited:.1f}s for the previous write "
                "(config.checkpoint_every_epochs sets how often they are written)"
            )
        if step in manager.all_steps():
            manager.delete(step)
        items = ocp.args.Composite(
            state=ocp.args.PyTreeSave(_array_leaves(state)), meta=ocp.args.JsonSave(dict(meta))
        )
        write = (manager, step, items, manager.latest_step())
        if self._writer is None:
            _save(*write)
        else:
            queued = list(self._in_flight.values())  # done by then: one thread writes in order

            def write_unless_an_earlier_failed() -> None:
                # The loop saves `best` of a step before its `latest`, whose record names the best.
                if any(future.exception() for future in queued):
                    return
                if not self._in_place():
                    raise WorkdirMoved(
                        f"--workdir {self.root.parent} was moved or renamed while the run trained: "
                        f"its checkpoints of step {step} still queued were not written, so as "
                        f"not to recreate that path. Run the same command again with --workdir set to "
                        "its new path to resume it from its last checkpoint there.",
                        step,
                    )
                _save(*write)

            self._in_flight[which] = self._writer.submit(write_unless_an_earlier_failed)

    def _settle(self, which: str) -> float:
        """Waits for the series' write in flight, keeping a failure; returns the seconds waited."""
        start = time.perf_counter()
        if future := self._in_flight.pop(which, None):  # waits, even when an earlier write failed
            self._failed = self._failed or future.exception()  # the first failure, until raised
        return time.perf_counter() - start

    def wait(self) -> CheckpointWriteError | None:
        """Waits for every write in flight; returns the first failure, taken from `close`: the
        caller raises it, or says what it means (a moved workdir's)."""
        for which in SERIES:
            self._settle(which)
        failed, self._failed = self._failed, None
        return failed

    def latest_step(self, which: str = "latest") -> int | None:
        """The series' newest complete step (a write in flight is waited for first)."""
        self._settle(which)
        return getattr(self, which).latest_step()

    def restore(self, which: str, target: Any) -> tuple[Any, dict[str, Any]] | None:
        """The newest checkpoint, shaped as `target` (None: as saved); None when there is none."""
        self._settle(which)
        manager = getattr(self, which)
        if (step := manager.latest_step()) is None:
            return None
        try:
            return _restore(manager, step, target=target)
        except READ_ERRORS as e:
            raise damaged(manager.directory / str(step), e, _RESUME) from None

    def close(self) -> None:
        """Waits for the writes in flight (the process must not end before), closes the managers,
        then raises a write's failure."""
        failed = self.wait()
        if self._writer is not None:
            self._writer.shutdown()
        self.latest.close()
        self.best.close()
        if failed is not None:
            raise failed


def peek_meta(workdir: str | os.PathLike, which: str = "latest") -> dict[str, Any] | None:
    """The newest complete checkpoint's record in `workdir`, or None; creates nothing on disk, so
    that a run refuses a checkpoint of another model before it reads data or compiles anything.
    A plain file read: an orbax manager's creation is a barrier of every process, which processes
    that see different folders (one holding a checkpoint, one none) would reach apart."""
    series = series_dir(workdir, which)
    if (step := newest_step(series)) is None:
        return None
    try:  # where the manager's "meta" item (a JsonCheckpointHandler) keeps the record
        return json.loads((series / str(step) / "meta" / "metadata").read_text())
    except READ_ERRORS as e:
        raise damaged(series / str(step), e, _RESUME) from None


def read_step(
    step_dir: str | os.PathLike,
    meta_only: bool = False,
    advice: str | Callable[[], str] = _RESUME,
) -> tuple[Any, dict[str, Any]]:
    """(state, record) of a step folder `WORKDIR/checkpoints/SERIES/STEP` (state None when
    `meta_only`); an unreadable one raises `damaged`'s error, `advice` (or what it returns, asked
    only then) closing it."""
    try:
        path = absolute(step_dir)
        with _manager(path.parent, 1, read_only=True) as manager:
            return _restore(manager, int(path.name), state=not meta_only)
    except READ_ERRORS as e:
        raise damaged(step_dir, e, advice() if callable(advice) else advice) from None


def model_differences(
    meta: Mapping[str, Any], model_config: Mapping[str, Any], label: str = "config"
) -> list[str]:
    """`field: checkpoint A vs LABEL B` for each field of `model_config` that `meta["model"]`
    holds otherwise (a field it lacks counts as None; its JSON lists match tuples)."""
    saved = meta.get("model") or {}
    return [
        f"{k}: checkpoint {saved.get(k)!r} vs {label} {v!r}"
        for k, v in model_config.items()
        if saved.get(k) != (list(v) if isinstance(v, tuple) else v)
    ]
