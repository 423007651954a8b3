"""Many runs in one process: run k of an N-run process equals the single run `config.single_run` describes.

References: separate single runs of the same code path (`num_runs=1`: no vmap, the unstacked layout), whose
own correctness the rest of the suite establishes (timm/torch parity, 1 device == 2 devices, exact resume).
The tolerance is float32 rounding: vmapped products may sum in another order, and AdamW divides by
sqrt(v), so where a gradient is ~0 a rounding difference can move a parameter by up to ~lr (as in
test_steps' two-device test): params agree to 1% of the learning rate.
"""

import re

import jax
import numpy as np
import pytest

from swin_flax import (
    build,
    checkpoints,
    config,
    errors,
    progress,
    reports,
    rundir,
    runs,
    steps,
    stop,
    train,
)
from swin_flax.models import summary
from tests import test_train
from tests.reliability_runs import (
    count_points,
    read_hparams,
    read_scalars,
    read_session_status,
    restore_latest,
)
from tests.test_train import N_TEST, tiny_config

archive = test_train.archive  # the tiny CIFAR-10 archive fixture


def _close(a, b, lr):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-4, atol=0.01 * lr), a, b)


def _slice(tree, k):
    return jax.tree.map(lambda x: np.asarray(x)[k], tree)


def test_run_grid_seeds_sweep_and_names():
    c = config.default_config()
    c.seed, c.num_runs = 5, 2
    c.sweep.learning_rate, c.sweep.weight_decay = (1e-3, 2e-3), (0.05,)
    grid = config.run_grid(c)
    assert [(g["learning_rate"], g["weight_decay"], g["seed"]) for g in grid] == [
        (1e-3, 0.05, 5),
        (1e-3, 0.05, 6),
        (2e-3, 0.05, 5),
        (2e-3, 0.05, 6),
    ]
    assert all(g["data_seed"] == 5 for g in grid)  # one shared stream
    c.per_run_data = True
    assert [g["data_seed"] for g in config.run_grid(c)] == [5, 6, 5, 6]
    names = runs.run_set(c).names
    assert names[1] == "learning_rate=0.001,weight_decay=0.05,seed=6"
    single = config.single_run(c, config.run_grid(c)[3])
    assert (single.num_runs, single.seed, single.learning_rate, single.data_seed) == (1, 6, 2e-3, 6)
    assert not any(single.sweep.values())
    # Distinct values, distinct names, where six digits would not tell them apart.
    c.seed, c.sweep.learning_rate, c.sweep.weight_decay = 10**6, (1e-3, 1.0000001e-3), ()
    assert runs.run_set(c).names == [
        "learning_rate=0.001,seed=1e+06",
        "learning_rate=0.001,seed=1000001",
        "learning_rate=0.0010000001,seed=1e+06",
        "learning_rate=0.0010000001,seed=1000001",
    ]


def test_start_line_names_a_few_of_many_runs_and_a_one_value_sweep():
    c = config.default_config()
    assert runs.run_set(c).describe(False) is None  # a plain run: no line
    c.sweep.learning_rate = (5e-4,)
    assert runs.run_set(c).describe(False) == "run: learning_rate=0.0005 (config.sweep)"
    c.sweep.learning_rate, c.num_runs = (), 200
    line = runs.run_set(c).describe(True)
    assert line.startswith("runs: 200 in one process: seeds (0, 1, 2, ..., 199), ")
    assert "each its own data stream" in line and len(line) < 150


def test_start_line_of_a_sweep_is_its_grid():
    """2 learning rates x 2 seeds (from seed 3): the values once each, not every run's name."""
    c = config.default_config()
    c.seed, c.num_runs, c.sweep.learning_rate = 3, 2, (1e-3, 4e-3)
    assert runs.run_set(c).describe(False) == (
        "runs: 4 in one process: learning_rate (0.001, 0.004) x seeds (3, 4), one shared data "
        "stream; TensorBoard curves in runs/"
    )
    c.num_runs = 1  # one seed: no seeds axis
    assert (
        runs.run_set(c)
        .describe(False)
        .startswith("runs: 2 in one process: learning_rate (0.001, 0.004), one shared")
    )


def test_a_one_value_sweep_s_hparams_row_is_its_run_s_config(tmp_path):
    c = config.default_config()
    c.learning_rate, c.sweep.learning_rate = 1e-3, (5e-4,)
    batch = {"image": np.zeros((1, 2, 8, 8, 3), np.float32)}
    reports.open_writers(c, runs.run_set(c), tmp_path, batch, start=0).close()
    hparams = read_hparams(tmp_path)  # the learning rate the run trains with, no sweep left
    assert (
        hparams["learning_rate"] == pytest.approx(5e-4) and hparams["sweep.learning_rate"] == "()"
    )


def test_spread_summary_and_sweep_points():
    """mean, population std (the runs are all there is), min, max; summary.json's figures per sweep
    point over its seeds."""
    values = [0.5, 0.7, 0.9, 0.3]
    mean = sum(values) / 4
    std = (sum((v - mean) ** 2 for v in values) / 4) ** 0.5
    assert runs.spread(values) == pytest.approx({"mean": 0.6, "std": std, "min": 0.3, "max": 0.9})
    names = ["lr=1,seed=0", "lr=1,seed=1", "lr=2,seed=0", "lr=2,seed=1"]
    assert runs.sweep_points(names) == {"lr=1": [0, 1], "lr=2": [2, 3]}
    assert runs.sweep_points(["seed=0", "seed=1"]) == {"": [0, 1]}
    out = runs.summary(names, values, [1, 2, 3, 4], [0.1, 0.2, 0.3, 0.4], seed=0)
    assert out["sweep"]["lr=2"]["best_test_accuracy"]["mean"] == pytest.approx(0.6)
    assert out["sweep"]["lr=1"]["final_test_accuracy"]["max"] == pytest.approx(0.2)
    assert "sweep" not in runs.summary(["seed=0", "seed=1"], values[:2], [1, 2], [0.1, 0.2], 0)
    # Printed: each point's spread over its seeds (not over the points); with one seed a point's
    # own figures; the best point by its seeds' mean best accuracy: lr=1 (0.6 = 0.6, the first).
    where = {"checkpoints": "checkpoints", "epochs": 4, "steps": 8}
    lines = rundir.summary_lines({**out, **where}, "/w")
    assert lines[:4] == [
        "4 runs (2 seeds per swept value), test accuracy after 4 epochs:",
        "  lr=1: best 0.6000 ± 0.1000 (min 0.5000, max 0.7000), final 0.1500 ± 0.0500 "
        "(min 0.1000, max 0.2000)",
        "  lr=2: best 0.6000 ± 0.3000 (min 0.3000, max 0.9000), final 0.3500 ± 0.0500 "
        "(min 0.3000, max 0.4000)",
        "best: lr=1 (0.6000 ± 0.1000 over 2 seeds), next lr=2 (0.6000 ± 0.3000)",
    ]
    one_seed = runs.summary(["lr=1", "lr=2"], [0.5, 0.7], [1, 2], [0.1, 0.2], seed=7)
    lines = rundir.summary_lines({**one_seed, **where}, "/w")
    assert lines == [
        "2 runs (one per swept value), test accuracy after 4 epochs:",
        "  lr=1: best 0.5000, final 0.1000",
        "  lr=2: best 0.7000, final 0.2000",
        "best: lr=2 (0.7000), next lr=1 (0.5000)",
        "checkpoints in /w/checkpoints (best/ and latest/)",
    ]


def test_summary_json_names_the_best_point_and_each_run_s_numbers():
    """summary.json: the point whose seeds' mean best accuracy is highest (lr=0.004: (0.7 + 0.8)
    / 2 against (0.6 + 0.9) / 2 - 0.01), and each run's seed and swept values as numbers."""
    names = [f"lr={lr},wd=0.05,seed={s}" for lr in ("0.001", "0.004") for s in (1, 1000001)]
    best = [0.6, 0.89, 0.7, 0.8]
    out = runs.summary(names, best, [1, 1, 1, 1], best, seed=1)
    assert out["best_point"] == {"name": "lr=0.004,wd=0.05", "lr": 0.004, "wd": 0.05}
    assert [(r["lr"], r["wd"], r["seed"]) for r in out["runs"]] == [
        (0.001, 0.05, 1),
        (0.001, 0.05, 1000001),
        (0.004, 0.05, 1),
        (0.004, 0.05, 1000001),
    ]
    assert isinstance(out["runs"][1]["seed"], int)
    # One seed per value: the config's seed, which the names leave out.
    one_seed = runs.summary(["lr=1e-05", "lr=0.1"], [0.2, 0.1], [1, 1], [0.2, 0.1], seed=7)
    assert [(r["lr"], r["seed"]) for r in one_seed["runs"]] == [(1e-5, 7), (0.1, 7)]
    assert one_seed["best_point"] == {"name": "lr=1e-05", "lr": 1e-5}
    # Equal means up to float rounding ((0.6 + 0.6021) / 2 == (0.6007 + 0.6014) / 2): the first.
    tie = runs.summary(names, [0.6, 0.6021, 0.6007, 0.6014], [1] * 4, best, seed=1)
    assert tie["best_point"]["lr"] == 0.001
    # One swept value (with seeds): nothing to choose, no best line.
    where = {"checkpoints": "checkpoints", "epochs": 4, "steps": 8}
    lines = rundir.summary_lines(
        {**runs.summary(names[:2], best[:2], [1, 1], best[:2], 1), **where}, "/w"
    )
    assert not any(line.startswith("best:") for line in lines)


def test_a_short_sweep_is_warned_of_in_a_run_s_own_learning_rate(monkeypatch):
    """A sweep that stops in its warmup: the warning quotes a run's learning rate (warmup 2e-4 ->
    1e-3: the last step of epoch 1 of 5, per epoch, trains at 2e-4), not the config's 2e-3, which
    no run trains with."""
    c = config.default_config()
    c.model.update(embed_dim=16, depths=(2, 1), num_heads=(2, 4), window_size=4)
    c.update(num_epochs=1, warmup_epochs=5, schedule="cosine_epoch", learning_rate=2e-3)
    c.warmup_lr_init, c.sweep.learning_rate = 2e-4, (1e-3, 5e-3)
    warnings = []
    monkeypatch.setattr(reports.logging, "warning", lambda msg, *a: warnings.append(msg % a))
    model = build.model_from_config(c)
    reports.log_start(c, runs.run_set(c), model, 0, 10, "/tmp/unused")
    (warning,) = warnings
    assert warning.startswith("run learning_rate=0.001 (the first of 2): the schedule is laid")
    assert "learning rate is 0.0002 (still in the warmup; learning_rate 0.001," in warning


@pytest.mark.parametrize("epochs", [1, 3])
def test_band_plot_fills_its_frame_from_the_first_epoch(epochs):
    """The min-max band spans the plot's width whatever the number of epochs (one epoch: flat)."""
    history = [[0.2 + 0.1 * e, 0.4 + 0.1 * e, 0.3 + 0.1 * e] for e in range(epochs)]
    image = runs.spread_plot(history)
    band = np.all(image == (222, 232, 247), axis=-1)  # the min-max band's colour
    columns = np.flatnonzero(band.any(axis=0))
    assert columns.min() < 70 and columns.max() > 610  # the frame: x from 56 to 624


def test_comparison_plot_draws_each_swept_value_on_one_axis():
    """lr=1's seeds at 0.2 and 0.3, lr=2's one seed at 0.8: two mean lines in their own colours,
    lr=1's below lr=2's on the shared axis, lr=1's band between its seeds, none for lr=2's."""
    history = [[0.2, 0.3, 0.8]] * 3
    image = runs.spread_plot(history, {"lr=1": [0, 1], "lr=2": [2]})
    column = image[:, 600]  # right of the legend, inside the frame (x from 56 to 624)
    rows = [np.flatnonzero(np.all(column == c, axis=-1)) for c in ((31, 119, 180), (255, 127, 14))]
    assert rows[0].size and rows[1].size and rows[0].min() > rows[1].max() + 100
    white = np.all(column == 255, axis=-1)
    assert not white[rows[0].min() - 10 : rows[0].max() + 10].any()  # lr=1's band: 0.1 is ~42 px
    assert white[rows[1].min() - 10 : rows[1].min()].all()  # one seed: a line alone


def test_a_sweep_s_epoch_line_and_plots_are_per_swept_value(tmp_path, capsys):
    """2 learning rates x 2 seeds: the epoch line gives each rate's mean±std over its seeds (0.60,
    0.66 -> 0.6300±0.0300; 0.54, 0.58 -> 0.5600±0.0200); a plot of both rates beside each rate's,
    also in TensorBoard. One seed per rate: the plot of both rates still, the line each run's."""
    c = config.default_config()
    c.num_runs, c.sweep.learning_rate = 2, (1e-3, 4e-3)
    batch = {"image": np.zeros((1, 2, 8, 8, 3), np.float32)}
    writers = reports.open_writers(c, runs.run_set(c), tmp_path, batch, start=0)
    acc, four = np.array([0.60, 0.66, 0.54, 0.58]), np.ones(4)
    timing = {"epoch_time": 2.0, "images_per_sec": 9.0}
    train = {"loss": four, "accuracy": four}
    reports.report_epoch(
        c, writers, 1, 4, train, {"loss": four, "accuracy": acc}, four, acc, four > 0, timing
    )
    writers.spread_plot(4, [acc.tolist()])
    writers.close()
    assert capsys.readouterr().out.startswith(
        "epoch 1/300  test acc learning_rate=0.001 0.6300±0.0300 | learning_rate=0.004 "
        "0.5600±0.0200 | 2.0s 9 img/s x 4 runs (4 improved)"
    )
    plots = sorted(p.name for p in (tmp_path / "runs").glob("*.png"))
    assert plots == [
        "test_accuracy.png",
        "test_accuracy_learning_rate=0.001.png",
        "test_accuracy_learning_rate=0.004.png",
    ]
    assert count_points(tmp_path)[("test_accuracy_spread", 4)] == 1  # the root's: both rates

    c.num_runs = 1
    writers = reports.open_writers(c, runs.run_set(c), tmp_path / "one", batch, start=0)
    two = np.ones(2)
    reports.report_epoch(
        c, writers, 1, 4, train, {"loss": two, "accuracy": acc[:2]}, two, acc[:2], two > 0, timing
    )
    writers.spread_plot(4, [acc[:2].tolist()])
    writers.close()
    assert "test acc learning_rate=0.001 0.6000 | learning_rate=0.004 0.6600 | " in (
        capsys.readouterr().out
    )
    assert [p.name for p in (tmp_path / "one" / "runs").glob("*.png")] == ["test_accuracy.png"]


@pytest.mark.slow  # compiles and trains
@pytest.mark.parametrize("per_run_data", [False, True])
def test_three_runs_step_equals_three_single_steps(archive, per_run_data):
    """Three runs (three seeds) vmapped inside the step pmapped over 2 devices, 3 AdamW steps, against
    each run's own single-run state and step on the same batches."""
    c = tiny_config(archive)
    c.num_runs, c.per_run_data = 3, per_run_data
    model = build.model_from_config(c)
    run_set = runs.run_set(c)
    rng = np.random.default_rng(0)

    def batch():
        labels = rng.integers(0, 10, 16).astype(np.int32)
        return {
            "image": rng.normal(size=(2, 8, 32, 32, 3)).astype(np.float32),
            "label": labels.reshape(2, 8),
            "target": np.eye(10, dtype=np.float32)[labels].reshape(2, 8, 10),
        }

    batches = [[batch() for _ in range(3)] for _ in range(3 if per_run_data else 1)]
    state, *_ = train.initial_state(c, run_set, model, 4, None, None)
    step = build.pmap_train_step(3, per_run_data)
    _, keys = run_set.keys()
    state = steps.replicate(state)
    for i in range(3):
        b = batches[0][i]
        if per_run_data:  # run axis after the device axis, as train._train_batches stacks it
            b = jax.tree.map(lambda *xs: np.stack(xs, axis=1), *(bs[i] for bs in batches))
        state, _ = step(state, b, keys)
    many = jax.device_get(steps.unreplicate(state.params))
    for k, single_config in enumerate(run_set.configs):
        single_set = runs.run_set(single_config)
        s, *_ = train.initial_state(single_config, single_set, model, 4, None, None)
        s = steps.replicate(s)
        single_step = build.pmap_train_step()
        for i in range(3):
            s, _ = single_step(s, batches[k if per_run_data else 0][i], single_set.keys()[1])
        _close(_slice(many, k), jax.device_get(steps.unreplicate(s.params)), c.learning_rate)
    assert not np.allclose(many["head"]["kernel"][0], many["head"]["kernel"][1])  # seeds differ


@pytest.mark.slow  # compiles and trains
def test_sweep_with_seeds_equals_separate_runs_through_a_stop(tmp_path, archive, monkeypatch):
    """2 learning rates x 2 seeds in one process, stopped mid-epoch (as SIGTERM does) and resumed, against
    its run seed=1 at lr 3e-3 trained alone and uninterrupted: params, per-epoch test accuracies, summary."""
    c = tiny_config(archive, epochs=2)
    c.num_runs, c.sweep.learning_rate = 2, (1e-3, 3e-3)
    # Stops at step 1, before the first per-run write (log_every_steps 2), and at step 6 (step 2
    # of 4 in epoch 2: best/ of epoch 1 is read back when resuming).
    stop_at = {1, 6}
    requested = stop.StopFlag.requested
    monkeypatch.setattr(
        stop.StopFlag,
        "requested",
        lambda self, step=None: step in stop_at or requested(self, step),
    )
    for _ in range(2):
        with pytest.raises(errors.Preempted):
            train.train_and_evaluate(c, str(tmp_path / "many"))
    stop_at.clear()
    result = train.train_and_evaluate(c, str(tmp_path / "many"))
    many_state, meta = restore_latest(tmp_path / "many")
    names = runs.run_set(c).names
    assert meta["runs"] == names and len(meta["history"]) == 2
    assert result["num_runs"] == 4 and set(result["sweep"]) == {
        "learning_rate=0.001",
        "learning_rate=0.003",
    }
    # summary.json: each run's numbers; the best rate by its seeds' mean best accuracy (a tie: the
    # first), from the runs' own figures.
    grid = [(lr, c.seed + k) for lr in (1e-3, 3e-3) for k in (0, 1)]
    assert [(r["learning_rate"], r["seed"]) for r in result["runs"]] == grid
    bests = [r["best_test_accuracy"] for r in result["runs"]]
    means = {1e-3: np.mean(bests[:2]), 3e-3: np.mean(bests[2:])}
    best_lr = max(means, key=means.get)
    assert result["best_point"] == {"name": f"learning_rate={best_lr:g}", "learning_rate": best_lr}
    for k in (3,):  # seed 1 (seed offset 1) at lr 3e-3 (the second swept value)
        single = config.single_run(c, config.run_grid(c)[k])
        alone = train.train_and_evaluate(single, str(tmp_path / f"single{k}"))
        state, _ = restore_latest(tmp_path / f"single{k}")
        _close(_slice(many_state["params"], k), state["params"], single.learning_rate)
        # best/: each run's params at its own best epoch, as the run alone keeps its best
        many_best, best_meta = restore_latest(tmp_path / "many", "best")
        alone_best, _ = restore_latest(tmp_path / f"single{k}", "best")
        assert best_meta["best_epoch"][k] == alone["best_epoch"]
        _close(_slice(many_best["params"], k), alone_best["params"], single.learning_rate)
        for tag in ("test_accuracy", "test_top5_accuracy"):
            curve = read_scalars(tmp_path / "many" / "runs" / names[k])[tag]
            np.testing.assert_allclose(
                [curve[s] for s in sorted(curve)],
                [v for _, v in sorted(read_scalars(tmp_path / f"single{k}")[tag].items())],
                atol=1.01 / N_TEST,  # at most one test image on the other side of a near-tie
            )
        row = result["runs"][k]
        assert row["name"] == names[k]
        assert abs(row["final_test_accuracy"] - alone["final_test_accuracy"]) <= 1.01 / N_TEST
    assert summary.count_params(many_state["params"]) == 4 * summary.count_params(state["params"])
    _check_tensorboard(tmp_path / "many", names)


def _check_tensorboard(workdir, names: list[str]) -> None:
    """2 learning rates x 2 seeds: each run's own hyper-parameters (a row each in the HParams tab,
    none at the root) and best test accuracy; each learning rate's seeds aggregated on their own,
    the learning rate (the same for them) left out; a band plot for each."""
    assert read_hparams(workdir) is None  # the process's own config is no run's row
    for folder in (
        workdir,
        *(workdir / "runs").glob("*"),
        *(workdir / "runs" / "aggregate").glob("*"),
    ):
        # Over three sessions: no tag twice at one step, each run's hyper-parameters once.
        assert max(count_points(folder).values(), default=1) == 1, folder
    for name in names:
        hparams = read_hparams(workdir / "runs" / name)
        lr, seed = (float(part.split("=")[1]) for part in name.split(","))
        assert hparams["learning_rate"] == pytest.approx(lr) and hparams["seed"] == seed
        assert hparams["num_runs"] == 1
        assert read_session_status(workdir / "runs" / name) == "STATUS_SUCCESS"
    curves = {n: read_scalars(workdir / "runs" / n) for n in names}
    for curve in curves.values():
        acc = [curve["test_accuracy"][s] for s in sorted(curve["test_accuracy"])]
        best = [curve["best_test_accuracy"][s] for s in sorted(curve["best_test_accuracy"])]
        np.testing.assert_allclose(best, np.maximum.accumulate(acc))
    assert sorted(p.name for p in (workdir / "runs" / "aggregate").iterdir()) == [
        "learning_rate=0.001",
        "learning_rate=0.003",
    ]
    for point, members in (("learning_rate=0.001", names[:2]), ("learning_rate=0.003", names[2:])):
        aggregate = read_scalars(workdir / "runs" / "aggregate" / point)
        assert not any(tag.startswith("learning_rate/") for tag in aggregate)
        for step, mean in aggregate["test_accuracy/mean"].items():
            seeds = [curves[n]["test_accuracy"][step] for n in members]
            assert mean == pytest.approx(np.mean(seeds))
            assert aggregate["test_accuracy/max"][step] == pytest.approx(max(seeds))
        assert (workdir / "runs" / f"test_accuracy_{point}.png").is_file()
    assert (workdir / "runs" / "test_accuracy.png").is_file()  # both learning rates on one axis


@pytest.mark.slow  # initialises the runs
def test_a_start_that_fails_in_its_first_step_leaves_no_run_folders(tmp_path, archive, monkeypatch):
    """Out of memory in the first step of many runs (a stand-in error): no runs/<name>/ folders of
    runs that never trained, which TensorBoard would show as rows without curves next to those of
    the smaller run set started next in the workdir."""

    def failing_step(*args):
        raise RuntimeError("RESOURCE_EXHAUSTED: a stand-in")

    monkeypatch.setattr(build, "pmap_train_step", lambda *a, **k: failing_step)
    c = tiny_config(archive, epochs=1)
    c.num_runs = 3
    with pytest.raises(RuntimeError, match="RESOURCE_EXHAUSTED"):
        train.train_and_evaluate(c, str(tmp_path / "w"))
    assert (tmp_path / "w" / "config.json").is_file() and not (tmp_path / "w" / "runs").exists()


@pytest.mark.slow  # compiles and trains
def test_a_diverging_run_stops_the_process_naming_it(tmp_path, archive):
    """The first epoch is warmup, at warmup_lr_init: 1e30 there makes one run's loss inf within steps."""
    c = tiny_config(archive, epochs=1)
    c.num_runs, c.sweep.warmup_lr_init = 2, (1e-4, 1e30)
    with pytest.raises(
        errors.TrainingDiverged, match=r"run warmup_lr_init=1e\+30,seed=\d: the training"
    ) as e:
        train.train_and_evaluate(c, str(tmp_path / "nan"))
    assert str(e.value).endswith(  # not "the same command": it would diverge again
        "No checkpoint was written yet. Drop or lower the swept value that run names (config.sweep); "
        "then start again with a new --workdir, as a resumed run keeps its runs."
    )


def test_sweep_refuses_shape_fields_and_names_bad_values():
    c = config.default_config()
    c.dataset = "synthetic"
    with c.unlocked():
        c.sweep.embed_dim = (96, 128)
    with pytest.raises(errors.ConfigError, match=r"config\.sweep\.embed_dim: only learning_rate"):
        config.validate(c)
    # A near miss of a sweepable name gets a guess; a real field that is not sweepable does not.
    assert "(did you mean weight_decay?)" in config.not_sweepable("weightdecay")
    assert "did you mean" not in config.not_sweepable("layer_decay")
    c = config.default_config()
    c.dataset = "synthetic"
    c.sweep.weight_decay = (0.05, -1.0)
    with pytest.raises(
        errors.ConfigError, match=r"config\.sweep\.weight_decay: -1\.0 must be >= 0\.$"
    ):
        config.validate(c)
    # No Python literal on the command line ('(nan,1e-3)') arrives as a 1-tuple of its text.
    for values, shown in [
        (("(nan,1e-3)",), "'(nan,1e-3)'"),
        ((float("nan"), 1e-3), "(nan, 0.001)"),
        ((10**400, 1e-3), f"({10**400}, 0.001)"),  # no float holds it (was an OverflowError)
    ]:
        c.sweep.weight_decay = values
        with pytest.raises(
            errors.ConfigError, match=rf"distinct finite numbers.*got {re.escape(shown)}\.$"
        ):
            config.validate(c)
    c.sweep.weight_decay = (0.05,)
    c.num_runs = 0
    with pytest.raises(errors.ConfigError, match=r"config\.num_runs: must be a positive integer"):
        config.validate(c)


@pytest.mark.parametrize(
    "runs_before, change, expected",
    [
        (2, {"num_runs": 3}, r"\(num_runs=3\)\. .* pass --config\.num_runs=2 to resume"),
        (2, {"num_runs": 1}, r"\(num_runs=1\)\. .* pass --config\.num_runs=2 to resume"),
        (
            2,
            {"sweep.learning_rate": (5e-4, 1e-3)},
            r"\(sweep\.learning_rate='\(0\.0005,0\.001\)'\).* --config\.sweep\.learning_rate='\(\)'",
        ),
        (2, {"per_run_data": True}, r"pass --config\.per_run_data=False to resume"),
        # One run: its seed draws the dropout, and (data_seed unset) the data order too: the seed
        # alone is named, the data seed following it.
        (1, {"seed": 1}, r"\(seed=1\)\. .* pass --config\.seed=0 to resume"),
        (1, {"data_seed": 7}, r"\(data_seed=7\).* pass --config\.data_seed=0 to resume"),
        (1, {"grad_clip_norm": 1.0}, r"\(grad_clip_norm=1\.0\).* --config\.grad_clip_norm=0\.0 to"),
        (
            1,
            {"schedule": "cosine_step", "learning_rate": 2e-3},
            r"learning_rate=0\.002, schedule=cosine_step",
        ),
        # Another config file, likely: the settings are counted and the first named, not listed
        # as flags.
        (
            1,
            dict(
                seed=1, learning_rate=2e-3, warmup_epochs=1, b1=0.8, batch_size=64, b2=0.9, eps=1e-6
            ),
            r"this config's: 7 differ \(b1, b2, batch_size, eps, \.\.\.; .*config\.txt lists the "
            r"run's\)\. .*started: take its config, evaluate\.load_run_config\('.*'\), as it "
            r"last ran from Python; or a new --workdir",
        ),
    ],
)
def test_resuming_with_other_seeds_runs_or_recipe_is_refused(
    tmp_path, runs_before, change, expected
):
    """A resumed run continues its runs (the params are stacked in their order) and each run's
    random streams; another run set or seed is refused, naming the flags that resume it."""
    c = config.default_config()
    c.dataset, c.num_runs = "synthetic", runs_before
    record = progress.Progress(runs_before).record(c, 1, 4, 4, 0.0)
    ckpts = checkpoints.Checkpoints(tmp_path)
    ckpts.save("latest", 4, {"step": np.zeros(runs_before, np.int32)}, record)
    ckpts.close()
    rundir.write_config(c, tmp_path)  # the config the run started with
    assert rundir.inspect(c, tmp_path)[0]["step"] == 4  # the same config resumes
    c.per_run_data = True  # no effect on one run: resumes; on several it is refused below
    if runs_before == 1:
        assert rundir.inspect(c, tmp_path)[0]["step"] == 4
    for field, value in change.items():
        (c.sweep if field.startswith("sweep.") else c)[field.rsplit(".")[-1]] = value
    c.per_run_data = change.get("per_run_data", False)
    with pytest.raises(errors.ConfigError, match=expected):
        rundir.inspect(c, tmp_path)
