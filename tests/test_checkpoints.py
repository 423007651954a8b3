"""swin_flax.checkpoints: what a look at a workdir's checkpoints may do."""

from swin_flax import checkpoints


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
