"""End to end: a tiny config on a tiny CIFAR-10 archive (genuine binary format) trains, writes TensorBoard
events and checkpoints, and a second run with more epochs resumes where the first stopped."""

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import types

import jax
import numpy as np
import pytest

from swin_flax import checkpoints, errors, evaluate, reports, rundir, stop, train
from swin_flax.config import default_config
from tests import cifar_files
from tests.reliability_runs import (
    count_points,
    read_hparams,
    read_scalars,
    read_session_status,
)
from tests.test_bad_input import no_compiles, snapshot

N_TRAIN, N_TEST, BATCH = 64, 40, 16


def tiny_config(archive, epochs=2):
    c = default_config()
    c.dataset = "cifar10"
    c.archive = str(archive)
    c.model.update(
        embed_dim=16,
        depths=(2, 1),
        num_heads=(2, 4),
        window_size=4,
        mlp_ratio=2.0,
        drop_path_rate=0.1,
    )
    c.remat = "none"  # stages this shallow are not scanned: 'none' compiles faster (test_swin)
    c.randaugment = "rand-m9-mstd0.5"
    c.mix.cutmix_alpha = 1.0
    c.mix.switch_prob = 0.0
    c.normalize_mean = (0.0, 0.0, 0.0)
    c.normalize_std = (1.0, 1.0, 1.0)
    c.schedule = "cosine_epoch"
    c.warmup_epochs = 1
    c.warmup_lr_init = 1e-4
    c.cosine_epochs = 3
    c.batch_size = BATCH
    c.eval_batch_size = BATCH
    c.num_epochs = epochs
    c.log_every_steps = 2
    return c


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    d = tmp_path_factory.mktemp("cifar")
    return cifar_files.cifar10_binary_tarball(
        d / "cifar-10-binary.tar.gz",
        cifar_files.random_split(N_TRAIN, seed=1),
        cifar_files.random_split(N_TEST, seed=2),
    )


def test_train_then_resume(tmp_path, archive, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative --workdir, as users type it
    workdir = tmp_path / "run"
    steps_per_epoch = N_TRAIN // BATCH

    summary = train.train_and_evaluate(tiny_config(archive, epochs=2), "run")
    assert summary["steps"] == 2 * steps_per_epoch
    assert summary["sessions"] == 1 and summary["trained_images"] == 2 * steps_per_epoch * BATCH
    scalars = read_scalars(workdir)
    # Every scalar at the global step (flax's convention); the epoch is a scalar of its own.
    ends = {steps_per_epoch, 2 * steps_per_epoch}
    assert scalars["epoch"] == {steps_per_epoch: 1.0, 2 * steps_per_epoch: 2.0}
    per_epoch = {
        "train_loss",
        "train_accuracy",
        "test_loss",
        "test_accuracy",
        "test_top5_accuracy",
        "best_test_accuracy",
        "epoch_time",
        "images_per_sec",
        "steps_per_sec",
        "eval_time",
    }
    for tag in per_epoch:
        assert set(scalars[tag]) == ends, tag
    # Every tag, so that a metric added to the loop is added here (and to README's workdir table);
    # session_end_info: the HParams tab's status.
    others = {"epoch", "train_loss_step", "learning_rate", "_hparams_/session_end_info"}
    assert set(scalars) == per_epoch | others
    logged = set(range(2, 2 * steps_per_epoch + 1, 2))  # every log_every_steps
    assert set(scalars["train_loss_step"]) == logged
    assert max(count_points(workdir).values()) == 1  # no tag written twice at one step
    # TensorBoard's HParams tab: the run's config (unset fields left out, the data seed resolved).
    hparams = read_hparams(workdir)
    assert hparams["data_seed"] == hparams["seed"] == 0 and "pretrained" not in hparams
    assert hparams["model.depths"] == "(2, 1)" and hparams["learning_rate"] == pytest.approx(1e-3)
    assert read_session_status(workdir) == "STATUS_SUCCESS"  # the run finished its epochs
    # The test accuracy is a fraction of the 40 test images; the best is its running maximum.
    for acc in scalars["test_accuracy"].values():
        assert abs(acc * N_TEST - round(acc * N_TEST)) < 1e-4
    test_acc = [scalars["test_accuracy"][s] for s in sorted(ends)]
    best = [scalars["best_test_accuracy"][s] for s in sorted(ends)]
    np.testing.assert_allclose(best, np.maximum.accumulate(test_acc))
    # Speed over the steps timed: epoch 1's first step compiles and is left out.
    for s, timed in (
        (steps_per_epoch, steps_per_epoch - 1),
        (2 * steps_per_epoch, steps_per_epoch),
    ):
        assert scalars["steps_per_sec"][s] == pytest.approx(timed / scalars["epoch_time"][s])
        assert scalars["images_per_sec"][s] == pytest.approx(
            timed * BATCH / scalars["epoch_time"][s]
        )
        assert 0 < scalars["eval_time"][s] < 60
    # The learning rate every log_every_steps and at each epoch's end: the rate of the step just
    # done, warmup_lr_init through epoch 1 (per-epoch schedule), then learning_rate.
    lr = scalars["learning_rate"]
    assert set(lr) == logged | ends
    np.testing.assert_allclose([lr[s] for s in sorted(lr)], [1e-4, 1e-4, 1e-3, 1e-3], rtol=1e-6)

    # The same command again: the finished run's summary, nothing read, compiled or written.
    before = snapshot(workdir)
    with no_compiles():
        again = train.train_and_evaluate(tiny_config(archive, epochs=2), "run")
    assert snapshot(workdir) == before
    # It is the summary the run printed when it finished (both from its last checkpoint's record).
    assert again == summary

    ckpts = checkpoints.Checkpoints(workdir, read_only=True)
    assert ckpts.latest_step("latest") == 2 * steps_per_epoch
    assert ckpts.latest_step("best") in (steps_per_epoch, 2 * steps_per_epoch)
    best = checkpoints.series_dir(workdir, "best") / str(ckpts.latest_step("best"))
    best_meta = checkpoints.read_step(best, meta_only=True)[1]
    assert best_meta["test_accuracy"] == pytest.approx(max(scalars["test_accuracy"].values()))
    assert (workdir / "config.txt").exists()
    assert json.loads((workdir / "config.json").read_text())["num_epochs"] == 2

    # Extended, its session lost before its end: until the run has trained its new epochs, no
    # summary.json (that of 2 epochs is gone) and no HParams status (it has not ended).
    with monkeypatch.context() as m:
        m.setattr(train, "train_epoch", lambda *a: (_ for _ in ()).throw(RuntimeError("killed")))
        with pytest.raises(RuntimeError, match="killed"):
            train.train_and_evaluate(tiny_config(archive, epochs=3), "run")
    assert not (workdir / "summary.json").exists() and read_session_status(workdir) is None
    summary = train.train_and_evaluate(tiny_config(archive, epochs=3), "run")
    assert max(count_points(workdir).values()) == 1  # the run's end recorded once
    assert read_session_status(workdir) == "STATUS_SUCCESS"
    assert summary["steps"] == 3 * steps_per_epoch
    # summary.json covers both sessions.
    assert summary["sessions"] == 2 and summary["trained_images"] == 3 * steps_per_epoch * BATCH
    assert json.loads((workdir / "summary.json").read_text())["sessions"] == 2
    scalars = read_scalars(workdir)
    assert scalars["epoch"][3 * steps_per_epoch] == 3.0

    # The evaluate entry point scores the best checkpoint on every test image.
    _, best = evaluate.resolve_checkpoint(str(workdir), None)
    params, meta = evaluate.load_params(best)
    result = evaluate.evaluate_checkpoint(evaluate.load_run_config(workdir), [params])
    assert result["num_examples"] == N_TEST
    assert result["accuracy"] == pytest.approx(meta["test_accuracy"], abs=1e-6)
    assert result["confusion"].sum() == N_TEST


def _round_to_bfloat16(x: np.ndarray) -> np.ndarray:
    """float32 -> the nearest bfloat16 (ties to even), as float32: the top 16 bits of the word."""
    bits = np.asarray(x, np.float32).view(np.uint32)
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> 16) & 1)) & np.uint32(0xFFFF0000)
    return rounded.view(np.float32)


def test_best_params_in_bfloat16(tmp_path, archive):
    """best_params_dtype='bfloat16': best/ holds the params as bfloat16 (half the bytes), which
    evaluate reads back as float32; latest/ keeps them exact. After one epoch both are its end."""
    c = tiny_config(archive, epochs=1)
    c.best_params_dtype = "bfloat16"
    train.train_and_evaluate(c, str(tmp_path / "run"))
    step = str(N_TRAIN // BATCH)
    best, latest = (tmp_path / "run" / "checkpoints" / s / step for s in ("best", "latest"))
    saved, _ = checkpoints.read_step(best)
    assert {str(x.dtype) for x in jax.tree.leaves(saved["params"])} == {"bfloat16"}
    exact, _ = checkpoints.read_step(latest)
    assert {str(x.dtype) for x in jax.tree.leaves(exact["params"])} == {"float32"}
    params, _ = evaluate.load_params(best)
    expected = jax.tree.map(_round_to_bfloat16, exact["params"])
    jax.tree.map(np.testing.assert_array_equal, params, expected)
    assert all(x.dtype == np.float32 for x in jax.tree.leaves(params))


def test_a_stop_between_two_loss_points_keeps_the_steps_before_it(tmp_path, archive, monkeypatch):
    """Stopped after step 3 (train_loss_step is written every 2 steps) and resumed: the point at
    step 4 averages steps 3 and 4 as the uninterrupted run's does, bit for bit (CPU)."""
    train.train_and_evaluate(tiny_config(archive, epochs=1), str(tmp_path / "ref"))
    requested = stop.StopFlag.requested
    stop_at = {3}
    monkeypatch.setattr(
        stop.StopFlag,
        "requested",
        lambda self, step=None: step in stop_at or requested(self, step),
    )
    with pytest.raises(errors.Preempted):
        train.train_and_evaluate(tiny_config(archive, epochs=1), str(tmp_path / "run"))
    stop_at.clear()
    train.train_and_evaluate(tiny_config(archive, epochs=1), str(tmp_path / "run"))
    ref, run = (read_scalars(tmp_path / d)["train_loss_step"] for d in ("ref", "run"))
    assert ref == run and set(run) == {2, 4}


@pytest.mark.parametrize("evaluation", [1, 2])
def test_a_signal_during_an_evaluation_says_so_and_after_the_last_step_lets_the_run_finish(
    tmp_path, archive, monkeypatch, evaluation
):
    """SIGTERM during an epoch's evaluation: the line says the evaluation finishes first (not 'this
    step', which has run). During the first of two epochs' the run stops there (exit 75's
    Preempted, at the epoch's end); during the last, after the run's last step, nothing is left to
    stop, so the run finishes (its summary, its final checkpoint) and a warning says the signal
    did not stop it."""
    evaluate_params, calls = train.evaluate_params, []

    def evaluate_then_signal(*args, **kwargs):
        calls.append(None)
        if len(calls) == evaluation:
            os.kill(os.getpid(), signal.SIGTERM)  # the loop's handler takes it
        return evaluate_params(*args, **kwargs)

    monkeypatch.setattr(train, "evaluate_params", evaluate_then_signal)
    warnings = []
    monkeypatch.setattr(train.logging, "warning", lambda msg, *a: warnings.append(msg % a))
    if evaluation == 1:
        with pytest.raises(
            errors.Preempted, match=r"stopped at global step \d+ \(the end of epoch 1\)"
        ):
            train.train_and_evaluate(tiny_config(archive, epochs=2), str(tmp_path / "run"))
        assert [w for w in warnings if "SIGTERM" in w] == [
            "Received SIGTERM: stopping after this evaluation and saving."
        ]
        return
    summary = train.train_and_evaluate(tiny_config(archive, epochs=2), str(tmp_path / "run"))
    assert summary["epochs"] == 2 and summary["steps"] == 2 * (N_TRAIN // BATCH)
    assert [w for w in warnings if "SIGTERM" in w] == [
        "Received SIGTERM: stopping after this evaluation and saving.",
        "SIGTERM came in the run's last steps: it finished instead of stopping.",
    ]


def test_stop_flag_makes_hosts_agree_only_every_sync_every_steps(monkeypatch, tmp_path):
    """With several processes the stop flag all-gathers (a host sync) only at multiples of
    sync_every and at epoch ends; a signal on another host stops this one at the next of those."""
    from jax.experimental import multihost_utils

    gathered = []

    def allgather(x):  # another host was signalled
        gathered.append(bool(x))
        return np.array([bool(x), True])

    monkeypatch.setattr(jax, "process_count", lambda: 2)
    monkeypatch.setattr(multihost_utils, "process_allgather", allgather)
    flag = stop.StopFlag(tmp_path, sync_every=4)
    assert [flag.requested(step) for step in range(1, 9)] == [False] * 3 + [True] + [False] * 3 + [
        True
    ]
    assert gathered == [False, False]
    assert flag.requested() and len(gathered) == 3  # the epoch's end always compares notes


def test_a_signal_to_one_of_several_processes_says_when_they_stop(tmp_path, monkeypatch, caplog):
    """With several processes a signal stops the run at their next check (every log_every_steps
    steps), not after this step: the line says so; one process keeps its wording."""
    for processes, said in (
        (2, "stopping after the processes' next check, within 50 steps (log_every_steps), and"),
        (1, "stopping after this step and saving."),
    ):
        monkeypatch.setattr(jax, "process_count", lambda n=processes: n)
        caplog.clear()
        with caplog.at_level("WARNING", "absl"), stop.StopFlag(tmp_path, sync_every=50) as flag:
            flag._handle(signal.SIGTERM, None)
        assert f"Received SIGTERM: {said}" in caplog.text, caplog.text


def test_a_second_signal_says_the_checkpoint_it_keeps(tmp_path):
    """A second signal while stopping ends at once; its line says the last complete checkpoint is
    kept when the run has one, and that the run starts afresh when it has none. It is said once
    the checkpoints are closed, as the loop closes them: a save still being written when the
    signal came (here step 4) is the checkpoint kept."""
    for saved, expected in (
        (False, "no checkpoint was written yet"),
        (True, "the last complete checkpoint is kept"),
    ):
        ckpts = checkpoints.Checkpoints(tmp_path / str(saved))
        message = f"a second SIGTERM while stopping: {expected}"
        with (
            pytest.raises(KeyboardInterrupt, match=message),
            stop.StopFlag(ckpts.root / "latest") as flag,
            contextlib.closing(ckpts),
        ):
            flag._handle(signal.SIGTERM, None)  # the first: stop after this step, and save
            if saved:
                ckpts.save("latest", 4, {"step": np.int32(4)}, {"step": 4})
            flag._handle(signal.SIGTERM, None)


def test_a_second_signal_to_one_of_several_processes_says_all_commands(tmp_path, monkeypatch):
    """With several processes a run is started afresh (as resumed) by every process's command."""
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    with (
        pytest.raises(KeyboardInterrupt, match="run the same commands again, on every process, to"),
        stop.StopFlag(tmp_path / "latest") as flag,
    ):
        flag._handle(signal.SIGTERM, None)
        flag._handle(signal.SIGTERM, None)


def test_epoch_time_leaves_out_the_compile(monkeypatch):
    """Fake clock and step: the session's first step takes 100 s (the compile), the others 2 s
    each. Its epoch is timed over its 3 other steps (6 s, 3 steps: the images/s the epoch line
    and TensorBoard show); an epoch whose only step compiles keeps it; later epochs time them all."""

    class Metrics:  # what steps.unreplicate and the loop need of clu's collection
        def __getitem__(self, _):
            return self

        def merge(self, _):
            return self

    clock = [0.0]
    monkeypatch.setattr(train.time, "time", lambda: clock[0])

    def step_fn(state, batch, keys):
        clock[0] += 100.0 if state == "fresh" else 2.0
        return "compiled", Metrics()

    no_stop = type("NoStop", (), {"requested": lambda self, step=None: False})()
    ticker = reports.Ticker(1e9, 16, 4, 8)
    config = default_config()
    config.log_every_steps = 1000
    loop = train.Session(
        config=config,
        workdir=None,
        t_start=0.0,
        per_epoch=4,
        start=0,
        names=["run"],
        p_train_step=step_fn,
        dropout_keys=None,
        lr_fns=[],
        p_eval_step=None,
        eval_batches=None,
        ckpts=None,
        writers=None,
        ticker=ticker,
        profile=None,
        stop=no_stop,
        claim=None,
    )
    batches = iter(range(100))
    out = train.train_epoch(loop, "fresh", batches, 0, 0)
    assert out[2:4] == (4, (6.0, 3))
    out = train.train_epoch(loop, "compiled", batches, 4, 1)
    assert out[2:4] == (8, (8.0, 4))
    out = train.train_epoch(dataclasses.replace(loop, start=7), "fresh", batches, 7, 1)
    assert out[2:4] == (8, (100.0, 1))  # a resume at the epoch's last step: nothing else to time


def test_progress_line_every_30_seconds_with_rates_and_etas(monkeypatch, caplog):
    """Steps at 0.5 s each (fake clock): a line every 30 s of training, with steps/s, images/s and
    the ETAs computed from them (epoch: 100 steps; run: 1,000 steps; batch 64)."""
    clock = [1000.0]
    monkeypatch.setattr(reports.time, "time", lambda: clock[0])
    lines = []
    monkeypatch.setattr(reports.logging, "info", lambda fmt, *args: lines.append(fmt % args))
    progress = reports.Ticker(30.0, 64, 100, 1000)
    progress.restart(0)
    rates = []
    for step in range(1, 151):
        clock[0] += 0.5
        rate = progress(step)
        if rate is not None:
            rates.append((step, rate))
    assert [s for s, _ in rates] == [60, 120]  # every 30 s
    assert all(r == pytest.approx(2.0) for _, r in rates)
    # Step 60: 40 steps left in epoch 1 (20 s), 940 in the run (470 s = 7m50s).
    assert (
        lines[0] == "epoch 1: step 60/100  2.00 steps/s  128 images/s  ETA epoch 0m20s, run 7m50s"
    )
    assert lines[1].startswith("epoch 2: step 20/100")
    # At an epoch's last step the line still names that epoch; the run's ETA adds, per epoch left,
    # the time the last epoch spent outside its steps (evaluation, checkpoints).
    lines.clear()
    ticker = reports.Ticker(30.0, 64, 100, 1000)
    ticker.between_epochs = 10.0
    ticker.restart(40)
    clock[0] += 30.0
    assert ticker(100) == pytest.approx(2.0)
    # 900 steps at 2/s (450 s) + 9 epochs left x 10 s = 540 s.
    assert lines == [
        "epoch 1: step 100/100  2.00 steps/s  128 images/s  ETA epoch 0m00s, run 9m00s"
    ]
    # Several runs in one process: each sees the batch, as the summary's 'images/s x 3 runs'.
    lines.clear()
    runs = reports.Ticker(30.0, 64, 100, 1000, num_runs=3)
    runs.restart(40)
    clock[0] += 30.0
    runs(100)
    assert lines == [
        "epoch 1: step 100/100  2.00 steps/s  128 images/s x 3 runs  ETA epoch 0m00s, run 7m30s"
    ]


def test_profile_steps_are_cut_to_the_run(monkeypatch, tmp_path):
    """The profile starts 3 steps into the session and ends by the run's last step; a run too short
    for it says so instead of naming steps that never come."""
    lines = []
    monkeypatch.setattr(reports.logging, "info", lambda fmt, *args: lines.append(fmt % args))
    monkeypatch.setattr(reports.logging, "warning", lambda fmt, *args: lines.append(fmt % args))
    c = default_config()
    c.profile_steps = 5
    # Steps counted from 1: the session's steps 1-3 compile and warm up, steps 4-8 are traced.
    assert reports.profiler(c, tmp_path, 0, 100) is not None and lines[-1].startswith(
        "profiling steps 4-8 into"
    )
    assert reports.profiler(c, tmp_path, 0, 6) is not None and lines[-1].startswith(
        "profiling steps 4-6 (profile_steps=5: the run ends) into"
    )
    assert reports.profiler(c, tmp_path, 4, 8) is not None and lines[-1].startswith(
        "profiling step 8 (profile_steps=5: the run ends) into"
    )
    c.profile_steps = 1
    assert reports.profiler(c, tmp_path, 0, 100) is not None and lines[-1].startswith(
        "profiling step 4 into"
    )
    c.profile_steps = 5
    assert reports.profiler(c, tmp_path, 4, 6) is None
    assert lines[-1].startswith("config.profile_steps: the run ends at step 6, before its profile")


def test_parameters_broken_by_the_last_update_name_their_run(tmp_path):
    """An update can make params NaN while its loss, computed before it, was finite: the save
    refuses them, naming the run of several whose params broke (run axis after the device axis)."""
    w = np.ones((1, 3, 2, 2), np.float32)  # device, run, kernel
    state = types.SimpleNamespace(
        params={"w": w, "b": np.zeros((1, 3, 2))}, opt_state=(), step=np.array([7])
    )
    ckpts = checkpoints.Checkpoints(tmp_path)
    names = ["seed=0", "seed=1", "seed=2"]
    assert train._finite_host_state(state, 7, 1, ckpts, names)["params"]["w"].shape == (3, 2, 2)
    w[0, 2, 1, 0] = np.nan
    with pytest.raises(errors.TrainingDiverged) as several:
        train._finite_host_state(state, 7, 1, ckpts, names)
    one = types.SimpleNamespace(params={"w": w[:, 2]}, opt_state=(), step=np.array([7]))
    with pytest.raises(errors.TrainingDiverged) as single:
        train._finite_host_state(one, 7, 1, ckpts, ["seed=0"])
    ckpts.close()
    assert str(several.value) == (
        "run seed=2: the parameters became NaN or inf at step 7 (epoch 2). No checkpoint was "
        "written yet. Lower config.learning_rate, or try config.grad_clip_norm; then start again "
        "with a new --workdir, as a resumed run keeps its runs."
    )
    assert str(single.value).startswith("the parameters became NaN or inf at step 7 (epoch 2). ")


def test_profile_steps_writes_one_trace(tmp_path, archive):
    """--config.profile_steps: clu's Profile action leaves one jax.profiler trace in the workdir."""
    c = tiny_config(archive, epochs=1)
    c.profile_steps = 1
    train.train_and_evaluate(c, str(tmp_path / "run"))
    traces = list((tmp_path / "run" / "plugins" / "profile").glob("*/*.xplane.pb"))
    assert len(traces) == 1 and traces[0].stat().st_size > 0


def test_a_nan_before_the_first_save_says_no_checkpoint_was_written(tmp_path):
    ckpts = checkpoints.Checkpoints(tmp_path)
    message = train._diverged_message(3, 0, ckpts, "training loss", [""], 0)
    seeds = train._diverged_message(3, 0, ckpts, "training loss", ["seed=1", "seed=2"], 1)
    ckpts.close()
    assert message.startswith(
        "the training loss became NaN or inf at step 3 (epoch 1). No checkpoint was written yet "
        "(the same command starts the run afresh). Check the learning rate"
    )
    assert seeds == (
        "run seed=2: the training loss became NaN or inf at step 3 (epoch 1). No checkpoint was "
        "written yet. Lower config.learning_rate, or try config.grad_clip_norm; then start again "
        "with a new --workdir, as a resumed run keeps its runs."
    )


def test_a_workdir_deleted_while_training_stops_the_run_without_a_place_to_name(tmp_path):
    """The claimed workdir gone, its new place unknown (deleted here): the check before a save
    stops the run, saying nothing was written, and resumes only if the folder was moved."""
    workdir = tmp_path / "run"
    workdir.mkdir()
    with rundir.Claim(workdir) as claim:
        ckpts = checkpoints.Checkpoints(workdir)
        loop = types.SimpleNamespace(claim=claim, workdir=workdir, per_epoch=4, ckpts=ckpts)
        train._check_in_place(loop, 6)  # in place: goes on
        shutil.rmtree(workdir)
        with pytest.raises(errors.ConfigError) as e:
            train._check_in_place(loop, 6)
        ckpts.close()
    assert str(e.value) == (
        f"--workdir {workdir} was moved, renamed or deleted while the run trained. The run stopped "
        f"at global step 6 (step 2 of epoch 2) without saving, so as not to split it: nothing was "
        f"written at {workdir}. If it was moved, run the same command again with --workdir set to "
        "its new path to resume it."
    )
    assert not workdir.exists()


@pytest.mark.parametrize("moved_as", ["best/16 is written", "best/16 is done", "best/16 is due"])
def test_a_workdir_moved_while_a_save_is_written_is_told_where_each_went(
    tmp_path, monkeypatch, moved_as
):
    """The workdir renamed while the writer thread saves epoch 2: as it writes best/16 (orbax
    recreates the old path and writes it there), once best/16 is done, or just before the thread's
    check of best/16; either way the step's saves still queued see the move and are not written
    (nor the old path recreated). The check at the next epoch's end waits for the writes first and
    says where each went and what to do."""
    workdir, moved = tmp_path / "run", tmp_path / "moved"
    workdir.mkdir()
    real_save = checkpoints._save

    def moving(manager, step, items, previous):  # mv, as (or just after) best/16 is written
        this = f"{manager.directory.name}/{step}"
        if this == "best/16" and moved_as == "best/16 is written":
            workdir.rename(moved)
        real_save(manager, step, items, previous)
        if this == "best/16" and moved_as == "best/16 is done":
            workdir.rename(moved)

    checks = []

    def in_place() -> bool:  # the thread's check before each write: best/8, latest/8, best/16, ...
        checks.append(len(checks))
        if len(checks) == 3 and moved_as == "best/16 is due":
            workdir.rename(moved)
        return claim.moved() is None

    monkeypatch.setattr(checkpoints, "_save", moving)
    state = {"w": np.zeros(2, np.float32)}
    with rundir.Claim(workdir) as claim:
        ckpts = checkpoints.Checkpoints(workdir, in_place=in_place)
        loop = types.SimpleNamespace(claim=claim, workdir=workdir, per_epoch=8, ckpts=ckpts)
        for step in (8, 16):  # each epoch's end: best/ then latest/, queued to the writer
            train._check_in_place(loop, step)
            ckpts.save("best", step, state, {"step": step})
            ckpts.save("latest", step, state, {"step": step})
        with pytest.raises(errors.ConfigError) as e:
            train._check_in_place(loop, 24)
        ckpts.close()  # the move's failure is told by the check, not raised again
    head = (
        f"--workdir {workdir} was moved or renamed while the run trained: it is now {moved}. The "
        "run stopped at global step 24 (the end of epoch 3) without saving, so as not to split it"
    )
    lost = "step 16's checkpoints still queued as it moved were not written"
    resume = f"Run the same command again with --workdir {moved} to resume it from its last"
    assert checkpoints.steps_held(moved / "checkpoints" / "latest") == [8]
    if moved_as != "best/16 is written":
        assert str(e.value) == (
            f"{head}: nothing was written at {workdir}; {lost}. {resume} checkpoint (step 8)."
        )
        assert not workdir.exists()
        best = [16] if moved_as == "best/16 is done" else [8]
        assert checkpoints.steps_held(moved / "checkpoints" / "best") == best
    else:
        orphan, target = workdir / "checkpoints/best/16", moved / "checkpoints/best/16"
        assert str(e.value) == (
            f"{head}; {lost}. A save under way as it moved recreated {workdir} and wrote "
            f"checkpoints/best/16 there: to keep them, mv {orphan} {target} && rm -r {workdir}; "
            f"to drop them, rm -r {workdir}. {resume} checkpoint (step 8)."
        )
        assert checkpoints.steps_held(workdir / "checkpoints" / "best") == [16]
        assert not (workdir / "checkpoints" / "latest").exists()


@pytest.mark.parametrize("old_path_holds", ["another run", "an older checkpoint"])
def test_what_a_moved_workdir_s_old_path_holds_is_told_apart(tmp_path, old_path_holds):
    """The old path holds something after a move: a new run started under the freed name (its
    config.json: left alone, no mv or rm offered), or a save under way as it moved that wrote an
    older step than the moved folder's newest (the resume names the newest)."""
    workdir, moved = tmp_path / "run", tmp_path / "moved"
    workdir.mkdir()
    state = {"w": np.zeros(2, np.float32)}
    with rundir.Claim(workdir) as claim:
        ckpts = checkpoints.Checkpoints(workdir)
        for step in (8, 16):
            ckpts.save("latest", step, state, {"step": step})
        ckpts.wait()
        workdir.rename(moved)
        (workdir / "checkpoints" / "latest").mkdir(parents=True)
        if old_path_holds == "another run":
            (workdir / "config.json").write_text("{}")
        shutil.copytree(moved / "checkpoints/latest/8", workdir / "checkpoints/latest/8")
        loop = types.SimpleNamespace(claim=claim, workdir=workdir, per_epoch=8, ckpts=ckpts)
        with pytest.raises(errors.ConfigError) as e:
            train._check_in_place(loop, 24)
        ckpts.close()
    said = str(e.value)
    resume = f"Run the same command again with --workdir {moved} to resume it from its last "
    assert said.endswith(f"{resume}checkpoint (step 16).")
    if old_path_holds == "another run":
        assert f"split it. {workdir} holds another run now, left as it is. {resume}" in said
        assert "rm -r" not in said
    else:
        assert f"recreated {workdir} and wrote checkpoints/latest/8 there" in said
    assert checkpoints.steps_held(workdir / "checkpoints" / "latest") == [8]  # left as it was


def test_a_stop_whose_save_the_moved_workdir_refused_is_still_a_stop(tmp_path):
    """The workdir moved after the stop's check, before the writer's: the save is not written, and
    the stop says so (exit 75 and its cause kept, the new path named), once, not raised at close."""
    workdir, moved = tmp_path / "run", tmp_path / "moved"
    workdir.mkdir()
    state = {"w": np.zeros(2, np.float32)}
    with rundir.Claim(workdir) as claim:
        ckpts = checkpoints.Checkpoints(workdir, in_place=lambda: claim.moved() is None)
        stop = types.SimpleNamespace(cause="process 1 received SIGTERM", by_user=False)
        loop = types.SimpleNamespace(
            claim=claim, workdir=workdir, per_epoch=4, ckpts=ckpts, stop=stop
        )
        train._check_in_place(loop, 6)  # the stop's check: in place
        workdir.rename(moved)
        ckpts.save("latest", 6, state, {"step": 6})
        preempted = train._preempted(loop, 6)
        ckpts.close()
    assert isinstance(preempted, errors.Preempted) and not preempted.by_user
    assert str(preempted) == (
        f"process 1 received SIGTERM: --workdir {workdir} was moved or renamed while the run "
        f"trained: it is now {moved}. The run stopped at global step 6 (step 2 of epoch 2) without "
        f"saving, so as not to split it: nothing was written at {workdir}; step 6's checkpoints "
        "still queued as it moved were not written. Run the same command again with --workdir "
        f"{moved} to start it afresh there (no checkpoint was written yet)."
    )
    assert not workdir.exists() and not (moved / "checkpoints" / "latest" / "6").exists()


def test_a_workdir_that_cannot_be_created_leaves_none_of_its_folders(
    tmp_path, archive, monkeypatch
):
    """mkdir fails at the workdir's own name (a limit rundir.inspect did not foresee, here a name
    too long: its check left out): the folders made above it on the way are removed, as the
    message says it cannot be created."""
    monkeypatch.setattr(rundir, "_check_length", lambda *_: None)
    workdir = tmp_path / "a" / "b" / ("n" * (os.pathconf(tmp_path, "PC_NAME_MAX") + 1))
    with pytest.raises(errors.ConfigError, match=r"cannot be created \(File name too long\)"):
        train.train_and_evaluate(tiny_config(archive, epochs=1), str(workdir))
    assert os.listdir(tmp_path) == []


def test_a_sigterm_the_parent_ignored_stays_ignored_in_the_loop(tmp_path):
    """The loop's stop flag takes SIGTERM over to save first, but not one the process was started
    with ignored (cli.start leaves it so too); SIGINT it takes as before."""
    before = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        with stop.StopFlag(tmp_path / "latest") as flag:
            assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGINT) == flag._handle
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, before)


def test_a_start_interrupted_before_its_config_leaves_no_folder(tmp_path, archive, monkeypatch):
    """Ctrl-C (or an error) while a new run's state is built (after the checkpoint folders are
    made, before its config is written): the folders it made go, with the parents it made on the
    way, and an empty compilation cache (JAX makes it at the first compile); a workdir that was
    there (empty) stays, and so does a cache holding an entry (a restart reuses it)."""

    def interrupted(config, run_set, model, per_epoch, saved, ckpts, pretrained):
        if cache:  # what JAX's persistent cache (the scripts': WORKDIR/compilation_cache) made
            (ckpts.root.parent / "compilation_cache").mkdir()
        if cache == "entry":
            (ckpts.root.parent / "compilation_cache" / "jit_init-cache").write_bytes(b"x")
        raise KeyboardInterrupt if depth == 0 else MemoryError

    monkeypatch.setattr(train, "initial_state", interrupted)
    cases = ((False, None, 0), (True, None, 0), (False, "entry", 0), (False, "empty", 3))
    for existed, cache, depth in cases:  # depth: parents made on the way, top/d/d/d
        top = tmp_path / f"run{existed}{cache}{depth}"
        workdir = top.joinpath(*["d"] * depth)
        if existed:
            workdir.mkdir()
        with pytest.raises(KeyboardInterrupt if depth == 0 else MemoryError):  # not the clean-up's
            train.train_and_evaluate(tiny_config(archive, epochs=1), str(workdir))
        left = sorted(p.name for p in workdir.iterdir()) if workdir.exists() else None
        assert left == (["compilation_cache"] if cache == "entry" else [] if existed else None)
        assert top.exists() == (existed or cache == "entry")


@pytest.mark.parametrize("killed_in_epoch", [1, 2])
def test_a_run_killed_keeps_no_curves_of_its_lost_steps(
    tmp_path, archive, monkeypatch, killed_in_epoch
):
    """A session killed after some steps (kill -9; here an exception from the loop once it has
    written their points): before its first checkpoint, the same command starts afresh; after,
    it resumes from that checkpoint. Either way TensorBoard holds each point once, as an
    uninterrupted run's (the lost steps' points are dropped, not shown twice)."""
    c = tiny_config(archive, epochs=2)
    c.log_every_steps = 1
    train.train_and_evaluate(c, str(tmp_path / "ref"))
    train_epoch = train.train_epoch

    def killed(loop, state, batches, step, epoch, *args):  # after its steps' loss points
        out = train_epoch(loop, state, batches, step, epoch, *args)
        if epoch + 1 == killed_in_epoch:
            raise RuntimeError("killed")
        return out

    monkeypatch.setattr(train, "train_epoch", killed)
    workdir = tmp_path / "run*"  # a glob would match run1 too
    with pytest.raises(RuntimeError, match="killed"):
        train.train_and_evaluate(c, str(workdir))
    kept = checkpoints.newest_step(workdir / "checkpoints" / "latest")
    assert kept == (None if killed_in_epoch == 1 else N_TRAIN // BATCH)
    # Other curves, which the restart must leave: a sibling's, and another run's kept inside.
    others = [
        tmp_path / "run1" / "events.out.tfevents.1",
        workdir / "runs" / "x" / "events.out.tfevents.1",
    ]
    for other in others:
        other.parent.mkdir(parents=True)
        other.write_bytes(b"")
    monkeypatch.undo()
    train.train_and_evaluate(c, str(workdir))
    assert all(map(os.path.exists, others))
    assert count_points(workdir) == count_points(tmp_path / "ref")  # each tag at each step once
    ref, run = read_scalars(tmp_path / "ref"), read_scalars(workdir)
    assert ref["train_loss_step"] == run["train_loss_step"]
