"""swin_flax.rundir: where a run stands, from its latest checkpoint's record, and its summary."""

import io
import os
import pathlib
import shlex
import sys

import pytest

from swin_flax import errors, rundir
from swin_flax.errors import ConfigError

WORKDIR = pathlib.Path("runs/x")


def record(**fields):
    return {"best_accuracy": 0.5, "best_epoch": 1, **fields}


def save_epoch_1(workdir, config) -> None:
    """A checkpoint of `config`'s model at the end of epoch 1 (4 steps) in `workdir`."""
    from swin_flax import checkpoints

    meta = record(epoch=1, step=4, steps_per_epoch=4, test_accuracy=0.5)
    ckpts = checkpoints.Checkpoints(workdir)
    ckpts.save("latest", 4, {"step": 4}, {**meta, "model": rundir.model_identity(config)})
    ckpts.close()


@pytest.mark.parametrize(
    "saved, num_epochs, finished",
    [
        (record(epoch=2, step=200, steps_per_epoch=100, test_accuracy=0.5), 2, True),
        (record(epoch=2, step=200, steps_per_epoch=100, test_accuracy=0.5), 3, False),
        (record(epoch=1, step=150, steps_per_epoch=100), 2, False),  # stopped within epoch 2
        # Records written before steps_per_epoch was kept: only epoch ends hold a test accuracy.
        (record(epoch=2, step=64, test_accuracy=0.5), 2, True),
        (record(epoch=2, step=70), 3, False),
    ],
)
def test_finished_or_not(saved, num_epochs, finished):
    assert rundir.check_num_epochs(saved, num_epochs, WORKDIR) is finished


@pytest.mark.parametrize(
    "saved, num_epochs, done, advice",
    [
        (record(epoch=3, step=300, steps_per_epoch=100), 2, "the end of epoch 3", 3),
        # Stopped within epoch 2: 1 epoch is not enough, 2 are.
        (record(epoch=1, step=150, steps_per_epoch=100), 1, "step 50 of epoch 2", 2),
        (record(epoch=3, step=96, test_accuracy=0.5), 2, "3 epochs", 3),
        (record(epoch=2, step=70), 2, "2 epochs", 3),  # an old record stopped within epoch 3
    ],
)
def test_fewer_epochs_than_trained_is_refused_with_what_to_pass(saved, num_epochs, done, advice):
    with pytest.raises(ConfigError) as e:
        rundir.check_num_epochs(saved, num_epochs, WORKDIR)
    msg = str(e.value)
    assert f"trained to {done}" in msg or f"trained to global step {saved['step']} ({done})" in msg
    assert f"--config.num_epochs={num_epochs}." in msg
    assert f"Pass --config.num_epochs={advice} or more" in msg


def test_summary_from_a_record_covers_every_session():
    totals = {"sessions": 3, "wall_seconds": 100.0, "train_seconds": 80.0, "trained_images": 4000}
    saved = record(epoch=4, step=40, test_accuracy=0.75, totals=totals)
    summary = rundir.run_summary(saved, seed=0)
    assert summary["sessions"] == 3 and summary["train_images_per_sec"] == pytest.approx(50.0)
    assert summary["final_test_accuracy"] == 0.75 and summary["epochs"] == 4
    lines = rundir.summary_lines(summary, "/w")
    assert lines[0] == "best test accuracy 0.5000 at epoch 1; final 0.7500 after 4 epochs"
    assert (
        lines[1] == "trained 1m20s (compiles included) at 50 images/s, 1m40s in all over 3 sessions"
    )
    # The checkpoints relative to the run (a moved or copied one's summary.json stays true).
    assert summary["checkpoints"] == "checkpoints"
    assert lines[-1] == "checkpoints in /w/checkpoints (best/ and latest/)"
    # A record from before sessions were counted: no totals line, no error.
    assert len(rundir.summary_lines(rundir.run_summary(record(epoch=1, step=4), seed=0), "/w")) == 2


def test_position_counts_epochs_from_one():
    assert rundir.position(0, 4) == "global step 0"
    assert rundir.position(2, 4) == "global step 2 (step 2 of epoch 1)"
    assert rundir.position(8, 4) == "global step 8 (the end of epoch 2)"


def test_a_workdir_that_cannot_be_created_or_written(tmp_path, monkeypatch):
    """A run that will train needs a folder it can write, or create: refused before any work. A
    finished run only prints its summary: a read-only folder of one is fine."""
    from swin_flax.config import default_config

    (tmp_path / "afile").write_text("x")
    with pytest.raises(ConfigError, match=r"run cannot be created: \S+afile is a file"):
        rundir.inspect(default_config(), tmp_path / "afile" / "sub" / "run")
    # The permission itself (os.access: root, as in CI, may write anywhere).
    monkeypatch.setattr(rundir.os, "access", lambda path, mode: False)
    with pytest.raises(ConfigError, match=r"new cannot be written: \S+ is not writable by this"):
        rundir.inspect(default_config(), tmp_path / "new")
    c = default_config()
    c.num_epochs = 1
    save_epoch_1(tmp_path / "done", c)
    assert rundir.inspect(c, tmp_path / "done")[1]  # finished: its summary, nothing written


def path_of_length(folder: pathlib.Path, n: int) -> pathlib.Path:
    """A path of `n` characters under `folder`, of names of 199 characters (and one shorter)."""
    room = n - len(str(folder))
    k = (room - 2) // 200  # the last name: 1 to 200 characters
    return folder.joinpath(*["d" * 199] * k, "e" * (room - 200 * k - 1))


def test_a_workdir_path_too_long_for_the_run_is_refused_creating_nothing(tmp_path):
    """A folder name past NAME_MAX, or a path that, with the deepest file a run writes below it
    (runfiles.DEEPEST_FILE, measured in test_reliability.py), passes PATH_MAX: refused before any
    work, nothing created (the first save would fail, after a whole epoch)."""
    from swin_flax import runfiles
    from swin_flax.config import default_config

    name_max, path_max = os.pathconf(tmp_path, "PC_NAME_MAX"), os.pathconf(tmp_path, "PC_PATH_MAX")
    long_name = tmp_path / "name" / ("n" * (name_max + 1)) / "run"
    with pytest.raises(ConfigError) as e:
        rundir.inspect(default_config(), long_name)
    shown = f"{str(long_name)[:60]}...{str(long_name)[-40:]}"
    assert str(e.value) == (
        f"--workdir {shown}: its folder name {'n' * 30}... has {name_max + 1} characters, more than "
        f"the {name_max} its file system allows (NAME_MAX). Give shorter folder names."
    )
    # A path 100 short of PATH_MAX: the folder fits, the files below it do not.
    deep = path_of_length(tmp_path / "deep", path_max - 1 - 100)
    with pytest.raises(ConfigError) as e:
        rundir.inspect(default_config(), deep)
    n, deepest = len(str(deep)), runfiles.DEEPEST_FILE
    assert str(e.value) == (
        f"--workdir {str(deep)[:60]}...{str(deep)[-40:]} is too long: {n} characters as an "
        f"absolute path, and the files a run writes below it add up to {deepest} more, past the "
        f"{path_max - 1} the system allows (PATH_MAX). Give a path of at most "
        f"{path_max - 1 - deepest} characters."
    )
    assert os.listdir(tmp_path) == []
    short = path_of_length(tmp_path / "short", path_max - 1 - deepest)  # the longest that fits
    assert rundir.inspect(default_config(), short) == (None, False)


def test_a_workdir_inside_a_runs_checkpoints_is_refused_naming_the_run(tmp_path):
    """--workdir RUN/checkpoints (or a series or step folder under it) would start a new run
    inside the old one's checkpoints: refused, naming RUN; RUN itself resumes."""
    from swin_flax import evaluate
    from swin_flax.config import default_config

    c = default_config()
    c.num_epochs = 2
    save_epoch_1(tmp_path / "run", c)
    rundir.write_config(c, tmp_path / "run")
    for inner in ("checkpoints", "checkpoints/latest", "checkpoints/latest/4", "checkpoints/x"):
        with pytest.raises(
            ConfigError,
            match=r"is inside the checkpoints of the run in \S+/run: pass --workdir \S+/run to resume",
        ):
            rundir.inspect(c, tmp_path / "run" / inner)
        with pytest.raises(errors.CheckpointError, match=r"here --workdir \S+/run\.$"):
            evaluate.open_run(str(tmp_path / "run" / inner), None)
    assert rundir.inspect(c, tmp_path / "run")[0]["step"] == 4
    save_epoch_1(tmp_path / "my run", c)  # a space: the suggested flag is quoted for the shell
    rundir.write_config(c, tmp_path / "my run")
    with pytest.raises(ConfigError) as e:
        rundir.inspect(c, tmp_path / "my run" / "checkpoints")
    suggested = str(e.value).partition(": pass ")[2].partition(" to resume")[0]
    assert shlex.split(suggested) == ["--workdir", str(tmp_path / "my run")]


def test_a_new_run_one_level_off_is_refused(tmp_path, monkeypatch):
    """A new run in a run's evaluation reports (RUN/eval, or a folder in it; also given relative
    from inside RUN), or in the folder that holds runs, is refused naming what is there; a new
    folder beside the runs, and the runs themselves, are fine."""
    from swin_flax.config import default_config

    c = default_config()
    c.num_epochs = 2
    for name in ("a", "b", "c", "d"):
        save_epoch_1(tmp_path / "runs" / name, c)
        rundir.write_config(c, tmp_path / "runs" / name)
    (tmp_path / "runs" / "a" / "eval" / "best_4").mkdir(parents=True)
    for inner in ("eval", "eval/best_4", "eval/new"):
        with pytest.raises(ConfigError) as e:
            rundir.inspect(c, tmp_path / "runs" / "a" / inner)
        assert str(e.value) == (
            f"--workdir {tmp_path}/runs/a/{inner} is in the evaluation reports of the run in "
            f"{tmp_path}/runs/a (scripts/evaluate.py writes them there): pass --workdir "
            f"{tmp_path}/runs/a to resume that run, or give another folder for a new run."
        )
    monkeypatch.chdir(tmp_path / "runs" / "a")
    with pytest.raises(ConfigError, match="is in the evaluation reports of the run in"):
        rundir.inspect(c, "eval")
    with pytest.raises(ConfigError) as e:
        rundir.inspect(c, tmp_path / "runs")
    runs = tmp_path / "runs"
    assert str(e.value) == (
        f"--workdir {runs} holds other runs ({runs}/a, {runs}/b, {runs}/c and 1 more): each run "
        f"has a folder of its own. Give a new one, such as {runs}/NAME, or one of those to resume it."
    )
    assert rundir.inspect(c, runs / "e") == (None, False)
    assert rundir.inspect(c, runs / "b")[0]["step"] == 4


def test_a_run_that_lost_its_latest_checkpoints_is_refused(tmp_path):
    """A run folder whose checkpoints/latest is gone (deleted to save disk) but which shows that
    it trained (summary.json, or a best/ step past the epoch of its first latest/ step) is refused,
    naming what it holds; a run stopped before its first latest/ step starts afresh as before."""
    from swin_flax import checkpoints
    from swin_flax.config import default_config

    c = default_config()
    c.num_epochs, c.checkpoint_every_epochs = 4, 2

    def best_of_epoch(workdir, epoch):  # best/ written, then killed before latest/
        rundir.write_config(c, workdir)
        ckpts = checkpoints.Checkpoints(workdir)
        meta = record(epoch=epoch, step=4 * epoch, steps_per_epoch=4, test_accuracy=0.5)
        ckpts.save("best", 4 * epoch, {"params": {"w": 1.0}}, meta)
        ckpts.close()

    for epoch in (1, 2):  # latest/ first written at epoch 2, after best/
        best_of_epoch(tmp_path / str(epoch), epoch)
        assert rundir.inspect(c, tmp_path / str(epoch)) == (None, False)
    # The run's own checkpoint_every_epochs counts, not this command's (it may change on resume).
    more_often = c.copy_and_resolve_references()
    more_often.checkpoint_every_epochs = 1
    assert rundir.inspect(more_often, tmp_path / "2") == (None, False)
    rundir.write_config(c, tmp_path / "started")  # killed in its first epoch
    (tmp_path / "started" / "events.out.tfevents.1").write_bytes(b"")
    assert rundir.inspect(c, tmp_path / "started") == (None, False)

    best_of_epoch(tmp_path / "3", 3)  # latest/ had epoch 2's step
    with pytest.raises(ConfigError) as e:
        rundir.inspect(c, tmp_path / "3")
    assert str(e.value) == (
        f"--workdir {tmp_path}/3 holds a run that trained (config.json, checkpoints/best/12) but no "
        f"checkpoint in {tmp_path}/3/checkpoints/latest to resume or extend it from: a start "
        "afresh would delete its curves and replace its best/ and summary.json. Its best/12 still "
        "serves scripts/evaluate.py, predict.py and export.py. To train again, give a new "
        "--workdir (or move this one away)."
    )
    (tmp_path / "started" / "summary.json").write_text("{}")  # finished, then best/ deleted too
    with pytest.raises(ConfigError) as e:
        rundir.inspect(c, tmp_path / "started")
    assert "trained (config.json, summary.json, TensorBoard events) but no" in str(e.value)
    assert "best/" in str(e.value) and "still serves" not in str(e.value)


def test_a_workdir_another_process_trains_in_is_refused(tmp_path):
    """A process holding the workdir's lock (as a run of train_and_evaluate does): another run
    there is refused before anything is written; once it ends, the folder can be claimed."""
    import subprocess
    import sys

    from swin_flax import train
    from tests.test_train import tiny_config

    workdir = tmp_path / "run"
    workdir.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from swin_flax import rundir; "
         f"c = rundir.Claim({str(workdir)!r}).__enter__(); print('held', flush=True); "
         "sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline() == "held\n"
        c = tiny_config(None, epochs=1)
        c.archive, c.dataset = None, "synthetic"
        with pytest.raises(ConfigError, match="another process is training in it"):
            train.train_and_evaluate(c, str(workdir))
        assert not any(workdir.iterdir())
    finally:
        holder.communicate("")  # ends the holder: the system drops its lock
    with rundir.Claim(workdir), pytest.raises(ConfigError, match="another process"):
        rundir.Claim(workdir).take()  # a second claim, even from this process, is refused
    with rundir.Claim(workdir):  # the first was released on leaving its block
        pass


def test_a_claim_tells_where_its_folder_went(tmp_path):
    """Claim.moved: None while --workdir names the claimed folder; its new path once renamed, even
    with another folder made at the old path; '' once deleted; None without a claim."""
    workdir, moved = tmp_path / "run", tmp_path / "moved"
    workdir.mkdir()
    with rundir.Claim(workdir) as claim, rundir.Claim(workdir, active=False) as other:
        assert claim.moved() is None
        workdir.rename(moved)
        assert claim.moved() == str(moved) and other.moved() is None
        workdir.mkdir()  # a new folder at the old path is not the run's
        assert claim.moved() == str(moved)
        workdir.rmdir()
        moved.rename(workdir)
        assert claim.moved() is None
        workdir.rmdir()
        assert claim.moved() == ""


def test_a_claim_of_a_relative_workdir_sees_its_parent_renamed(tmp_path, monkeypatch):
    """--workdir run given in runs/, then runs/ renamed: the working folder follows it, but the
    checkpoints go to the absolute path fixed at the start, which is gone: moved."""
    (tmp_path / "runs" / "run").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "runs")
    with rundir.Claim("run") as claim:
        (tmp_path / "runs").rename(tmp_path / "runs2")
        assert claim.moved() == str(tmp_path / "runs2" / "run")


def test_config_json_records_absolute_paths(tmp_path, monkeypatch):
    """A relative --config.archive / data_dir / pretrained is recorded as the absolute path it
    named (evaluate, run from another folder, reads the record); a URL as it is. Resuming with the
    relative path given again is not a change of pretrained."""
    import json

    from swin_flax.config import default_config

    monkeypatch.chdir(tmp_path)
    c = default_config()
    c.archive, c.data_dir, c.pretrained = "data dir/c.tar.gz", "gs://bucket/tfds", "~/swin.pth"
    rundir.write_config(c, tmp_path / "run")
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())
    assert recorded["archive"] == str(tmp_path / "data dir" / "c.tar.gz")
    assert recorded["data_dir"] == "gs://bucket/tfds"
    assert recorded["pretrained"] == os.path.join(os.path.expanduser("~"), "swin.pth")
    assert c.archive == "data dir/c.tar.gz"  # the config itself is left as given
    save_epoch_1(tmp_path / "run", c)
    warnings = []
    monkeypatch.setattr(rundir.logging, "warning", lambda *args: warnings.append(args))
    c.num_epochs = 2
    assert rundir.inspect(c, tmp_path / "run")[0]["step"] == 4
    # A config.json that recorded the relative path (as runs before did) is the same file too.
    path = tmp_path / "run" / "config.json"
    path.write_text(path.read_text().replace(recorded["pretrained"], "~/swin.pth"))
    assert rundir.inspect(c, tmp_path / "run")[0]["step"] == 4
    assert not [w for w in warnings if "pretrained" in str(w)]


def test_a_resume_records_the_pretrained_file_the_run_started_from(tmp_path, monkeypatch):
    """config.pretrained is read only when a run starts: a resume given another file warns once
    (inspect, which a script and train_and_evaluate both call, does not) and its config.json keeps
    the file the run was trained from."""
    import json

    from swin_flax.config import default_config

    c = default_config()
    rundir.write_config(c, tmp_path / "run")  # started from scratch: pretrained None
    save_epoch_1(tmp_path / "run", c)
    warnings = []  # absl's: orbax's too
    monkeypatch.setattr(rundir.logging, "warning", lambda *args: warnings.append(str(args)))
    c.pretrained, c.pretrained_head, c.num_epochs = "/elsewhere/swin.pth", True, 2
    for _ in range(2):
        assert rundir.inspect(c, tmp_path / "run")[0]["step"] == 4
    kept = rundir.resumed_config(c, tmp_path / "run")
    assert [w for w in warnings if "pretrained" in w] == [
        str((f"config.pretrained and config.pretrained_head are read only when a run starts: "
             f"{tmp_path / 'run'} resumes from its own checkpoint. To fine-tune from another file, "
             "give a new --workdir.",))
    ]  # fmt: skip
    c.pretrained, warnings[:] = None, []  # the head alone
    assert rundir.resumed_config(c, tmp_path / "run").pretrained_head is False
    assert warnings == [str((f"config.pretrained_head is read only when a run starts: {tmp_path / 'run'} "
                             "resumes from its own checkpoint. To fine-tune with its head, give a new "
                             "--workdir.",))]  # fmt: skip
    c.pretrained = "/elsewhere/swin.pth"
    assert (
        kept.pretrained is None and kept.num_epochs == 2 and c.pretrained == "/elsewhere/swin.pth"
    )
    assert kept.pretrained_head is False  # as recorded: read only when a run starts
    rundir.write_config(kept, tmp_path / "run")
    assert json.loads((tmp_path / "run" / "config.json").read_text())["pretrained"] is None


def test_a_changed_seed_is_refused_naming_it_alone(tmp_path):
    """With data_seed unset the data order follows the seed: a changed seed is named alone, also
    for a config.json of a version that recorded no data_seed."""
    import json

    from swin_flax.config import default_config

    c = default_config()
    rundir.write_config(c, tmp_path / "run")
    save_epoch_1(tmp_path / "run", c)
    c.seed = 1
    for _ in range(2):
        with pytest.raises(ConfigError, match=r"\(seed=1\)\. .* pass --config\.seed=0 to resume"):
            rundir.inspect(c, tmp_path / "run")
        path = tmp_path / "run" / "config.json"
        path.write_text(
            json.dumps({k: v for k, v in json.loads(path.read_text()).items() if k != "data_seed"})
        )


def test_a_field_the_record_lacks_is_compared_with_its_default(tmp_path):
    """A config.json of a version before a field existed: the run ran as the field's default does,
    so a resume with another value is refused (it was taken, and config.json rewritten with it)."""
    import json

    from swin_flax.config import default_config

    c = default_config()
    rundir.write_config(c, tmp_path / "run")
    save_epoch_1(tmp_path / "run", c)
    path = tmp_path / "run" / "config.json"
    old = json.loads(path.read_text())
    del old["mix"]["label_smoothing"]
    path.write_text(json.dumps(old))
    c.num_epochs = 2
    assert rundir.inspect(c, tmp_path / "run")[1] is False  # the default: resumes
    c.mix.label_smoothing = 0.3
    with pytest.raises(ConfigError, match=r"\(mix\.label_smoothing=0\.3\)\. .* pass --config\.mix"):
        rundir.inspect(c, tmp_path / "run")


def test_a_field_the_run_left_none_is_named_with_none_to_resume(tmp_path):
    """A run that left model.qk_scale at None, resumed by a config file that sets it: the flag
    that resumes it gives None (scripts take --config.FIELD=None for such fields), not "leave it
    unset", which a config file setting it cannot do."""
    from swin_flax.config import default_config

    c = default_config()
    rundir.write_config(c, tmp_path / "run")
    save_epoch_1(tmp_path / "run", c)
    c.num_epochs, c.model.qk_scale = 2, 0.2
    with pytest.raises(ConfigError, match=r"pass --config\.model\.qk_scale=None to resume it"):
        rundir.inspect(c, tmp_path / "run")


def test_a_constant_schedule_run_that_recorded_an_unread_lr_min_resumes_with_none(tmp_path):
    """config.validate refuses lr_min / warmup_lr_init with schedule='constant' (it reads neither);
    a run whose config.json recorded one resumes with them unset, as the same computation."""
    from swin_flax.config import default_config

    old = default_config()
    old.lr_min, old.warmup_lr_init = 1e-5, 1e-6
    rundir.write_config(old, tmp_path / "run")
    save_epoch_1(tmp_path / "run", old)
    c = default_config()
    c.num_epochs = 2
    assert c.schedule == "constant" and rundir.inspect(c, tmp_path / "run")[0]["step"] == 4
    c.schedule = "cosine_epoch"
    with pytest.raises(ConfigError, match=r"other settings than this config's \(schedule="):
        rundir.inspect(c, tmp_path / "run")


def test_the_plain_value_of_a_swept_field_is_not_compared_on_resume(tmp_path):
    """A sweep gives every run its learning_rate: a run that recorded another plain learning_rate
    beside it (accepted before the command line refused the pair) resumes without it; the swept
    values themselves must match."""
    from swin_flax.config import default_config

    old = default_config()
    old.learning_rate, old.sweep.learning_rate = 4e-3, (1e-3,)
    rundir.write_config(old, tmp_path / "run")
    save_epoch_1(tmp_path / "run", old)
    c = default_config()
    c.num_epochs, c.sweep.learning_rate = 2, (1e-3,)
    assert c.learning_rate != 4e-3 and rundir.inspect(c, tmp_path / "run")[0]["step"] == 4
    c.sweep.learning_rate = (2e-3,)
    with pytest.raises(
        ConfigError, match=r"other settings than this config's \(sweep.learning_rate="
    ):
        rundir.inspect(c, tmp_path / "run")


@pytest.mark.parametrize("text", ["not json", "[1, 2]", "null"])
def test_a_config_json_that_is_no_object_is_nothing_to_compare(tmp_path, text):
    """A config.json edited by hand into something other than a JSON object: resuming compares
    nothing and keeps the command's config (this run rewrites the file), with no traceback."""
    from swin_flax.config import default_config

    c = default_config()
    save_epoch_1(tmp_path / "run", c)
    (tmp_path / "run" / "config.json").write_text(text)
    c.num_epochs, c.seed = 2, 7  # a changed seed is refused only against a readable record
    assert rundir.inspect(c, tmp_path / "run")[0]["step"] == 4
    assert rundir.resumed_config(c, tmp_path / "run") is c


def test_result_lines_in_a_notebook_are_printed_once(monkeypatch, tmp_path):
    """A notebook's cell shows stdout and stderr together: the epoch and summary lines go to stdout
    only, not to the log on stderr too, whether its streams are Jupyter's (descriptors of two
    pipes) or have no descriptor; stdout captured alone (no descriptor) still leaves them in the
    log, whose stderr is a file."""

    class KernelStream(io.StringIO):  # as ipykernel's OutStream: a descriptor of its own pipe
        __module__ = "ipykernel.iostream"

        def __init__(self):
            super().__init__()
            self.read_end, self.fd = os.pipe()

        def fileno(self):
            return self.fd

    log_file = (tmp_path / "log").open("w")
    cases = [  # (stdout, stderr, whether logged too)
        (KernelStream(), KernelStream(), False),
        (io.StringIO(), io.StringIO(), False),
        (io.StringIO(), log_file, True),
    ]
    for out, err, logged_too in cases:
        monkeypatch.setattr(sys, "stdout", out)
        monkeypatch.setattr(sys, "stderr", err)
        logged = []
        monkeypatch.setattr(rundir.logging, "info", lambda *a, logged=logged: logged.append(a))
        rundir.announce("epoch 1/5  train loss 2.17", "best test accuracy 0.79")
        assert out.getvalue() == "epoch 1/5  train loss 2.17\nbest test accuracy 0.79\n"
        assert len(logged) == (2 if logged_too else 0), (type(out), type(err))
    log_file.close()
    for stream in cases[0][:2]:
        os.close(stream.read_end), os.close(stream.fd)


def test_config_txt_records_what_started_each_session_and_a_line_per_field(tmp_path, monkeypatch):
    """config.txt: a line per session saying what started it (scripts/main.py's command as typed,
    after a cd to its folder; a fresh start drops a lost start's lines, a resumed run keeps them),
    then a `field: value` line per field, dotted as --config.FIELD names it (no YAML anchors or
    tags); the refusal of another config file quotes the last session's command."""
    import ast

    from swin_flax import cli
    from swin_flax.config import default_config

    c = default_config()
    c.dataset, c.normalize_std = "synthetic", c.normalize_mean  # one tuple: a YAML anchor once
    monkeypatch.chdir(tmp_path)
    argv = ["python", "scripts/main.py", "--config", "my configs/a.py", "--workdir", "run"]
    monkeypatch.setattr(sys, "orig_argv", argv)
    rundir.write_config(c, tmp_path / "run", "a lost start")
    rundir.write_config(c, tmp_path / "run", cli.command_line())  # afresh: the lost one goes
    rundir.write_config(c, tmp_path / "run", None, resumed=True)  # from a notebook
    save_epoch_1(tmp_path / "run", c)
    lines = (tmp_path / "run" / "config.txt").read_text().splitlines()
    started, resumed = lines[0].partition(": "), lines[1].partition(": ")
    assert started[0] == "# started by" and resumed[0] == "# resumed by"
    assert shlex.split(started[2]) == ["cd", str(tmp_path), "&&", *argv]
    assert resumed[2] == "train.train_and_evaluate from Python, no command line"
    fields = dict(line.split(": ", 1) for line in lines[2:])
    assert fields["normalize_std"] == fields["normalize_mean"] == "(0.5, 0.5, 0.5)"
    assert fields["model.depths"] == "(2, 2, 18)" and fields["dataset"] == "'synthetic'"
    assert fields["mix.prob"] == "1.0" and fields["archive"] == "None"
    top = c.to_dict()
    expected = {k: v for k, v in top.items() if not isinstance(v, dict)}
    expected.update(
        {f"{k}.{f}": x for k, v in top.items() if isinstance(v, dict) for f, x in v.items()}
    )
    assert {f: ast.literal_eval(v) for f, v in fields.items()} == expected  # every field
    rundir.write_config(c, tmp_path / "run", "cd /elsewhere && python scripts/main.py", True)
    changed = dict(
        b1=0.8, b2=0.9, eps=1e-6, seed=1, batch_size=64, learning_rate=2e-3, weight_decay=0.5
    )
    for field, value in {"num_epochs": 2, **changed}.items():  # another config file, likely
        c[field] = value
    with pytest.raises(ConfigError) as e:
        rundir.inspect(c, tmp_path / "run")
    assert str(e.value).endswith(
        "give the config file and overrides it started with (its last session ran: cd /elsewhere "
        f"&& python scripts/main.py), and --workdir {tmp_path / 'run'}; or a new --workdir to "
        "start afresh."
    )
