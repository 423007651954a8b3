"""Multi-host on one machine: two processes on loopback (jax.distributed, gloo CPU collectives), one
CPU device each, train the same tiny run as one process with two devices; the parameters must agree.

The config has no CutMix (it mixes within each host's share of the batch, so the two layouts would
differ legitimately) and drop_path 0. Process 0 gets the flags, process 1 the environment variables.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import threading
import time

import jax
import numpy as np
import pytest

from swin_flax import distributed, rundir
from swin_flax.errors import ConfigError
from tests import cifar_files
from tests import reliability_runs as rr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _finish(procs: list[subprocess.Popen], timeout: float) -> list[str]:
    """Each process's output, whitespace collapsed, once all have ended (all killed `timeout`
    seconds after the call)."""
    deadline = time.monotonic() + timeout
    try:
        return [
            " ".join(p.communicate(timeout=max(deadline - time.monotonic(), 1))[0].split())
            for p in procs
        ]
    finally:
        for p in procs:
            p.kill()
            p.wait()


def _start(
    args, env, kill_at: int = -1, stderr: int = subprocess.STDOUT, signum: int | str = 15
) -> subprocess.Popen:
    return subprocess.Popen(
        rr.command(args, kill_at, signum),
        cwd=rr.REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )


@pytest.mark.parametrize("num_runs", [1, 2])
def test_two_processes_equal_one_process_with_two_devices(tmp_path, num_runs):
    """And with two runs vmapped in each process (their params stacked), as one process with two."""
    archive = cifar_files.cifar10_binary_tarball(
        tmp_path / "cifar-10-binary.tar.gz",
        cifar_files.random_split(32, seed=1),
        cifar_files.random_split(16, seed=2),
    )
    fields = {
        **rr.TINY,
        "model.depths": (1,),  # one block: the least to compile three times
        "model.num_heads": (2,),
        "mix.cutmix_alpha": 0.0,
        "model.drop_path_rate": 0.0,
        "num_epochs": 1,
        "num_runs": num_runs,
    }
    config = rr.write_config(tmp_path / "tiny.py", archive, **fields)
    address = f"127.0.0.1:{_free_port()}"
    multi, single = tmp_path / "multi", tmp_path / "single"
    # Process 0 keeps its compilation cache in the workdir (the default without this variable).
    own_cache = rr.env(None, devices=1, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    del own_cache["JAX_COMPILATION_CACHE_DIR"]
    procs = [
        _start(
            rr.main_args(
                config,
                multi,
                f"--coordinator_address={address}",
                "--num_processes=2",
                "--process_id=0",
            ),
            own_cache,
            stderr=subprocess.PIPE,  # its stdout alone: what `| tee` keeps
        ),
        _start(
            rr.main_args(config, multi),
            rr.env(
                None,
                devices=1,
                JAX_COORDINATOR_ADDRESS=address,
                JAX_NUM_PROCESSES="2",
                JAX_PROCESS_ID="1",
            ),
        ),
        _start(rr.main_args(config, single), rr.env(None, devices=2)),
    ]
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=300))
    finally:
        for p in procs:
            p.kill()
    logs = [out + (err or "") for out, err in outs]
    for p, log in zip(procs, logs, strict=True):
        assert p.returncode == 0, log[-3000:]
    # Process 0's stdout: the epoch line and the summary, not gloo's connection lines (stderr).
    assert outs[0][0].startswith("epoch 1/1 ") and "[Gloo]" not in outs[0][0], outs[0][0]
    assert "jax.distributed: process 0 of 2, 1 local / 2 global devices" in logs[0]
    assert "jax.distributed: process 1 of 2, 1 local / 2 global devices" in logs[1]
    # Process 1 says only errors after joining: its lines would repeat process 0's.
    assert "devices: " not in logs[1] and "epoch 1/1" not in logs[1], logs[1][-3000:]

    state, meta = rr.restore_latest(multi)
    ref_state, ref_meta = rr.restore_latest(single)
    assert (
        np.ravel(state["step"]).tolist() == np.ravel(ref_state["step"]).tolist() == [4] * num_runs
    )
    # Each host read its own half of every batch: otherwise the gradients would differ.
    rr.assert_trees_equal(state, ref_state)
    assert meta["test_accuracy"] == pytest.approx(ref_meta["test_accuracy"])
    # Only process 0 writes summaries and the run's files.
    assert len(list(multi.glob("events.out.tfevents.*"))) == 1
    # ... and, for two runs, one events file per run folder and the aggregate's.
    assert len(list(multi.glob("runs/*/events.out.tfevents.*"))) == (3 if num_runs > 1 else 0)
    assert (multi / "summary.json").exists() and (multi / "config.json").exists()
    # The settings check compiled a gather before the cache was set: the step still goes into it.
    entries = [e.name for e in (multi / "compilation_cache").iterdir()]
    assert any(e.startswith("jit_") and e.endswith("-cache") for e in entries), entries


def _tiny_synthetic(tmp_path, train_examples: int):
    """A config file of a one-block model on `train_examples` synthetic images (16 to test)."""
    return rr.write_config(
        tmp_path / "tiny.py",
        None,
        **{
            **rr.TINY,
            "dataset": "synthetic",
            "synthetic_train_examples": train_examples,
            "synthetic_test_examples": 16,
            "model.depths": (1,),
            "model.num_heads": (2,),
        },
    )


def test_a_signal_to_one_process_stops_all_at_one_step_and_says_whose(tmp_path):
    """SIGTERM reaches process 1 only (a preempted node): both save at the same step and exit 75,
    and process 0, whose log is the run's, says that process 1 received it."""
    config = _tiny_synthetic(tmp_path, 64)
    address = f"127.0.0.1:{_free_port()}"
    cluster = (f"--coordinator_address={address}", "--num_processes=2")
    workdir = tmp_path / "run"
    procs = [
        _start(rr.main_args(config, workdir, *cluster, f"--process_id={i}"), rr.env(None), kill)
        for i, kill in ((0, -1), (1, 2))
    ]
    logs = _finish(procs, 240)
    assert [p.returncode for p in procs] == [75, 75], logs
    assert "WARNING: Process 1 received SIGTERM: stopping after this step and saving." in logs[0]
    said = re.search(
        r"Preempted: process 1 received SIGTERM: stopped at global step (\d+)", logs[0]
    )
    assert said, logs[0][-3000:]
    assert f"Preempted: stopped at global step {said.group(1)} " in logs[1], logs[1][-3000:]
    assert "Run the same commands again, on every process, to resume from there." in logs[0]
    # Process 1 repeats none of process 0's warnings (32 hosts: 32 copies): it logs only errors.
    assert "WARNING: data: the SYNTHETIC data set" in logs[0]
    assert "WARNING: " not in logs[1], logs[1][-3000:]
    state, _ = rr.restore_latest(workdir)
    assert np.ravel(state["step"]).tolist() == [int(said.group(1))]


def test_a_workdir_moved_while_two_processes_train_stops_both(tmp_path):
    """The workdir renamed during epoch 1 (by process 0, which claims it): both processes stop at
    the epoch's end, before any save, with exit 2 and the paragraph naming the new path and how
    every process resumes; nothing is at the old path."""
    config = _tiny_synthetic(tmp_path, 32)
    address = f"127.0.0.1:{_free_port()}"
    cluster = (f"--coordinator_address={address}", "--num_processes=2")
    workdir, moved = tmp_path / "run", tmp_path / "moved"
    procs = [
        _start(
            rr.main_args(config, workdir, *cluster, f"--process_id={i}"),
            rr.env(None),
            kill_at=2 if i == 0 else -1,
            signum=str(moved),
        )
        for i in (0, 1)
    ]
    logs = _finish(procs, 240)
    assert [p.returncode for p in procs] == [2, 2], logs
    for log in logs:
        assert (
            f"Error: --workdir {workdir} was moved or renamed while the run trained: it is now "
            f"{moved}. The run stopped at global step 4 (the end of epoch 1) without saving"
        ) in log, log[-3000:]
        assert (
            f"Run the same commands again, on every process, with --workdir {moved} to start it "
            "afresh there (no checkpoint was written yet)."
        ) in log, log[-3000:]
    assert not workdir.exists() and (moved / "config.json").is_file()


def test_processes_started_with_different_settings_are_refused(tmp_path):
    """Two processes of one run given a different learning rate and --workdir: each would train its
    own way. Both refuse before anything is compiled or written, naming what differs."""
    config = rr.write_config(tmp_path / "tiny.py", None, **{**rr.TINY, "dataset": "synthetic"})
    address = f"127.0.0.1:{_free_port()}"
    cluster = (f"--coordinator_address={address}", "--num_processes=2")
    procs = [
        _start(rr.main_args(config, tmp_path / "a", *cluster, "--process_id=0"), rr.env(None)),
        _start(
            rr.main_args(
                config, tmp_path / "b", *cluster, "--process_id=1", "--config.learning_rate=0.1"
            ),
            rr.env(None),
        ),
    ]
    logs = _finish(procs, 120)
    for p, log in zip(procs, logs, strict=True):
        assert p.returncode == 2, log[-3000:]
        assert "The 2 processes were started with different settings:" in log, log[-3000:]
        assert (
            f'--workdir is "{tmp_path / "a"}" on process 0 but "{tmp_path / "b"}" on process 1'
            in log
        )
        assert "config.learning_rate is 0.001 on process 0 but 0.1 on process 1" in log
        assert "Traceback" not in log
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.py"]  # no workdir, no cache


def test_a_workdir_that_is_not_one_shared_folder_is_refused(tmp_path):
    """The same --workdir on both processes, but each sees a folder of its own (a local path on
    each host, not a shared one): /proc/self/cwd/run is each process's own working directory's
    run/. Both refuse it, naming the process that did not see process 0's file, and the folders
    they made are gone; nothing is left in them."""
    config = rr.write_config(tmp_path / "tiny.py", None, **{**rr.TINY, "dataset": "synthetic"})
    cluster = (f"--coordinator_address=127.0.0.1:{_free_port()}", "--num_processes=2")
    here, there = tmp_path / "here", tmp_path / "there"
    procs = []
    for i, cwd in ((0, here), (1, there)):
        cwd.mkdir()
        args = rr.main_args(config, "/proc/self/cwd/run", *cluster, f"--process_id={i}")
        procs.append(
            subprocess.Popen(
                rr.command(args),
                cwd=cwd,
                env=rr.env(None),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    logs = _finish(procs, 120)
    assert [p.returncode for p in procs] == [2, 2], logs
    host = socket.gethostname()
    for log in logs:
        assert (
            "Error: --workdir /proc/self/cwd/run is not one folder that every process sees: "
            f"process 1 on {host} did not find there the file that process 0 on {host} had just "
            "written. With several hosts the workdir must be a folder that all of them share"
        ) in log, log[-3000:]
        assert "Traceback" not in log
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["here", "there", "tiny.py"]


def test_a_process_refused_alone_stops_the_others(tmp_path):
    """Process 0 alone claims the workdir; here another training holds it (the same command started
    twice), so only process 0 is refused. Process 1 would wait for it in its first collective
    forever; instead it stops too, with process 0's reason, and both end at once."""
    config = rr.write_config(tmp_path / "tiny.py", None, **{**rr.TINY, "dataset": "synthetic"})
    workdir = tmp_path / "run"
    workdir.mkdir()
    address = f"127.0.0.1:{_free_port()}"
    cluster = (f"--coordinator_address={address}", "--num_processes=2")
    env = rr.env(None)
    del env["JAX_COMPILATION_CACHE_DIR"]  # the scripts' default: WORKDIR/compilation_cache
    with rundir.Claim(workdir):  # the other training
        procs = [
            _start(rr.main_args(config, workdir, *cluster, f"--process_id={i}"), env)
            for i in (0, 1)
        ]
        logs = _finish(procs, 120)
    assert [p.returncode for p in procs] == [2, 2], logs
    reason = f"--workdir {workdir}: another process is training in it."
    assert f"Error: {reason}" in logs[0], logs[0][-3000:]
    assert f"Error: process 0 could not start: {reason}" in logs[1], logs[1][-3000:]
    assert not any("Traceback" in log for log in logs)
    assert sorted(p.name for p in workdir.iterdir()) == []  # nothing written, not even a cache


def test_a_process_without_the_data_stops_the_others(tmp_path):
    """The archive is a relative path found only in process 0's folder (data missing on one host):
    process 1 is refused reading it, process 0 stops with that reason once it has read its own,
    and the workdir it had made for the run is gone."""
    split = cifar_files.random_split(32, seed=1)
    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir(), there.mkdir()
    cifar_files.cifar10_binary_tarball(here / "c.tar.gz", split, split)
    config = rr.write_config(tmp_path / "tiny.py", "c.tar.gz", **rr.TINY)
    workdir = tmp_path / "run"
    cluster = (f"--coordinator_address=127.0.0.1:{_free_port()}", "--num_processes=2")
    procs = [
        subprocess.Popen(
            rr.command(rr.main_args(config, workdir, *cluster, f"--process_id={i}")),
            cwd=cwd,
            env=rr.env(None),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i, cwd in ((0, here), (1, there))
    ]
    logs = _finish(procs, 120)
    assert [p.returncode for p in procs] == [2, 2], logs
    said = logs[1].rpartition("Error: ")[2]
    assert said.startswith("archive c.tar.gz does not exist"), logs[1][-3000:]
    assert f"Error: process 1 could not start: {said}" in logs[0], logs[0][-3000:]
    assert not workdir.exists()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_waiting_for_the_other_processes_ends_at_a_signal(tmp_path, signum):
    """Process 0 of two, alone: JAX waits in C++ for the other to join, deaf to Ctrl-C and SIGTERM
    until its own abort. Here the signal ends the wait at once, in one line."""
    config = rr.write_config(tmp_path / "tiny.py", None, **{**rr.TINY, "dataset": "synthetic"})
    address = f"127.0.0.1:{_free_port()}"
    cluster = (f"--coordinator_address={address}", "--num_processes=2", "--process_id=0")
    proc = _start(rr.main_args(config, tmp_path / "run", *cluster), rr.env(None))
    try:
        line = ""
        while "waiting up to" not in line:  # the joining line: then JAX's wait begins
            line = proc.stdout.readline()
            assert line, "the process ended before joining"
        time.sleep(1.0)
        proc.send_signal(signum)
        rest = proc.communicate(timeout=20)[0]
    finally:
        proc.kill()
    assert proc.returncode == 128 + signum, rest
    name = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
    assert rest.strip() == f"Interrupted ({name}).", rest
    assert not (tmp_path / "run").exists()


def test_a_process_that_never_joins_ends_the_wait_with_a_paragraph():
    """`_join` with a stand-in for jax.distributed.initialize: one that blocks past the time given
    (JAX's would end in a C++ abort) and one that fails (its error is raised in the caller)."""
    with pytest.raises(ValueError, match=r"Not every process joined within 0.2 s\. Start all"):
        distributed._join(lambda: time.sleep(5), 0.2)

    def refused():
        raise RuntimeError("task 2 is not in the cluster")

    with pytest.raises(RuntimeError, match="task 2 is not in the cluster"):
        distributed._join(refused, 5)


def test_distributed_says_it_waits_and_what_it_detected_when_the_others_never_join(
    monkeypatch, caplog
):
    """--distributed (JAX detects the cluster) logs its wait as the flags given by hand do, and a
    wait that times out names what JAX detected and what to check, not the flags' advice. JAX's
    initialize stands in: it records the cluster it detected, then waits."""
    from jax._src import distributed as jax_state  # noqa: PLC0415

    def detect_then_wait(*args, **kwargs):
        for name, value in (("coordinator_address", "node0:8476"), ("process_id", 3)):
            monkeypatch.setattr(jax_state.global_state, name, value)
        monkeypatch.setattr(jax_state.global_state, "num_processes", 4)
        time.sleep(5)

    monkeypatch.setattr(jax.distributed, "initialize", detect_then_wait)
    monkeypatch.setattr(distributed, "JOIN_TIMEOUT_S", 0.2)
    with (
        caplog.at_level("INFO", logger="absl"),  # whatever verbosity an earlier test left
        pytest.raises(distributed.JoinTimeout) as timed_out,
    ):
        distributed.initialize(auto=True)
    assert (
        "jax.distributed: --distributed: detecting the cluster (SLURM, Open MPI, a TPU pod) and "
        "joining it (waiting up to 0.2 s for the others)"
    ) in caplog.messages
    said = str(timed_out.value)
    assert said.startswith(
        "Not every process joined within 0.2 s. --distributed detected process 3 of 4, the "
        "coordinator (process 0) at node0:8476, from SLURM's, Open MPI's or the TPU pod's "
        "settings. Check that the job started every process with --distributed"
    ), said
    assert "--process_id from 0" not in said  # the advice for flags given by hand
    # JAX's state is private: a JAX without it (or without a part) gets the advice all the same.
    monkeypatch.setattr(jax_state, "global_state", None)
    monkeypatch.setattr(jax.distributed, "initialize", lambda *a, **k: time.sleep(5))
    with pytest.raises(distributed.JoinTimeout, match="had not finished detecting the cluster"):
        distributed.initialize(auto=True)


def test_processes_that_see_different_runs_do_not_start(monkeypatch):
    """A workdir that is not one shared folder: process 0 finds a checkpoint, process 1 none.
    `StartUp.ready` with the others' answers standing in for the gather."""
    answers = ["resume after step 8", "start afresh"]
    monkeypatch.setattr(distributed, "gather", lambda mine: answers)
    with pytest.raises(ValueError, match=r"do not agree on where the run stands \(process 0: "):
        distributed.StartUp().ready(answers[0])
    answers[1] = "refused: config.archive: no such file"
    with pytest.raises(ValueError, match="^process 1 could not start: config.archive: no such"):
        distributed.StartUp().ready(answers[0])


def test_a_refusal_the_others_cannot_hear_keeps_its_own_paragraph(monkeypatch):
    """A process refused at start-up tells the others through a gather; when that fails (another
    process is gone already), the refusal itself still ends this process, not the gather's error."""

    def gone(mine):  # JAX raises a gather's failure as a ValueError at start-up
        raise ValueError("Gloo AllGather failed: Connection closed by peer\nmore")

    monkeypatch.setattr(distributed, "gather", gone)
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    with pytest.raises(ConfigError, match="^config.archive: no such file$"), distributed.StartUp():
        raise ConfigError("config.archive: no such file")


def test_sigterm_after_joining_still_stops_the_process(tmp_path):
    """jax.distributed's preemption notifier takes SIGTERM over in C++ (it would be lost until the
    training loop's own handler): after joining, a SIGTERM still ends the process at once (143,
    one line) or, in the loop, after saving (75). One process of one, given by hand."""
    config = rr.write_config(tmp_path / "tiny.py", None, **{**rr.TINY, "dataset": "synthetic"})
    cluster = (f"--coordinator_address=127.0.0.1:{_free_port()}", "--num_processes=1")
    args = rr.main_args(
        config, tmp_path / "run", *cluster, "--process_id=0", "--config.num_epochs=50"
    )
    proc = _start(args, rr.env(None))
    try:
        line = ""
        while "data: " not in line:  # joined, and reading the data
            line = proc.stdout.readline()
            assert line, "the process ended before joining"
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=120)[0]
    finally:
        proc.kill()
    assert proc.returncode in (143, 75), rest[-3000:]


def test_a_process_that_dies_at_start_up_stops_the_others_in_one_paragraph(tmp_path):
    """kill -9 on process 1 once process 0 has read its data: process 0's next gather (the start-up
    agreement) fails with gloo's error, raised as a ValueError. It is the Process lost paragraph,
    exit 75, not a traceback followed by JAX's abort at its shutdown barrier a minute later."""
    config = rr.write_config(tmp_path / "tiny.py", None, **{**rr.TINY, "dataset": "synthetic"})
    cluster = (f"--coordinator_address=127.0.0.1:{_free_port()}", "--num_processes=2")
    workdir = tmp_path / "run"
    procs = [
        _start(rr.main_args(config, workdir, *cluster, f"--process_id={i}"), rr.env(None))
        for i in (0, 1)
    ]
    try:
        line = ""
        while "data: " not in line:  # process 0 has joined and read its data
            line = procs[0].stdout.readline()
            assert line, "process 0 ended before reading its data"
        procs[1].kill()
        log = " ".join(procs[0].communicate(timeout=60)[0].split())
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert procs[0].returncode == 75, log[-3000:]
    assert "Process lost: another process of this run stopped answering" in log, log[-3000:]
    assert "Traceback" not in log and "Check failure" not in log


def test_a_process_that_dies_stops_the_others_in_one_paragraph(tmp_path):
    """kill -9 on process 1 mid-epoch: process 0's next collective fails. It says so in one
    paragraph and exits 75 (run again to resume) soon after the death, not after a traceback and,
    a minute later, JAX's heartbeat or its C++ abort at the shutdown barrier. The time is counted
    from process 1's death, not from the start (a loaded machine takes most of a minute to start)."""
    config = rr.write_config(
        tmp_path / "tiny.py",
        None,
        **{**rr.TINY, "dataset": "synthetic", "synthetic_train_examples": 64},
    )
    address = f"127.0.0.1:{_free_port()}"
    cluster = (f"--coordinator_address={address}", "--num_processes=2")
    workdir = tmp_path / "run"
    procs = [
        _start(rr.main_args(config, workdir, *cluster, "--process_id=0"), rr.env(None)),
        subprocess.Popen(
            rr.command(rr.main_args(config, workdir, *cluster, "--process_id=1"), 3, 9),
            cwd=rr.REPO,
            env=rr.env(None),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    ]
    died = []  # when process 1 ended, seen by a thread that waits for it
    watcher = threading.Thread(target=lambda: died.append((procs[1].wait(), time.monotonic())))
    watcher.start()
    try:
        log = " ".join(procs[0].communicate(timeout=120)[0].split())
        ended = time.monotonic()
    finally:
        for p in procs:
            p.kill()
        watcher.join()
    assert died[0][0] == -9
    assert ended - died[0][1] < 30, f"{ended - died[0][1]:.0f} s after process 1 died"
    assert procs[0].returncode == 75, log[-3000:]
    assert "Process lost: another process of this run stopped answering" in log, log[-3000:]
    assert "Traceback" not in log and "Check failure" not in log
