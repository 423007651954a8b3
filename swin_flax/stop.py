"""Stopping on SIGTERM/SIGINT: after the current step, with a checkpoint, every process at the same
step; a second signal stops at once."""

from __future__ import annotations

import contextlib
import signal

import jax
import numpy as np
from absl import logging
from etils import epath

from swin_flax import checkpoints


class StopFlag:
    """Records SIGTERM/SIGINT so the loop can stop after the current step and save. Several hosts
    agree on that step through an all-gather, which blocks until the steps queued on the devices
    have run: they compare notes only every `sync_every` steps and at epoch ends."""

    def __init__(self, latest: epath.Path, sync_every: int = 1):
        self.signal: int | None = None
        self.second: int | None = None
        self.peer: tuple[int, int] | None = None  # (process, signal) that stops this one
        self.latest, self.sync_every = latest, sync_every  # the series a second signal reports on
        self.now = "step"  # what the loop finishes before it stops: the step, or an evaluation
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            if sig == signal.SIGTERM and signal.getsignal(sig) is signal.SIG_IGN:
                continue  # as the parent left it (cli.start): ignored
            # Outside the main thread no handler can be set: then no graceful preemption.
            with contextlib.suppress(ValueError):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signal is not None:  # a second signal: stop now (__exit__ says what is kept)
            self.second = self.second or signum  # the one sent again (cli) keeps its name
            raise KeyboardInterrupt
        name, when = signal.Signals(signum).name, f"this {self.now}"
        if self.now == "step" and self.sync_every > 1 and jax.process_count() > 1:
            when = f"the processes' next check, within {self.sync_every} steps (log_every_steps),"
        logging.warning(f"Received {name}: stopping after {when} and saving.")
        self.signal = signum

    def __exit__(self, kind, value, tb):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        if self.second is not None and kind is KeyboardInterrupt:
            # Said now: the checkpoints, closed first, have finished the writes in flight.
            kept = (
                f"the last complete checkpoint is kept; run {again()} to resume from it"
                if checkpoints.newest_step(self.latest) is not None
                else f"no checkpoint was written yet; run {again()} to start it afresh"
            )
            name = signal.Signals(self.second).name
            raise KeyboardInterrupt(f"a second {name} while stopping: {kept}") from None
        return False

    @property
    def by_user(self) -> bool:
        """Whether the stop came from Ctrl-C (SIGINT), in this process or another, not SIGTERM."""
        return (self.signal or (self.peer and self.peer[1])) == signal.SIGINT

    @property
    def cause(self) -> str:
        """'process 1 received SIGTERM' when another process's signal stops this one, else ''."""
        if self.peer is None:
            return ""
        return f"process {self.peer[0]} received {signal.Signals(self.peer[1]).name}"

    def requested(self, step: int | None = None) -> bool:
        """Whether to stop after `step` (None: at an epoch's end, where every host checks). A host
        stopped by another's signal records which in `cause`, for its log and its message."""
        if jax.process_count() == 1:
            return self.signal is not None
        if step is not None and step % self.sync_every:  # every host must stop at the same step
            return False
        from jax.experimental import multihost_utils  # noqa: PLC0415

        signals = np.ravel(multihost_utils.process_allgather(np.array(self.signal or 0)))
        if self.signal is None and signals.any() and self.peer is None:
            first = int(np.flatnonzero(signals)[0])
            self.peer = (first, int(signals[first]))
            cause = self.cause
            logging.warning(
                f"{cause[0].upper()}{cause[1:]}: stopping after this {self.now} and saving."
            )
        return bool(signals.any())


def again() -> str:
    """How a stopped run is resumed: by its command, or by the commands of all its processes."""
    if jax.process_count() == 1:
        return "the same command again"
    return "the same commands again, on every process,"
