"""What a run carries from epoch to epoch and keeps in each checkpoint's JSON record."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np
from flax import serialization

from swin_flax import rundir


def as_json(metrics) -> Any:
    """A metrics collection's state as JSON-able lists (for a checkpoint's record); None stays None."""
    return jax.tree.map(lambda x: np.asarray(x).tolist(), serialization.to_state_dict(metrics))


def from_json(template, plain: Any):
    """Metrics saved by `as_json`, in `template`'s structure, shapes and dtypes (float32 comes back
    exact). A metric added to the code since they were saved starts empty and one removed is
    dropped, so a run stopped within an epoch resumes across such a change."""
    state = serialization.to_state_dict(template)
    empty = serialization.to_state_dict(type(template).empty())
    plain = {name: plain.get(name, empty[name]) for name in state}
    as_in = lambda t, v: np.broadcast_to(np.asarray(v, np.asarray(t).dtype), np.shape(t))
    return serialization.from_state_dict(template, jax.tree.map(as_in, state, plain))


@dataclasses.dataclass
class Progress:
    """What a run carries from epoch to epoch and keeps in every checkpoint's record: each run's best
    test accuracy and its epoch, the totals over sessions, the part of an epoch trained before a
    stop in it, each run's last test accuracy and (several runs) every epoch's test accuracies."""

    num_runs: int = 1
    best_accuracy: list[float] = dataclasses.field(default_factory=list)
    best_epoch: list[int] = dataclasses.field(default_factory=list)
    totals: rundir.RunTotals = dataclasses.field(default_factory=rundir.RunTotals)
    partial_epoch: dict[str, Any] | None = None
    test_accuracy: list[float] | None = None
    history: list[list[float]] = dataclasses.field(default_factory=list)

    def __post_init__(self):
        self.best_accuracy = self.best_accuracy or [-1.0] * self.num_runs
        self.best_epoch = self.best_epoch or [-1] * self.num_runs

    @classmethod
    def from_record(cls, meta: dict[str, Any]) -> Progress:
        per_run = ("best_accuracy", "best_epoch", "test_accuracy")  # one run's are numbers
        lists = {k: np.atleast_1d(meta[k]).tolist() for k in per_run if meta.get(k) is not None}
        return cls(
            len(lists["best_accuracy"]),
            totals=rundir.RunTotals(**meta.get("totals", {})),
            partial_epoch=meta.get("partial_epoch"),
            history=meta.get("history", []),
            **lists,
        )

    def improved(self, accuracy: np.ndarray, epoch: int) -> np.ndarray:
        """Records `epoch`'s test accuracies; returns which runs beat their best."""
        better = accuracy > np.asarray(self.best_accuracy)
        self.best_accuracy = np.where(better, accuracy, self.best_accuracy).tolist()
        self.best_epoch = np.where(better, epoch, self.best_epoch).tolist()
        self.test_accuracy = accuracy.tolist()
        if self.num_runs > 1:
            self.history.append(self.test_accuracy)
        return better

    def record(self, config, epoch: int, step: int, steps_per_epoch: int, wall: float) -> dict:
        """The checkpoint's JSON record at `step` (`wall`: this session's seconds so far). A single
        run's figures are numbers, several runs' lists in run order (`runs` names them)."""
        one = self.num_runs == 1
        per_run = lambda v: v[0] if one and v is not None else v
        identity = rundir.model_identity(config)  # names the runs, in stack order
        several = {} if one else {"runs": identity["runs"], "history": self.history}
        return {
            "epoch": epoch,
            "step": step,
            "steps_per_epoch": steps_per_epoch,
            "best_accuracy": per_run(self.best_accuracy),
            "best_epoch": per_run(self.best_epoch),
            "model": identity,
            "totals": dataclasses.asdict(self.totals.plus(wall=wall)),
            "partial_epoch": self.partial_epoch,
            "test_accuracy": per_run(self.test_accuracy),
            "devices": device_layout(),
            **several,
        }


def device_layout() -> list[int]:
    """[devices, processes]: what dropout's draws and CutMix's pairs follow; a checkpoint's record
    keeps it, so that a resume on others can say the run is no longer bit for bit the same."""
    return [jax.device_count(), jax.process_count()]
