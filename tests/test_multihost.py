"""Multi-host on one machine: two processes on loopback (jax.distributed, gloo CPU collectives), one
CPU device each, train the same tiny run as one process with two devices; the parameters must agree.

The config has no CutMix (it mixes within each host's share of the batch, so the two layouts would
differ legitimately) and drop_path 0. Process 0 gets the flags, process 1 the environment variables.
"""

from __future__ import annotations

import socket
import subprocess

import numpy as np
import pytest

from tests import cifar_files
from tests import reliability_runs as rr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args, env) -> subprocess.Popen:
    return subprocess.Popen(
        rr.command(args),
        cwd=rr.REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
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
    procs = [
        _start(
            rr.main_args(
                config,
                multi,
                f"--coordinator_address={address}",
                "--num_processes=2",
                "--process_id=0",
            ),
            rr.env(None, devices=1),
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
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=300)[0])
    finally:
        for p in procs:
            p.kill()
    for p, log in zip(procs, logs, strict=True):
        assert p.returncode == 0, log[-3000:]
    assert "jax.distributed: process 0 of 2, 1 local / 2 global devices" in logs[0]
    assert "jax.distributed: process 1 of 2, 1 local / 2 global devices" in logs[1]

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
