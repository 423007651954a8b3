"""Preemption, kill -9, full disk and NaN: `scripts/main.py` run as real processes on a tiny CIFAR-10
archive (genuine binary format); an interrupted run must resume to the same parameters, bit for bit."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from swin_flax import checkpoints, runfiles
from tests import cifar_files
from tests import reliability_runs as rr

N_TRAIN, N_TEST = 32, 16  # batch 8: 4 steps per epoch, 2 eval batches
STEPS_PER_EPOCH = N_TRAIN // rr.TINY["batch_size"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The archive, the config file, a shared compilation cache and one uninterrupted reference run."""
    d = tmp_path_factory.mktemp("reliability")
    archive = cifar_files.cifar10_binary_tarball(
        d / "cifar-10-binary.tar.gz",
        cifar_files.random_split(N_TRAIN, seed=1),
        cifar_files.random_split(N_TEST, seed=2),
    )
    config = rr.write_config(d / "tiny.py", archive, **rr.TINY)
    env = rr.env(d / "xla_cache")
    reference = d / "reference"
    out = rr.run(rr.main_args(config, reference), env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return {
        "dir": d,
        "archive": archive,
        "config": config,
        "env": env,
        "reference": reference,
        "output": out,
    }


def _preempted_step(stderr: str) -> int:
    m = re.search(r"(?:Preempted|Ctrl-C): stopped at global step (\d+)", stderr)
    assert m, stderr[-3000:]
    return int(m.group(1))


def _tmp_dirs(workdir) -> list[str]:
    root = workdir / "checkpoints"
    return sorted(str(p.relative_to(root)) for p in root.glob("*/*.orbax-checkpoint-tmp*"))


def _complete_steps(workdir, which="latest") -> list[int]:
    d = workdir / "checkpoints" / which
    return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.exists() else []


def _kill9_once_saving(args, env, workdir) -> None:
    """Runs until a checkpoint save has started (an orbax tmp folder appears; polled every 2 ms, a
    save takes about 0.3 s here), then SIGKILLs the process."""
    p = subprocess.Popen(rr.command(args), cwd=rr.REPO, env=env, stderr=subprocess.DEVNULL)
    try:
        while p.poll() is None and not _tmp_dirs(workdir):
            time.sleep(0.002)
    finally:
        p.kill()
        p.wait()
    assert p.returncode == -signal.SIGKILL


def test_interrupted_runs_resume_to_the_uninterrupted_result(setup, tmp_path):
    """One run interrupted three ways, each re-run of the same command resuming; the end equals the
    uninterrupted reference run bit for bit (CPU: same devices, same XLA programs, stateless data
    augmentation and dropout keys):

    1. SIGTERM during the first epoch: stops after step 2, saves, exit 75 with how to resume.
    2. SIGINT during epoch 1's last step: the epoch's evaluation runs, then it saves at step 4.
    3. kill -9 while the next save (`best/8`: epoch 2 improves, and best/ is written before
       latest/) is being written: the half-written folder must never be used, and no record names
       it; the last run resumes from step 4, and orbax removes it.

    How the signals of 1 and 2 are timed: the run is the real entry point (scripts/main.py, in a
    subprocess) with nothing changed on the training path; its input pipeline is wrapped (rr.DRIVER)
    so that the process sends itself the signal from the main thread while it hands over training
    batch number KILL_AT. Python runs the handler before the loop's next check, and the loop's batch
    prefetch has a fixed depth, so the stop lands at an exact, repeatable step instead of wherever a
    sleep would put it: batch KILL_AT is read while step KILL_AT - 1 of this process runs, so the
    run stops after global step start + KILL_AT. The loop's own handler, save and message run.
    """
    workdir = tmp_path / "run"
    args = rr.main_args(setup["config"], workdir)
    for kill_at, signum, step, where in [
        (2, signal.SIGTERM, 2, "step 2 of epoch 1"),
        (2, signal.SIGINT, 4, "the end of epoch 1"),
    ]:
        out = rr.run(args, env=setup["env"], kill_at=kill_at, signum=int(signum))
        assert out.returncode == 75, out.stderr[-3000:]
        assert _preempted_step(out.stderr) == step
        msg = rr.text(out)
        assert where in msg and "Run the same command again to resume" in msg, msg[-2000:]
        said = "Ctrl-C" if signum == signal.SIGINT else "Preempted"  # Ctrl-C: the user's stop
        assert f"{said}: stopped at global step {step} " in msg
        state, meta = rr.restore_latest(workdir)
        assert int(state["step"]) == step and meta["step"] == step
        assert meta["epoch"] == step // STEPS_PER_EPOCH
    assert _complete_steps(workdir, "best") == [4]  # epoch 1 evaluated before the stop

    _kill9_once_saving(args, setup["env"], workdir)
    assert _tmp_dirs(workdir) == [f"best/{2 * STEPS_PER_EPOCH}.orbax-checkpoint-tmp"]
    assert _complete_steps(workdir) == [2, 4] and _complete_steps(workdir, "best") == [4]

    out = rr.run(args, env=setup["env"])
    assert out.returncode == 0, out.stderr[-3000:]
    # The stop and the resume name the same position in the same words.
    assert "resuming after global step 4 (the end of epoch 1);" in out.stderr
    assert _tmp_dirs(workdir) == []  # removed when the managers opened

    # Epoch 1 was trained in two sessions (stopped at step 2): its train loss and accuracy in
    # TensorBoard still cover all 4 steps, as the uninterrupted run's do (sums in another order).
    scalars, ref_scalars = rr.read_scalars(workdir), rr.read_scalars(setup["reference"])
    for tag in ("train_loss", "train_accuracy"):
        assert scalars[tag][4] == pytest.approx(ref_scalars[tag][4], rel=1e-6), tag
    # summary.json covers every session that left a checkpoint (the kill -9 one left none, and
    # its steps were trained again): 3 sessions, each training image counted once.
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["sessions"] == 3
    assert summary["trained_images"] == 3 * STEPS_PER_EPOCH * rr.TINY["batch_size"]
    assert summary["best_test_accuracy"] == ref_meta_best(setup)

    state, meta = rr.restore_latest(workdir)
    ref_state, ref_meta = rr.restore_latest(setup["reference"])
    assert int(ref_state["step"]) == 3 * STEPS_PER_EPOCH
    rr.assert_trees_equal(state, ref_state)
    assert meta["test_accuracy"] == ref_meta["test_accuracy"]
    assert meta["best_accuracy"] == ref_meta["best_accuracy"]


def ref_meta_best(setup) -> float:
    return rr.restore_latest(setup["reference"])[1]["best_accuracy"]


def test_console_of_a_run_and_of_running_it_again(setup):
    """A run's stderr holds the project's own lines only (no other library's INFO lines, no
    traceback); its epoch lines and summary are also on stdout. Running the finished run's command
    again prints its summary, exits 0, and changes nothing in the workdir."""
    out = setup["output"]
    lines = out.stderr.strip().splitlines()
    assert "Traceback" not in out.stderr and "orbax" not in out.stderr.lower()
    assert len(lines) < 25, out.stderr
    for expected in ("data: ", "model: ", "devices: ", "workdir: ", "compiling the train step"):
        assert any(expected in line for line in lines), expected
    stdout = out.stdout.splitlines()
    assert [line.split()[1] for line in stdout[:3]] == ["1/3", "2/3", "3/3"], out.stdout
    assert any(line.startswith("best test accuracy") for line in stdout), out.stdout

    reference = setup["reference"]
    before = {p: p.stat().st_mtime_ns for p in reference.rglob("*")}
    again = rr.run(rr.main_args(setup["config"], reference), env=setup["env"])
    assert again.returncode == 0, again.stderr[-3000:]
    assert "has trained all its 3 epochs: nothing to do" in again.stdout
    assert f"best test accuracy {ref_meta_best(setup):.4f}" in again.stdout
    assert {p: p.stat().st_mtime_ns for p in reference.rglob("*")} == before


def test_half_written_checkpoint_is_ignored(tmp_path):
    """What a save killed before its rename leaves (a `<step>.orbax-checkpoint-tmp` folder with
    truncated files) is neither listed nor restored, and is removed when a writer opens the series."""
    ckpts = checkpoints.Checkpoints(tmp_path)
    good = {"w": np.arange(6.0, dtype=np.float32), "step": np.int32(4)}
    ckpts.save("latest", 4, good, {"step": 4})
    ckpts.close()
    latest = tmp_path / "checkpoints" / "latest"
    torn = latest / "8.orbax-checkpoint-tmp"
    shutil.copytree(latest / "4", torn)
    for f in torn.rglob("*"):
        if f.is_file():
            f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 2])
    assert checkpoints.peek_meta(tmp_path) == {"step": 4}
    state, meta = rr.restore_latest(tmp_path)
    np.testing.assert_array_equal(state["w"], good["w"])
    writer = checkpoints.Checkpoints(tmp_path)
    writer.save("latest", 12, good, {"step": 12})  # waits for the start-up clean-up of tmp folders
    writer.close()
    assert not torn.exists()
    assert _complete_steps(tmp_path) == [4, 12]


# Caps the size of any file the process writes, then runs the rest of argv in its place (the
# limit and the ignored SIGXFSZ survive exec): writes past the cap fail with EFBIG, as on a full disk.
LIMIT_FILE_SIZE = (
    "import os, resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
    "n = int(sys.argv[1]); resource.setrlimit(resource.RLIMIT_FSIZE, (n, n)); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])"
)


def test_full_disk_while_saving_keeps_previous_checkpoint(setup, tmp_path):
    """A run that cannot write its checkpoint (files capped at 16 KiB with RLIMIT_FSIZE, so the
    state's ~58 KiB _METADATA and its OCDBT data files, 22-165 KiB however orbax splits them, fail
    with EFBIG as on a full disk) stops with a clear error and exit 2; the previous checkpoint is
    untouched and still resumable."""
    workdir = tmp_path / "run"
    shutil.copytree(setup["reference"], workdir)
    args = rr.main_args(setup["config"], workdir, "--config.num_epochs=4")
    out = subprocess.run(
        [sys.executable, "-c", LIMIT_FILE_SIZE, str(16 * 1024), *args],
        cwd=rr.REPO,
        env=setup["env"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 2, out.stderr[-3000:]
    # Our paragraph, written in one piece; orbax's writer threads log their own tracebacks around it,
    # so it need not start a paragraph of stderr, but it is printed exactly once.
    assert out.stderr.count("Error: could not write") == 1, out.stderr[-3000:]
    ours = out.stderr[out.stderr.index("Error: could not write") :].split("\n\n")[0]
    msg = " ".join(ours.split())
    assert msg.startswith("Error: could not write the 'latest' checkpoint of step 16"), msg
    assert "Free disk space" in msg and "previous checkpoint (step 12) is intact" in msg
    assert _complete_steps(workdir) == [4, 8, 12]
    state, _ = rr.restore_latest(workdir)
    ref_state, _ = rr.restore_latest(setup["reference"])
    rr.assert_trees_equal(state, ref_state)


def test_nan_loss_stops_with_step_and_epoch(setup, tmp_path):
    """An absurd learning rate (1e38) in epoch 4 makes the loss NaN/inf: the run stops with exit 3,
    an error naming the step and epoch and what to check, and the last good checkpoint (step 12)."""
    workdir = tmp_path / "run"
    shutil.copytree(setup["reference"], workdir)
    # A resumed run keeps its recipe: the run is made to have started with that rate.
    config_json = workdir / "config.json"
    config_json.write_text(
        json.dumps({**json.loads(config_json.read_text()), "learning_rate": 1e38})
    )
    args = rr.main_args(
        setup["config"], workdir, "--config.num_epochs=4", "--config.learning_rate=1e38"
    )
    out = rr.run(args, env=setup["env"])
    msg = rr.text(out)
    assert out.returncode == 3, out.stderr[-3000:]
    m = re.search(
        r"Training diverged: the training loss became NaN or inf at step (\d+) \(epoch 4\)", msg
    )
    assert m and 13 <= int(m.group(1)) <= 16, msg[-2000:]
    assert "last good checkpoint (step 12)" in msg and "learning rate" in msg
    # Another learning rate would be refused in this workdir (its checkpoint keeps the settings).
    assert msg.endswith(
        "then start again with a new --workdir, as a resumed run keeps its settings."
    )
    assert _complete_steps(workdir) == [4, 8, 12]


def test_a_resume_on_other_devices_says_it_is_not_bit_exact(setup, tmp_path):
    """The reference trained on 2 devices; resumed on 1, the run goes on (the same global batch)
    but its dropout draws follow the devices: a warning says so. Resumed on 1 again, none."""
    workdir = tmp_path / "run"
    shutil.copytree(setup["reference"], workdir)
    one_device = {**setup["env"], **rr.env(None, devices=1)}
    out = rr.run(rr.main_args(setup["config"], workdir, "--config.num_epochs=4"), env=one_device)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"WARNING: {workdir} trained on 2 devices and resumes on 1 device: dropout's" in (
        rr.text(out)
    )
    out = rr.run(rr.main_args(setup["config"], workdir, "--config.num_epochs=5"), env=one_device)
    assert out.returncode == 0 and "resumes on" not in out.stderr, out.stderr[-3000:]


def _longest_path_written(workdir) -> int:
    """The characters of the longest path below a run's folder ('/' and the relative path), its
    checkpoints' as while being written: orbax's .orbax-checkpoint-tmp on the step and the item
    folder, TensorStore's .__lock on a file, a step of 9 digits."""
    longest = 0
    for path in workdir.rglob("*"):
        parts = path.relative_to(workdir).parts
        n = 1 + len("/".join(parts))
        if parts[0] == "checkpoints" and len(parts) > 3:  # checkpoints/SERIES/STEP/ITEM/...
            n += 2 * len(".orbax-checkpoint-tmp") + 9 - len(parts[2]) + 7 * path.is_file()
        longest = max(longest, n)
    return longest


def test_compilation_cache_defaults_to_the_workdir(setup, tmp_path):
    """Without JAX_COMPILATION_CACHE_DIR or --compilation_cache, a run keeps JAX's persistent
    compilation cache in WORKDIR/compilation_cache, so resuming it reuses the compiled step. The
    longest path below the run, its cache and checkpoints (as while written) included, fits in
    runfiles.DEEPEST_FILE, the room rundir.inspect keeps below a workdir's path."""
    workdir = tmp_path / "run"
    shutil.copytree(setup["reference"], workdir)
    env = {k: v for k, v in setup["env"].items() if k != "JAX_COMPILATION_CACHE_DIR"}
    out = rr.run(rr.main_args(setup["config"], workdir, "--config.num_epochs=4"), env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    entries = list((workdir / "compilation_cache").iterdir())
    assert any(e.name.startswith("jit_") and e.name.endswith("-cache") for e in entries), entries
    assert 100 < _longest_path_written(workdir) <= runfiles.DEEPEST_FILE
    # A run moved (mv, a copy, a tar) still finds its compiled steps: the cache's keys do not hold
    # the folder's path (XLA's own caches, whose folder JAX puts in the compile options, are off).
    moved = tmp_path / "moved"
    workdir.rename(moved)
    out = rr.run(rr.main_args(setup["config"], moved, "--config.num_epochs=5"), env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    jits = {e.name for e in entries if e.name.startswith("jit_")}
    assert {
        e.name for e in (moved / "compilation_cache").iterdir() if e.name.startswith("jit_")
    } == jits


def test_a_finished_run_without_its_latest_checkpoints_is_refused(setup, tmp_path):
    """checkpoints/latest of a finished run deleted (to save disk): its command again, or one that
    extends it, is refused before any data is read or anything compiled (exit 2), naming what the
    folder holds; its best/, summary.json and TensorBoard events are left as they were."""
    workdir = tmp_path / "run"
    shutil.copytree(setup["reference"], workdir)
    shutil.rmtree(workdir / "checkpoints" / "latest")
    [best] = _complete_steps(workdir, "best")
    kept = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in workdir.rglob("*") if p.is_file()}
    assert any(p.name.startswith("events.out.tfevents.") for p in kept)
    for flags in ([], ["--config.num_epochs=5"]):
        out = rr.run(rr.main_args(setup["config"], workdir, *flags), env=setup["env"])
        assert out.returncode == 2, out.stderr[-3000:]
        assert rr.text(out) == (
            f"Error: --workdir {workdir} holds a run that trained (config.json, "
            f"checkpoints/best/{best}, summary.json, TensorBoard events) but no checkpoint in "
            f"{workdir}/checkpoints/latest to resume or extend it from: a start afresh would "
            f"delete its curves and replace its best/ and summary.json. Its best/{best} still "
            "serves scripts/evaluate.py, predict.py and export.py. To train again, give a new "
            "--workdir (or move this one away)."
        )
        now = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in workdir.rglob("*") if p.is_file()}
        assert now == kept


def test_a_workdir_moved_while_training_stops_the_run_before_it_writes_at_the_old_path(
    setup, tmp_path
):
    """The workdir renamed during epoch 4 of a run resumed from step 12 (as the input pipeline hands
    over the session's batch 2): orbax would recreate the old path and write the later checkpoints
    and summary.json there, splitting the run in two. The run stops at the epoch's end, before its
    save, with exit 2 and a paragraph naming the new path; nothing is at the old path, and the
    command given --workdir NEWPATH resumes the run there from its last checkpoint."""
    workdir, moved = tmp_path / "run", tmp_path / "moved"
    shutil.copytree(setup["reference"], workdir)
    out = rr.run(
        rr.main_args(setup["config"], workdir, "--config.num_epochs=5"),
        env=setup["env"],
        kill_at=2,
        signum=str(moved),
    )
    msg = rr.text(out)
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    assert (
        f"Error: --workdir {workdir} was moved or renamed while the run trained: it is now "
        f"{moved}. The run stopped at global step 16 (the end of epoch 4) without saving"
    ) in msg, msg[-2000:]
    assert f"nothing was written at {workdir}." in msg
    assert msg.endswith(
        f"Run the same command again with --workdir {moved} to resume it from its last "
        "checkpoint (step 12)."
    ), msg[-2000:]
    assert not workdir.exists()
    assert (moved / "config.json").is_file() and not (moved / "summary.json").exists()
    assert _complete_steps(moved) == [4, 8, 12] and _complete_steps(
        moved, "best"
    ) == _complete_steps(setup["reference"], "best")

    out = rr.run(rr.main_args(setup["config"], moved, "--config.num_epochs=5"), env=setup["env"])
    assert out.returncode == 0, out.stderr[-3000:]
    assert "resuming after global step 12 (the end of epoch 3);" in out.stderr
    assert _complete_steps(moved) == [12, 16, 20]
    summary = json.loads((moved / "summary.json").read_text())
    assert summary["epochs"] == 5 and summary["checkpoints"] == "checkpoints"  # not the old path
    assert f"checkpoints in {moved / 'checkpoints'} (best/ and latest/)" in out.stdout
    assert not workdir.exists()
    # config.txt: what started each session: the reference run's, then this run's two (the first
    # through the driver that renames the folder), each after a cd to the folder it ran in.
    lines = (moved / "config.txt").read_text().splitlines()
    typed = [
        rr.command(rr.main_args(setup["config"], setup["reference"])),
        rr.command(rr.main_args(setup["config"], workdir, "--config.num_epochs=5"), 2, str(moved)),
        rr.command(rr.main_args(setup["config"], moved, "--config.num_epochs=5")),
    ]
    assert [line.partition(": ")[0] for line in lines[:4]] == [
        "# started by", "# resumed by", "# resumed by", "archive"
    ]  # fmt: skip
    assert [shlex.split(line.partition(": ")[2]) for line in lines[:3]] == [
        ["cd", str(rr.REPO), "&&", *(a.replace("\n", "\\n") for a in args)] for args in typed
    ]  # a newline in an argument (the driver's code) written as \n: one line per session
