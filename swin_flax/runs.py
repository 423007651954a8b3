"""Many runs in one process (`config.num_runs` seeds x `config.sweep`'s values), run k training as
a process of its own would with `config.single_run(config, grid[k])`; their summary figures."""

from __future__ import annotations

import colorsys
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

    def describe(self, per_run_data: bool) -> str | None:
        """The start-up line of several runs (their grid: each swept field's values x the seeds) or
        of a one-value sweep; None for a plain run."""
        if self.count > 1:
            seeds = [c.seed for c in self.configs]
            axes = [(f, [c[f] for c in self.configs]) for f in self.swept] + [("seeds", seeds)]
            grid = " x ".join(
                f"{f} ({', '.join(_few([number_text(x) for x in dict.fromkeys(v)]))})"
                for f, v in axes
                if f != "seeds" or len(set(seeds)) > 1
            )
            data = "each its own data stream" if per_run_data else "one shared data stream"
            return f"runs: {self.count} in one process: {grid}, {data}; TensorBoard curves in runs/"
        return f"run: {self.names[0]} (config.sweep)" if self.swept else None

    def keys(self) -> tuple[jax.Array, jax.Array]:
        """(init keys, dropout keys), each run's as a single run of its seed splits them; stacked
        on a leading axis for several runs."""
        pairs = [jax.random.split(jax.random.key(c.seed)) for c in self.configs]
        keys = pairs[0] if self.count == 1 else jax.numpy.stack(pairs, axis=1)
        return keys[0], keys[1]


def _few(texts: list[str]) -> list[str]:
    return texts if len(texts) <= 6 else [*texts[:3], "...", texts[-1]]


def _swept(config: ml_collections.ConfigDict) -> tuple[str, ...]:
    return tuple(f for f in SWEEPABLE if config.sweep[f])


def number_text(x: float) -> str:
    """`:g` unless that loses digits (distinct values, distinct names), else the exact form."""
    short = f"{x:g}"
    return short if float(short) == x else repr(x)


def names(config: ml_collections.ConfigDict) -> list[str]:
    """The runs' names by what sets them apart ('learning_rate=0.001,seed=1'); one run: 'run'."""
    shown = _swept(config) + (("seed",) if config.num_runs > 1 else ())
    return [",".join(f"{f}={number_text(v[f])}" for f in shown) or "run" for v in run_grid(config)]


def run_set(config: ml_collections.ConfigDict) -> RunSet:
    configs = [single_run(config, v) for v in run_grid(config)]
    return RunSet(configs, names(config), _swept(config))


def spread(values: Sequence[float]) -> dict[str, float]:
    """Mean, population std (the runs are all there is), min and max."""
    v = np.asarray(values, np.float64)
    return {f: float(getattr(v, f)()) for f in ("mean", "std", "min", "max")}


def spread_text(spread_or_values: dict[str, float] | Sequence[float]) -> str:
    """'mean ± std (min a, max b)' of a `spread` or of the values themselves."""
    s = spread_or_values if isinstance(spread_or_values, dict) else spread(spread_or_values)
    return f"{s['mean']:.4f} ± {s['std']:.4f} (min {s['min']:.4f}, max {s['max']:.4f})"


def values(name: str) -> dict[str, float]:
    """The numbers a run's (or sweep point's) name gives: {'learning_rate': 0.001, 'seed': 1}."""
    pairs = (part.split("=") for part in name.split(",") if part)
    return {f: int(float(x)) if f == "seed" else float(x) for f, x in pairs}


def points_text(values: Sequence[float], names: Sequence[str]) -> str:
    """Each sweep point's mean±std over its seeds ('learning_rate=0.001 0.6320±0.0280 | ...'); a
    point of one seed: its run's value."""
    each = {
        point: (spread([values[k] for k in m]), len(m)) for point, m in sweep_points(names).items()
    }
    return " | ".join(
        f"{point} {s['mean']:.4f}" + (f"±{s['std']:.4f}" if n > 1 else "")
        for point, (s, n) in each.items()
    )


def ranked(sweep: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    """summary.json's sweep points, best first: by their seeds' mean best test accuracy (a tie:
    the earlier point)."""
    mean = lambda point: round(sweep[point]["best_test_accuracy"]["mean"], 9)  # float noise: a tie
    return sorted(sweep, key=lambda point: -mean(point))


def summary(
    names: Sequence[str],
    best: Sequence[float],
    best_epoch: Sequence[int],
    final: Sequence[float],
    seed: int,
) -> dict[str, Any]:
    """summary.json's figures of several runs (`seed`: the config's): each run's, with its seed and
    swept values; their spread; each sweep point's, and the best point."""
    per_run = [
        {"name": n, "seed": seed, **values(n)}
        | {"best_test_accuracy": b, "best_epoch": e, "final_test_accuracy": a}
        for n, b, e, a in zip(names, best, best_epoch, final)
    ]

    def spreads(members: Sequence[int]) -> dict[str, dict[str, float]]:  # of these runs
        return {
            "best_test_accuracy": spread([best[k] for k in members]),
            "final_test_accuracy": spread([final[k] for k in members]),
        }

    out = {"num_runs": len(per_run), **spreads(range(len(per_run))), "runs": per_run}
    points = sweep_points(names)
    if "" not in points:
        out["sweep"] = {point: spreads(members) for point, members in points.items()}
        first = ranked(out["sweep"])[0]
        out["best_point"] = {"name": first, **values(first)}
    return out


def sweep_points(names: Sequence[str]) -> dict[str, list[int]]:
    """{'learning_rate=0.001': [0, 1], ...} from the run names; {'': every run} without a sweep."""
    points: dict[str, list[int]] = {}
    for k, name in enumerate(names):
        point = ",".join(p for p in name.split(",") if not p.startswith("seed="))
        points.setdefault(point, []).append(k)
    return points


# The colours of the sweep points in a comparison plot (matplotlib's first "tab10" colours).
_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
            (140, 86, 75), (227, 119, 194), (127, 127, 127)]  # fmt: skip


def spread_plot(
    history: Sequence[Sequence[float]], points: dict[str, list[int]] | None = None
) -> np.ndarray:
    """An RGB image of runs' test accuracy per epoch (`history[epoch][run]`) for `points` ({sweep
    point: its runs}; default: every run). One point: each run (grey), their mean, +-std and
    min-max bands; several: each point's mean (line) and min-max over its seeds (band, none for
    one seed) in a colour of its own on one axis, with a legend naming them."""
    from PIL import Image, ImageDraw, ImageFont  # noqa: PLC0415 (only runs that end draw it)

    v = np.asarray(history, np.float64)  # [epochs, runs]
    points = points or {"": list(range(v.shape[1]))}
    w, h, left, right, top, bottom = 640, 360, 56, 16, 28, 36
    lo, hi = float(v.min()), float(v.max())
    pad = max(hi - lo, 1e-3) * 0.08
    lo, hi = lo - pad, hi + pad
    n = len(v)
    epochs = np.arange(1, n + 1) if n > 1 else np.array([0.5, 1.5])
    v = v if n > 1 else np.repeat(v, 2, axis=0)  # one epoch: flat bands, epoch 1 in the middle
    x = lambda e: left + (e - epochs[0]) / (epochs[-1] - epochs[0]) * (w - left - right)
    y = lambda a: top + (hi - a) / (hi - lo) * (h - top - bottom)
    img = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(img, "RGBA")  # a translucent band blends with those it overlaps
    draw.font = ImageFont.load_default(size=13)  # Pillow's default size runs words together

    xy = lambda curve: [(x(e), y(a)) for e, a in zip(epochs, curve)]  # a curve's points
    band = lambda u: xy(u.max(1)) + xy(u.min(1))[::-1]  # min-max of runs u [epochs, runs]
    groups = [(point, v[:, members]) for point, members in points.items()]
    if len(groups) == 1:
        ((where, u),) = groups
        mean, std = u.mean(1), u.std(1)
        draw.polygon(band(u), fill=(222, 232, 247))
        draw.polygon(xy(mean + std) + xy(mean - std)[::-1], fill=(170, 196, 235))  # mean +- std
        for run in u.T:
            draw.line(xy(run), fill=(150, 150, 150), width=1)
        draw.line(xy(mean), fill=(25, 70, 160), width=3)
        at = f" at {where}" if where else ""
        caption = (
            f"test accuracy of {u.shape[1]} runs{at}: each run (grey), mean (line), +-std and "
            "min-max (bands)"
        )
    else:
        colours = (
            _COLOURS
            if len(groups) <= len(_COLOURS)
            else [  # as many hues as points
                tuple(round(255 * c) for c in colorsys.hsv_to_rgb(i / len(groups), 0.75, 0.8))
                for i in range(len(groups))
            ]
        )
        for (_, u), colour in zip(groups, colours):
            if u.shape[1] > 1:
                draw.polygon(band(u), fill=(*colour, 56))
        for i, ((point, u), colour) in enumerate(zip(groups, colours)):
            draw.line(xy(u.mean(1)), fill=colour, width=2)
            draw.text((left + 8, top + 6 + 15 * i), point, fill=colour)  # the legend
        seeds = max(u.shape[1] for _, u in groups) > 1
        caption = "test accuracy per swept value" + (
            ": mean (line), min-max over its seeds (band)" if seeds else ""
        )
    draw.rectangle([left, top, w - right, h - bottom], outline="black")
    for a in np.linspace(lo + pad, hi - pad, 5):
        draw.text((4, y(a) - 6), f"{a:.3f}", fill="black")
    for e in sorted({1, n, *np.linspace(1, n, 6).round().astype(int).tolist()}):
        draw.text((x(e) - 6, h - bottom + 6), str(e), fill="black")
    draw.text((8, 8), caption, fill="black")
    draw.text((w // 2 - 16, h - 16), "epoch", fill="black")
    return np.asarray(img, np.uint8)
