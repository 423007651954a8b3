"""One test per row of docs/errors.md: each bad input ends the run with one paragraph saying what to
do and exit status 2, before anything is compiled, and leaves the workdir exactly as it was.

Most rows run in-process through cli.friendly_errors (the entry point's own handler); the command
line typo and the workdir-that-is-a-file rows run scripts/main.py as a subprocess.
"""

from __future__ import annotations

import contextlib
import os
import re

import jax
import numpy as np
import pytest

from swin_flax import build, checkpoints, cli, rundir, train
from swin_flax.config import default_config
from swin_flax.errors import CheckpointError, ConfigError
from tests import cifar_files
from tests import reliability_runs as rr


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    d = tmp_path_factory.mktemp("cifar")
    return cifar_files.cifar10_binary_tarball(
        d / "cifar-10-binary.tar.gz",
        cifar_files.random_split(16, seed=1),
        cifar_files.random_split(8, seed=2),
    )


def tiny_config(archive):
    c = default_config()
    c.archive = str(archive)
    for k, v in rr.TINY.items():
        section, _, field = k.rpartition(".")
        (c[section] if section else c)[field] = v
    return c


def snapshot(path) -> dict[str, tuple[int, int]] | None:
    """Every file and folder under `path` with its size and mtime (None when it does not exist)."""
    if not os.path.lexists(path):
        return None
    if not os.path.isdir(path):
        st = os.lstat(path)  # a link: itself, its target may not exist
        return {".": (st.st_size, st.st_mtime_ns)}
    out = {}
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            p = os.path.join(root, name)
            st = os.stat(p)
            out[os.path.relpath(p, path)] = (st.st_size, st.st_mtime_ns)
    return out


@contextlib.contextmanager
def no_compiles():
    """Fails if XLA compiles anything inside the block."""
    compiled = []

    def listener(event, duration, **_):
        if event == "/jax/core/compile/backend_compile_duration":
            compiled.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert not compiled, f"{len(compiled)} XLA compilation(s) before the error"


def fails_cleanly(config, workdir, capsys) -> str:
    """Runs the loop under the entry point's handler; returns the one-paragraph message."""
    before = snapshot(workdir)
    with no_compiles(), pytest.raises(SystemExit) as exit_info, cli.friendly_errors():
        train.train_and_evaluate(config, str(workdir))
    assert exit_info.value.code == cli.EXIT_USER_ERROR
    assert snapshot(workdir) == before
    err = capsys.readouterr().err.strip()
    assert "\n\n" not in err and err.startswith("Error: "), err
    return " ".join(err.split())


def test_unknown_dataset(archive, tmp_path, capsys):
    c = tiny_config(archive)
    c.dataset = "imagenet"
    msg = fails_cleanly(c, tmp_path / "run", capsys)
    assert "config.dataset" in msg and "'imagenet' is not one of" in msg


def test_missing_archive(archive, tmp_path, capsys):
    c = tiny_config(archive)
    c.archive = str(tmp_path / "nowhere" / "cifar-10-binary.tar.gz")
    msg = fails_cleanly(c, tmp_path / "run", capsys)
    assert "does not exist" in msg and "--config.archive" in msg


def test_corrupt_archive(archive, tmp_path, capsys):
    broken = tmp_path / "cifar-10-binary.tar.gz"
    broken.write_bytes(archive.read_bytes()[:5000])  # a cut-off download
    c = tiny_config(archive)
    c.archive = str(broken)
    msg = fails_cleanly(c, tmp_path / "run", capsys)
    assert "truncated or corrupt" in msg and "download it again" in msg


def test_image_size_the_model_cannot_take(archive, tmp_path, capsys):
    c = tiny_config(archive)
    c.model.img_size = 30  # 30 / patch_size 4 is not a whole number of patches
    msg = fails_cleanly(c, tmp_path / "run", capsys)
    assert "config.model" in msg and "patch_size=4 does not divide img_size=30" in msg


def test_window_not_dividing_the_grid(archive, tmp_path, capsys):
    c = tiny_config(archive)
    c.model.update(img_size=32, window_size=3)  # 8x8 token grid
    msg = fails_cleanly(c, tmp_path / "run", capsys)
    assert "window_size=3 does not divide the stage-0 token grid 8x8" in msg


def test_batch_not_divisible_by_devices(archive, tmp_path, capsys):
    assert jax.device_count() == 2  # tests/conftest.py
    c = tiny_config(archive)
    c.batch_size = 9
    msg = fails_cleanly(c, tmp_path / "run", capsys)
    assert "config.batch_size" in msg and "not divisible by the 2 devices" in msg


@pytest.mark.parametrize("epochs", [0, -3])
def test_zero_or_negative_epochs(archive, tmp_path, capsys, epochs):
    c = tiny_config(archive)
    c.num_epochs = epochs
    msg = fails_cleanly(c, tmp_path / "run", capsys)
    assert f"config.num_epochs: must be a positive integer, got {epochs}" in msg


def test_unknown_config_field_in_a_config_file(archive, tmp_path, capsys):
    c = tiny_config(archive)
    c.learning_rat = 0.1  # a typo in a config file adds a field: it must not pass silently
    msg = fails_cleanly(c, tmp_path / "run", capsys)
    assert "unknown config field(s) config.learning_rat (did you mean config.learning_rate?)" in msg


def test_unknown_config_field_on_the_command_line(archive, tmp_path):
    config = rr.write_config(tmp_path / "tiny.py", archive, **rr.TINY)
    workdir = tmp_path / "run"
    out = rr.run(rr.main_args(config, workdir, "--config.learning_rat=0.1"), env=rr.env(None))
    assert out.returncode == 2
    msg = rr.text(out)
    assert msg.startswith("Error: bad command line") and "'learning_rat'" in msg, msg
    assert '(did you mean "learning_rate"' in msg and "Traceback" not in msg
    assert not workdir.exists()


def test_checkpoint_of_another_model(archive, tmp_path, capsys):
    workdir = tmp_path / "run"
    other = tiny_config(archive)
    other.model.embed_dim = 32
    ckpts = checkpoints.Checkpoints(workdir)
    meta = {"epoch": 1, "step": 2, "model": rundir.model_identity(other)}
    ckpts.save("latest", 2, {"params": {"w": np.zeros(3, np.float32)}}, meta)
    ckpts.close()
    msg = fails_cleanly(tiny_config(archive), workdir, capsys)
    assert "written for a different model (embed_dim: checkpoint 32 vs config 16)" in msg
    assert "a new --workdir" in msg

    # Same model, older block layout (written before stages under SCAN_MIN_DEPTH stopped scanning).
    workdir = tmp_path / "older"
    older = rundir.model_identity(tiny_config(archive))
    del older["scan_min_depth"]
    ckpts = checkpoints.Checkpoints(workdir)
    ckpts.save("latest", 2, {"params": {"w": np.zeros(3, np.float32)}}, {**meta, "model": older})
    ckpts.close()
    msg = fails_cleanly(tiny_config(archive), workdir, capsys)
    assert "(scan_min_depth: checkpoint None vs config 3)" in msg


def test_workdir_behind_a_link_to_nothing(archive, tmp_path, capsys):
    """A workdir that is (or lies under) a link whose target does not exist, such as a disk not
    mounted: named before any data is read, not as "File exists"."""
    os.symlink(tmp_path / "not_mounted" / "runs", tmp_path / "runs")
    for workdir in (tmp_path / "runs", tmp_path / "runs" / "demo", tmp_path / "runs" / ".." / "x"):
        msg = fails_cleanly(tiny_config(archive), workdir, capsys)
        assert f"{tmp_path / 'runs'} is a link to {tmp_path / 'not_mounted' / 'runs'}" in msg, msg
        assert "which does not exist (or loops). Create (or mount) its target, or give" in msg
        assert "data:" not in msg


def test_workdir_with_brackets_is_refused(archive, tmp_path, capsys):
    """A path with [ and ] (runs/lr[1e-3]): orbax saves there but reads the path back as a
    pattern, so its checkpoints could never be restored (a run could not resume). Refused first."""
    for workdir, instead in (
        (tmp_path / "lr[1e-3]", tmp_path / "lr_1e-3_"),
        (tmp_path / "a[1]" / "run", tmp_path / "a_1_" / "run"),
    ):
        msg = fails_cleanly(tiny_config(archive), workdir, capsys)
        assert f"--workdir {workdir}: a folder of its path holds [ and ], which orbax" in msg, msg
        assert msg.endswith(f"Give a path without them, such as {instead}."), msg
        assert "data:" not in msg and not workdir.exists()
    for fine in ("f[a/b]g/run", "d[x/run", "e]x[y/run"):  # no folder named as a glob's [...]
        assert rundir.inspect(tiny_config(archive), tmp_path / fine) == (None, False)
    # As this refusal's reason: such a folder's checkpoint saves, and cannot be restored.
    ckpts = checkpoints.Checkpoints(tmp_path / "b[1]")
    ckpts.save("latest", 1, {"w": np.zeros(2, np.float32)}, {"step": 1})
    ckpts.close()
    with pytest.raises(CheckpointError, match="cannot be read"):
        checkpoints.read_step(tmp_path / "b[1]" / "checkpoints" / "latest" / "1")


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
def test_workdir_that_cannot_be_created(archive, capsys, monkeypatch):
    """A folder the checks before any work cannot foresee (a pseudo file system, which os.access
    may call writable, as it does for root): one paragraph naming --workdir, not the OS error."""
    monkeypatch.setattr(os, "access", lambda path, mode: True)  # whoever runs the tests
    msg = fails_cleanly(tiny_config(archive), "/proc/swin_flax_test_run", capsys)
    assert msg.startswith("Error: --workdir /proc/swin_flax_test_run cannot be created ("), msg
    assert msg.endswith("): give a folder you can create."), msg


def test_workdir_that_is_a_file(archive, tmp_path):
    config = rr.write_config(tmp_path / "tiny.py", archive, **rr.TINY)
    workdir = tmp_path / "run.txt"
    workdir.write_text("not a folder")
    before = snapshot(workdir)
    out = rr.run(rr.main_args(config, workdir), env=rr.env(None))
    assert out.returncode == 2
    msg = rr.text(out)
    assert re.search(r"Error: --workdir \S+run\.txt is a file, not a folder", msg), msg[-2000:]
    assert "Traceback" not in msg
    assert snapshot(workdir) == before


def test_archive_given_with_the_synthetic_data_set(archive, tmp_path, capsys):
    c = tiny_config(archive)
    c.dataset = "synthetic"
    msg = fails_cleanly(c, tmp_path / "run", capsys)
    assert "config.archive" in msg and "dataset='synthetic' is not read from archives" in msg


def test_batch_larger_than_the_data_set(archive, tmp_path, capsys):
    c = tiny_config(archive)
    c.batch_size = 32  # the archive holds 16 training images
    msg = fails_cleanly(c, tmp_path / "run", capsys)
    assert "config.batch_size: 32 is larger than the 16 training images" in msg
    assert "at most 16" in msg


def _checkpointed_run(workdir, config, epoch: int, step: int, steps_per_epoch: int) -> None:
    """A workdir as a run leaves it: config files and a `latest` checkpoint at `step`."""
    workdir.mkdir(parents=True)
    (workdir / "config.txt").write_text("the earlier run's config")
    meta = {
        "epoch": epoch,
        "step": step,
        "steps_per_epoch": steps_per_epoch,
        "best_accuracy": 0.5,
        "best_epoch": epoch,
        "model": rundir.model_identity(config),
    }
    ckpts = checkpoints.Checkpoints(workdir)
    ckpts.save("latest", step, {"params": {"w": np.zeros(3, np.float32)}}, meta)
    ckpts.close()


def test_fewer_epochs_than_already_trained(archive, tmp_path, capsys):
    """Both numbers named; the workdir (config files included) left exactly as it was."""
    c = tiny_config(archive)
    workdir = tmp_path / "run"
    _checkpointed_run(workdir, c, epoch=3, step=6, steps_per_epoch=2)
    c.num_epochs = 2
    msg = fails_cleanly(c, workdir, capsys)
    assert "config.num_epochs" in msg and "the end of epoch 3" in msg
    assert "--config.num_epochs=2" in msg and "--config.num_epochs=3 or more" in msg


def test_failed_start_leaves_an_existing_run_untouched(archive, tmp_path, capsys):
    """A start that fails on its data (after the checkpoint checks passed) writes no config file,
    no events file and no checkpoint into the existing workdir."""
    broken = tmp_path / "cifar-10-binary.tar.gz"
    broken.write_bytes(archive.read_bytes()[:5000])
    c = tiny_config(archive)
    workdir = tmp_path / "run"
    _checkpointed_run(workdir, c, epoch=1, step=2, steps_per_epoch=2)
    c.archive = str(broken)
    msg = fails_cleanly(c, workdir, capsys)
    assert "truncated or corrupt" in msg
    assert not list(workdir.glob("events.out.tfevents.*"))


def test_resuming_with_another_batch_size(archive, tmp_path, capsys):
    """A checkpoint of 3 steps per epoch; this config gives 16 images / batch 8 = 2."""
    c = tiny_config(archive)
    workdir = tmp_path / "run"
    _checkpointed_run(workdir, c, epoch=1, step=3, steps_per_epoch=3)
    msg = fails_cleanly(c, workdir, capsys)
    assert "config.batch_size: the run in" in msg and "has 3 steps per epoch, this config 2" in msg


def test_out_of_memory_is_one_paragraph_naming_what_makes_a_step_smaller(capsys):
    """A real allocation that JAX cannot make (4 TiB): one paragraph and exit 1, no traceback;
    other runtime errors keep theirs."""
    with pytest.raises(SystemExit) as exit_info, cli.friendly_errors():
        jax.numpy.zeros((2**40,), np.float32).block_until_ready()
    assert exit_info.value.code == 1
    err = " ".join(capsys.readouterr().err.split())
    assert err.startswith("Out of memory: the device's memory ran out (RESOURCE_EXHAUSTED: "), err
    assert "--config.num_runs" in err and "--config.batch_size" in err
    with pytest.raises(SystemExit) as exit_info, cli.friendly_errors():
        np.zeros(2**48, np.uint8)  # 256 TiB: beyond any host's address space (huge img_size)
    assert exit_info.value.code == 1
    err = " ".join(capsys.readouterr().err.split())
    assert err.startswith("Out of memory: the host's memory ran out (Unable to allocate 256."), err
    with pytest.raises(SystemExit) as exit_info, cli.friendly_errors():  # as a pmapped step's
        raise RuntimeError(
            "INTERNAL: Error dispatching computation: %pmap: Out of memory allocating 2560000000000 "
            "bytes.\nmore lines"
        )
    assert exit_info.value.code == 1
    err = " ".join(capsys.readouterr().err.split())
    assert err.startswith("Out of memory: the device's memory ran out (INTERNAL: Error dispatch")
    with pytest.raises(RuntimeError, match="another error"), cli.friendly_errors():
        raise RuntimeError("another error")


def test_more_steps_than_the_step_counter_holds(archive, tmp_path, capsys):
    """The train state counts steps in int32: a run of 2**31 steps or more is refused."""
    c = tiny_config(archive)
    c.num_epochs = 2**31
    msg = fails_cleanly(c, tmp_path / "run", capsys)
    assert msg.startswith(f"Error: config.num_epochs: {2**31} epochs of ")
    assert "step counter holds (2**31 - 1); train at most " in msg


def test_a_schedule_longer_than_its_table_may_hold(archive, tmp_path, capsys):
    """The schedule is a table of learning rates: 10**12 warmup epochs (a typo) filled memory for
    minutes while the table was built; refused before anything is built, naming the bound."""
    c = tiny_config(archive)
    c.warmup_epochs = 10**12
    msg = fails_cleanly(c, tmp_path / "run", capsys)
    assert msg == (
        f"Error: config.warmup_epochs: a schedule of {10**12} + 10 epochs (warmup_epochs + "
        f"cosine_epochs) holds {10**12 + 11:,} learning rates, one per epoch: more than its table "
        f"may ({2**22:,}). Make the two at most {2**22 - 1:,} epochs together."
    )
    c.warmup_epochs, c.schedule = 1, "cosine_step"  # one per step: 2 steps of 8 of the 16 images
    c.cosine_epochs = 2**21
    msg = fails_cleanly(c, tmp_path / "run", capsys)
    assert msg.startswith(f"Error: config.cosine_epochs: a schedule of 1 + {2**21} epochs ")
    assert msg.endswith(
        f"one per step, 2 an epoch: more than its table may ({2**22:,}). Make the two at most "
        f"{(2**22 - 1) // 2:,} epochs together, or give schedule='cosine_epoch' (one per epoch)."
    )
    c.schedule, c.cosine_epochs = "cosine_epoch", 2**22  # one step an epoch: still one per epoch
    with pytest.raises(ConfigError) as e:
        build.check_run_length(c, 1)
    assert str(e.value).endswith(
        f"one per epoch: more than its table may ({2**22:,}). Make the two at most {2**22 - 1:,} "
        "epochs together."
    )


def test_console_drops_asyncios_never_retrieved_reads_of_a_failed_checkpoint_read():
    """A damaged checkpoint's paragraph is followed by nothing: asyncio's 'never retrieved' lines of
    orbax's other failed reads are dropped; asyncio's other errors are kept."""
    import logging  # noqa: PLC0415

    def record(msg):
        return logging.LogRecord(
            "asyncio", logging.ERROR, "asyncio/base_events.py", 1, msg, (), None
        )

    keep = cli._ProjectLines().filter
    assert not keep(record("Future exception was never retrieved\nfuture: <Future finished>"))
    assert keep(record("Exception in callback ..."))


@pytest.mark.parametrize(
    "kwargs, env, expected",
    [
        (dict(coordinator_address="node0", num_processes=2, process_id=0), {}, "is not HOST:PORT"),
        (dict(coordinator_address="n:1", num_processes=0, process_id=0), {}, "at least 1 process"),
        (dict(coordinator_address="node0:99999", num_processes=2, process_id=0), {}, "1 to 65535"),
        (  # the one missing, alone explained
            dict(coordinator_address="node0:1234", num_processes=2),
            {},
            "needs --process_id as well: this process's index, 0 on the coordinator's host. Under",
        ),
        (dict(coordinator_address="node0:1234"), {}, "--num_processes and --process_id as well"),
        (dict(coordinator_address="node0:1234", num_processes=2, process_id=2), {}, "0 to num_"),
        (
            dict(process_id=-1),
            {"JAX_COORDINATOR_ADDRESS": "a:1", "JAX_NUM_PROCESSES": "2"},
            "(From the environment: JAX_COORDINATOR_ADDRESS=a:1, JAX_NUM_PROCESSES=2.)",
        ),
        (dict(num_processes=2), {}, "needs --coordinator_address=HOST:PORT"),
        (dict(process_id=1), {}, "process_id=1 needs --coordinator_address=HOST:PORT"),  # was a run
        ({}, {"JAX_NUM_PROCESSES": "2"}, "(From the environment: JAX_NUM_PROCESSES=2.)"),
        ({}, {"JAX_NUM_PROCESSES": "two"}, "JAX_NUM_PROCESSES='two' is not a whole number"),
    ],
)
def test_multi_process_flags_that_do_not_agree(kwargs, env, expected, monkeypatch):
    """Refused, naming the flag, before JAX is started (which would abort or wait 300 s)."""
    from swin_flax import distributed

    for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(jax.distributed, "initialize", lambda *a, **k: pytest.fail("started"))
    with pytest.raises(ValueError, match=re.escape(expected)):
        distributed.initialize(**kwargs)


def test_a_coordinator_port_in_use_is_refused(monkeypatch):
    """Process 0's port taken by another program: JAX's coordinator would end in a segmentation
    fault; refused before it starts."""
    import socket

    from swin_flax import distributed

    monkeypatch.setattr(jax.distributed, "initialize", lambda *a, **k: pytest.fail("started"))
    with socket.create_server(("", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(ValueError, match=f"Port {port} is in use on this machine") as e:
            distributed.initialize(
                coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=0
            )
    # Also what a second process of the run given --process_id=0 by mistake meets.
    assert "also given --process_id=0?): give every process its own --process_id" in str(e.value)


def test_process_other_than_0_waits_for_process_0_then_says_so(monkeypatch):
    """No C++ abort and stack trace when process 0 never answers: a sentence after the timeout; and
    once process 0's port answers, the wait ends."""
    import socket

    from swin_flax import distributed

    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        port = listening.getsockname()[1]
        address = f"127.0.0.1:{port}"
        with pytest.raises(ValueError, match=f"Process 0 did not answer at {address} within 1 s"):
            distributed._wait_for_coordinator(address, "127.0.0.1", port, 1)  # not listening yet
        listening.listen()
        distributed._wait_for_coordinator(address, "127.0.0.1", port, 1)
    # A host name that does not resolve (retried: a cluster's DNS may name a machine once it is up).
    with pytest.raises(
        ValueError, match=r"host 'no-such-host\.invalid' \(in no-such-host\S+ was not"
    ):
        distributed._wait_for_coordinator("no-such-host.invalid:1", "no-such-host.invalid", 1, 1)


def test_multi_process_flags_on_the_command_line(archive, tmp_path):
    config = rr.write_config(tmp_path / "tiny.py", archive, **rr.TINY)
    workdir = tmp_path / "run"
    args = ("--coordinator_address=127.0.0.1:1234", "--num_processes=2")
    out = rr.run(rr.main_args(config, workdir, *args), env=rr.env(None))
    assert out.returncode == 2
    msg = rr.text(out)
    assert msg.startswith("Error: --coordinator_address needs --process_id as well"), msg[-2000:]
    assert "Traceback" not in msg and not workdir.exists()


def test_distributed_without_a_cluster_says_what_it_reads(tmp_path):
    """--distributed lets JAX find the cluster; outside one, JAX's bare 'coordinator_address should
    be defined.' becomes a paragraph that names the ways to run."""
    config = rr.write_config(tmp_path / "tiny.py", None, **{**rr.TINY, "dataset": "synthetic"})
    workdir = tmp_path / "run"
    out = rr.run(rr.main_args(config, workdir, "--distributed"), env=rr.env(None))
    assert out.returncode == 2
    msg = rr.text(out)
    said = "Error: --distributed found no cluster to join"
    assert re.match(r"\d\d:\d\d:\d\d jax.distributed: --distributed: detecting the", msg), msg
    assert msg.partition(" (waiting up to 300 s for the others) ")[2].startswith(said), msg[-2000:]
    assert "give --coordinator_address, --num_processes and --process_id" in msg
    assert "Traceback" not in msg and not workdir.exists()
