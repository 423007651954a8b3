"""Many runs in one process: the run set of a config, and the figures that summarise it.

`config.num_runs` seeds crossed with `config.sweep`'s values make a run set (`config.run_grid`). Run k
is the run a process of its own would train with `config.single_run(config, grid[k])`: its seed
(config.seed + its seed index) draws its initialisation and dropout; the data stream is shared
(`data_seed`) unless config.per_run_data. The train state stacks the runs on a leading axis and the
steps are vmapped over it (`build.pmap_train_step`); one run keeps the plain, unstacked layout.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
import numpy as np

from swin_flax.config import SWEEPABLE, run_grid, single_run


@dataclasses.dataclass(frozen=True)
class RunSet:
    """The runs of one process: each one's config (as a process of its own) and name."""

    configs: list[ml_collections.ConfigDict]
    names: list[str]
    swept: tuple[str, ...]  # the swept fields, in config.SWEEPABLE's order

    @property
    def count(self) -> int:
        return len(self.configs)

    def keys(self) -> tuple[jax.Array, jax.Array]:
        """(init keys, dropout keys): each run's split of jax.random.key(its seed), as a single run
        of that seed splits it; stacked on a leading run axis when there are several runs."""
        pairs = [jax.random.split(jax.random.key(c.seed)) for c in self.configs]
        if self.count == 1:
            return pairs[0][0], pairs[0][1]
        stacked = jax.numpy.stack(pairs)
        return stacked[:, 0], stacked[:, 1]


def run_set(config: ml_collections.ConfigDict) -> RunSet:
    """The config's runs, named by what sets them apart: 'seed=1', 'learning_rate=0.001', or both
    ('learning_rate=0.001,seed=1'); a single run is named 'run'."""
    grid = run_grid(config)
    swept = tuple(f for f in SWEEPABLE if config.sweep[f])
    shown = swept + (("seed",) if config.num_runs > 1 else ())
    names = [",".join(f"{f}={values[f]:g}" for f in shown) or "run" for values in grid]
    return RunSet([single_run(config, v) for v in grid], names, swept)


def spread(values: Sequence[float]) -> dict[str, float]:
    """Mean, standard deviation (population, ddof 0: the runs are all there is), min and max."""
    v = np.asarray(values, np.float64)
    return {
        "mean": float(v.mean()),
        "std": float(v.std()),
        "min": float(v.min()),
        "max": float(v.max()),
    }


def spread_text(spread_or_values: dict[str, float] | Sequence[float]) -> str:
    """'mean ± std (min a, max b)' of a `spread` or of the values themselves."""
    s = spread_or_values if isinstance(spread_or_values, dict) else spread(spread_or_values)
    return f"{s['mean']:.4f} ± {s['std']:.4f} (min {s['min']:.4f}, max {s['max']:.4f})"


def summary(
    names: Sequence[str],
    best: Sequence[float],
    best_epoch: Sequence[int],
    final: Sequence[float],
) -> dict[str, Any]:
    """summary.json's figures of several runs: every run's best and final test accuracy, their
    spread and, for a sweep, the spread over seeds at each swept value (read from the run names)."""
    per_run = [
        {"name": n, "best_accuracy": b, "best_epoch": e, "final_accuracy": a}
        for n, b, e, a in zip(names, best, best_epoch, final)
    ]
    out: dict[str, Any] = {
        "num_runs": len(per_run),
        "best_test_accuracy": spread(best),
        "final_test_accuracy": spread(final),
        "runs": per_run,
    }
    groups: dict[str, list[dict]] = {}
    for row in per_run:
        swept = ",".join(p for p in row["name"].split(",") if not p.startswith("seed="))
        if swept:
            groups.setdefault(swept, []).append(row)
    if groups:
        out["sweep"] = {
            value: {
                "best_test_accuracy": spread([r["best_accuracy"] for r in rows]),
                "final_test_accuracy": spread([r["final_accuracy"] for r in rows]),
            }
            for value, rows in groups.items()
        }
    return out
