"""swin_flax.checkpoints: what a look at a workdir's checkpoints may do, and asynchronous saves."""

import asyncio
import errno
import os
import shutil
import threading

import numpy as np
import pytest
from orbax.checkpoint.type_handlers import NumpyHandler

from swin_flax import checkpoints
from swin_flax.errors import CheckpointError, CheckpointWriteError, WorkdirMoved


def test_peek_opens_no_manager_without_a_step_folder(tmp_path, monkeypatch):
    """A series folder with no step in it (a new run's, being created by another process, or one
    holding only a half-written tmp folder) reads as "no checkpoint" without opening an orbax
    manager, whose collective steps would run out of turn with several processes."""

    def no_manager(*args, **kwargs):
        raise AssertionError("a manager was opened")

    monkeypatch.setattr(checkpoints, "_manager", no_manager)
    assert checkpoints.peek_meta(tmp_path) is None  # no folder
    latest = checkpoints.series_dir(tmp_path, "latest")
    latest.mkdir(parents=True)
    assert checkpoints.peek_meta(tmp_path) is None  # an empty series folder
    (latest / "4.orbax-checkpoint-tmp-1").mkdir()
    assert checkpoints.peek_meta(tmp_path) is None  # a save that never finished


def test_peek_reads_a_complete_step_without_a_manager(tmp_path, monkeypatch):
    """The record of the newest complete step is read as a file: a manager's creation is a barrier
    of every process, which a process whose --workdir holds no checkpoint never reaches (a folder
    that is not shared between hosts: both ended in gloo's C++ abort)."""
    ckpts = checkpoints.Checkpoints(tmp_path, asynchronous=False)
    ckpts.save("latest", 4, _state(4), {"step": 4, "epoch": 1})
    ckpts.save("latest", 8, _state(8), {"step": 8, "epoch": 2})
    ckpts.close()
    (checkpoints.series_dir(tmp_path, "latest") / "12.orbax-checkpoint-tmp-1").mkdir()

    def no_manager(*args, **kwargs):
        raise AssertionError("a manager was opened")

    monkeypatch.setattr(checkpoints, "_manager", no_manager)
    assert checkpoints.peek_meta(tmp_path) == {"step": 8, "epoch": 2}


def _state(step: int) -> dict:
    return {"w": np.arange(6.0, dtype=np.float32) * step, "step": np.int32(step)}


@pytest.fixture
def held_writes(monkeypatch):
    """Holds every background array write until the returned event is set (at most 60 s), so a
    test sees a save while its write is still in flight."""
    release = threading.Event()
    write = NumpyHandler._open_and_write

    async def held(self, *args, **kwargs):
        await asyncio.to_thread(release.wait, 60)
        return await write(self, *args, **kwargs)

    monkeypatch.setattr(NumpyHandler, "_open_and_write", held)
    return release


def test_a_save_returns_before_its_write_and_close_completes_it(tmp_path, held_writes):
    """`save` returns while the write is in flight (no step folder yet: orbax renames the tmp folder
    when complete); a read of the series waits for it; `close` leaves a complete checkpoint that a
    new reader restores."""
    ckpts = checkpoints.Checkpoints(tmp_path)
    latest = checkpoints.series_dir(tmp_path, "latest")
    ckpts.save("latest", 4, _state(4), {"step": 4})
    assert checkpoints.newest_step(latest) is None  # returned with the write held
    threading.Timer(0.2, held_writes.set).start()
    state, meta = ckpts.restore("latest", None)  # waits for the write in flight
    assert int(state["step"]) == 4 and meta == {"step": 4}

    held_writes.clear()
    ckpts.save("latest", 8, _state(8), {"step": 8})
    ckpts.save("best", 8, {"params": _state(8)["w"]}, {"step": 8})
    assert checkpoints.newest_step(latest) == 4
    threading.Timer(0.2, held_writes.set).start()
    ckpts.close()
    assert not list(tmp_path.glob("checkpoints/*/*.orbax-checkpoint-tmp*"))
    reader = checkpoints.Checkpoints(tmp_path, read_only=True)
    state, meta = reader.restore("latest", None)
    np.testing.assert_array_equal(state["w"], _state(8)["w"])
    assert int(state["step"]) == 8 and meta == {"step": 8}
    assert int(reader.restore("best", None)[1]["step"]) == 8
    reader.close()


# When one array's write fails, orbax ends its event loop while tensorstore still completes the other
# writes, whose callbacks then find the loop closed (an "unraisable" RuntimeError, orbax's own).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("surfaces_at", ["next save", "close"])
def test_a_failed_background_write_names_the_previous_checkpoint(
    tmp_path, monkeypatch, surfaces_at
):
    """A write that fails in the background (the disk filling up after `save` returned) raises the
    same CheckpointWriteError as a failed synchronous save, once, at the next save or at close; it
    names the checkpoint that is still the newest, which stays restorable."""
    ckpts = checkpoints.Checkpoints(tmp_path)
    ckpts.save("latest", 4, _state(4), {"step": 4})
    assert ckpts.latest_step() == 4  # waits for the write
    write = NumpyHandler._open_and_write

    async def full_disk(self, *args, **kwargs):
        await write(self, *args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(NumpyHandler, "_open_and_write", full_disk)
    ckpts.save("latest", 8, _state(8), {"step": 8})  # returns: the write fails later
    with pytest.raises(CheckpointWriteError) as raised:
        if surfaces_at == "next save":
            ckpts.save("latest", 12, _state(12), {"step": 12})
        else:
            ckpts.close()
    msg = str(raised.value)
    assert msg.startswith("could not write the 'latest' checkpoint of step 8 in "), msg
    assert "No space left on device" in msg and "Free disk space" in msg
    assert "the previous checkpoint (step 4) is intact" in msg, msg
    ckpts.close()  # raised once: closing again (or for the first time) is quiet
    assert checkpoints.newest_step(checkpoints.series_dir(tmp_path, "latest")) == 4
    state, meta = checkpoints.read_step(checkpoints.series_dir(tmp_path, "latest") / "4")
    np.testing.assert_array_equal(state["w"], _state(4)["w"])


def test_a_path_too_long_for_a_save_is_named_as_such(tmp_path):
    """A workdir whose checkpoint files' paths pass PATH_MAX, though the folder itself fits (a
    file system whose limits rundir.inspect could not foresee): the save's message says so, not
    "free disk space"."""
    from tests.test_rundir import path_of_length

    workdir = path_of_length(tmp_path, os.pathconf(tmp_path, "PC_PATH_MAX") - 1 - 60)
    ckpts = checkpoints.Checkpoints(workdir, asynchronous=False)
    with pytest.raises(CheckpointWriteError) as raised:
        ckpts.save("latest", 4, _state(4), {"step": 4})
    msg = str(raised.value)
    assert "File name too long" in msg and "Free disk space" not in msg, msg
    assert msg.endswith(
        "Its paths are longer than the file system allows: move the run to a folder of a shorter "
        "path and give that as --workdir; there was no earlier checkpoint in this series."
    ), msg[-300:]


def test_latest_is_not_written_after_its_best_failed(tmp_path, monkeypatch):
    """The loop saves best/ of a step, then latest/, whose record names that best: when the best
    write fails, latest/ is not written (it keeps its previous step: no record names a best that
    is not on disk) and the best write's error is raised."""
    ckpts = checkpoints.Checkpoints(tmp_path)
    ckpts.save("latest", 4, _state(4), {"step": 4})
    assert ckpts.latest_step() == 4
    real, tried = checkpoints._save, []

    def save(manager, step, items, previous):  # a full disk for best/ alone
        tried.append(manager.directory.name)
        if manager.directory.name == "best":
            raise CheckpointWriteError("could not write the 'best' checkpoint of step 8")
        real(manager, step, items, previous)

    monkeypatch.setattr(checkpoints, "_save", save)
    ckpts.save("best", 8, {"params": _state(8)["w"]}, {"step": 8})
    ckpts.save("latest", 8, _state(8), {"step": 8})
    with pytest.raises(CheckpointWriteError, match="'best' checkpoint of step 8"):
        ckpts.close()
    assert tried == ["best"]
    assert checkpoints.newest_step(checkpoints.series_dir(tmp_path, "latest")) == 4


def test_a_save_the_writer_finds_moved_is_not_written(tmp_path):
    """The writer thread asks `in_place` before each write: a workdir no longer in place (moved)
    gets no write, nor its step's saves queued behind it, and close raises the refusal."""
    ckpts = checkpoints.Checkpoints(tmp_path / "run", in_place=lambda: False)
    ckpts.save("best", 8, {"params": _state(8)["w"]}, {"step": 8})
    ckpts.save("latest", 8, _state(8), {"step": 8})
    with pytest.raises(WorkdirMoved) as raised:
        ckpts.close()
    assert raised.value.step == 8 and str(raised.value) == (
        f"--workdir {tmp_path / 'run'} was moved or renamed while the run trained: its "
        "checkpoints of step 8 still queued were not written, so as not to recreate that path. Run "
        "the same "
        "command again with --workdir set to its new path to resume it from its last checkpoint "
        "there."
    )
    for which in ("latest", "best"):  # the managers' empty folders alone
        assert os.listdir(checkpoints.series_dir(tmp_path / "run", which)) == []


def test_a_step_saved_again_replaces_the_one_on_disk(tmp_path):
    """A `best` checkpoint can be ahead of `latest` (with checkpoint_every_epochs > 1, an improved
    epoch that `latest` did not save, then a kill); the resumed run trains that epoch again, and its
    save of the same step replaces the one on disk instead of failing."""
    first = checkpoints.Checkpoints(tmp_path)
    first.save("best", 8, {"params": _state(1)["w"]}, {"step": 8})
    first.close()
    again = checkpoints.Checkpoints(tmp_path)
    again.save("best", 8, {"params": _state(2)["w"]}, {"step": 8, "again": True})
    again.close()
    state, meta = checkpoints.read_step(checkpoints.series_dir(tmp_path, "best") / "8")
    np.testing.assert_array_equal(state["params"], _state(2)["w"])
    assert meta == {"step": 8, "again": True}


@pytest.mark.parametrize("damage", ["meta", "state/_METADATA"])
def test_a_damaged_step_to_resume_from_is_named(tmp_path, damage):
    """A latest step whose record or tree description is gone: reading its record (before a run
    starts) or restoring it (when it resumes) is one paragraph naming the step and what to do, the
    cause cut to its first line."""
    state = {"params": {"w": np.ones((2, 3), np.float32)}, "opt_state": (np.zeros(3),), "step": 4}
    ckpts = checkpoints.Checkpoints(tmp_path)
    ckpts.save("latest", 4, state, {"epoch": 1})
    ckpts.close()
    step_dir = tmp_path / "checkpoints" / "latest" / "4"
    if damage == "meta":
        shutil.rmtree(step_dir / damage)
    else:
        (step_dir / damage).unlink()
    expected = (
        rf"checkpoint {step_dir} cannot be read \(\w+: [^\n]*\): it is incomplete or damaged\."
    )
    reader = checkpoints.Checkpoints(tmp_path, read_only=True)
    with pytest.raises(CheckpointError, match=expected + " Move that step folder"):
        if damage == "meta":
            checkpoints.peek_meta(tmp_path)
        else:
            reader.restore("latest", state)


def test_a_bucket_workdir_keeps_its_url(tmp_path, monkeypatch):
    """orbax wants absolute paths: a local workdir is made absolute, a gs:// one (README's
    multi-host runs) kept as it is (os.path.abspath made it a local folder named 'gs:')."""
    monkeypatch.chdir(tmp_path)
    assert (
        str(checkpoints.series_dir("gs://bucket/run", "best")) == "gs://bucket/run/checkpoints/best"
    )
    assert str(checkpoints.series_dir("run", "latest")) == f"{tmp_path}/run/checkpoints/latest"
