"""Scoring a checkpoint: the confusion matrix, the per-class table, the PNG and TensorBoard report."""

import dataclasses
import json
import os
import pathlib
import shlex
import shutil

import jax
import numpy as np
import pytest
import tensorflow as tf
from etils import epath
from PIL import Image

from swin_flax import build, checkpoints, cli, evaluate, progress, rundir, runs, steps
from swin_flax.checkpoints import CheckpointError
from swin_flax.config import default_config
from swin_flax.data import sources
from swin_flax.errors import DataError
from swin_flax.models import summary
from tests.test_entry_points import fails_cleanly, run_script, snapshot

LABELS = np.array([0, 0, 1, 1, 1, 2, 2, 0])
PREDS = np.array([0, 1, 1, 1, 2, 2, 0, 0])
# Counted by hand: row = true class, column = predicted class.
HAND_CONFUSION = np.array([[2, 1, 0], [0, 2, 1], [1, 0, 1]])
NAMES = ("ant", "bee", "cat")


def test_confusion_matrix_and_scores_by_hand():
    np.testing.assert_array_equal(evaluate.confusion_matrix(LABELS, PREDS, 3), HAND_CONFUSION)
    logits = np.eye(3)[PREDS] * 5.0
    result = evaluate.scores(logits, LABELS, 3)
    np.testing.assert_array_equal(result["confusion"], HAND_CONFUSION)
    assert result["accuracy"] == 5 / 8
    np.testing.assert_allclose(result["per_class_accuracy"], [2 / 3, 2 / 3, 1 / 2])
    # Cross-entropy of a logit margin of 5 over 3 classes: right -log(e^5/(e^5+2)), wrong -log(1/(e^5+2)).
    right, wrong = np.log1p(2 * np.exp(-5.0)), np.log(np.exp(5.0) + 2)
    np.testing.assert_allclose(result["loss"], (5 * right + 3 * wrong) / 8, rtol=1e-12)
    with pytest.raises(ValueError, match="labels must lie in"):
        evaluate.confusion_matrix(np.array([3]), np.array([0]), 3)


def top5_by_sorting(logits: np.ndarray, labels: np.ndarray) -> float:
    """The reference top-5 accuracy: the label among the first 5 of numpy's stable argsort of
    -logits (ties in index order, as argmax)."""
    return float(
        np.mean([y in np.argsort(-row, kind="stable")[:5] for row, y in zip(logits, labels)])
    )


def test_top5_accuracy_against_sorting():
    rng = np.random.default_rng(0)
    logits, labels = rng.standard_normal((200, 12)), rng.integers(0, 12, 200)
    want = top5_by_sorting(logits, labels)
    result = evaluate.scores(logits, labels, 12)
    assert result["accuracy"] < 0.2 < want < 0.6 and result["top5_accuracy"] == want
    as_jax = steps.top_k_correct(jax.numpy.asarray(logits), jax.numpy.asarray(labels))  # float32
    assert float(as_jax.mean()) == want
    # By hand (one-hot logits): a wrong prediction ranks the label second, or third behind a lower
    # class tied with it (label 1 predicted 2, label 2 predicted 0).
    assert [steps.top_k_correct(np.eye(3)[PREDS], LABELS, k).mean() for k in (1, 2)] == [
        5 / 8,
        6 / 8,
    ]
    ties = np.zeros((2, 6)), np.array([1, 5])  # all equal: class 1 ranks second, class 5 last
    assert [steps.top_k_correct(*ties, k).tolist() for k in (1, 2, 6)] == [
        [False, False],
        [True, False],
        [True, True],
    ]


def test_top1_of_tied_logits_is_argmax_accuracy():
    """bfloat16 logits tie often (here: 4 values over 10 classes): top-1 is argmax's accuracy and
    top-5 the stable sort's, in NumPy and in JAX's bfloat16."""
    rng = np.random.default_rng(1)
    logits, labels = rng.integers(0, 4, (300, 10)).astype(np.float32), rng.integers(0, 10, 300)
    argmax_right = int((logits.argmax(-1) == labels).sum())
    stable_top5 = round(top5_by_sorting(logits, labels) * 300)
    as_bf16 = jax.numpy.asarray(logits, jax.numpy.bfloat16), jax.numpy.asarray(labels)
    for pair in ((logits, labels), as_bf16):
        assert int(steps.top_k_correct(*pair, k=1).sum()) == argmax_right
        assert int(steps.top_k_correct(*pair).sum()) == stable_top5
    assert evaluate.scores(logits, labels, 10)["accuracy"] == argmax_right / 300


def test_per_class_table():
    table = evaluate.per_class_table(HAND_CONFUSION, NAMES).splitlines()
    assert table[0].split()[:5] == ["index", "class", "accuracy", "correct", "total"]
    assert table[1].split() == ["0", "ant", "0.6667", "2", "3", "bee", "(1)"]
    assert table[2].split() == ["1", "bee", "0.6667", "2", "3", "cat", "(1)"]
    assert table[3].split() == ["2", "cat", "0.5000", "1", "2", "ant", "(1)"]
    assert evaluate.per_class_table(HAND_CONFUSION, NAMES, short=True) == "\n".join(table)
    perfect = evaluate.per_class_table(np.diag([4, 0]), ("a", "b")).splitlines()
    assert perfect[1].split() == ["0", "a", "1.0000", "4", "4", "-"]
    assert perfect[2].split() == ["1", "b", "-", "0", "0", "-"]


def test_per_class_table_of_many_classes_is_short_on_the_console():
    """30 classes, class t right t times of 30, else taken for class t+1 (class 3 has no test
    image): the console's table says where the full one is, then lists the 5 worst by accuracy
    (0, 1, 2, 4, 5) and the 5 best (25 to 29); the full table all 30 in index order."""
    names = [f"c{t}" for t in range(30)]
    t = np.arange(30)
    confusion = np.zeros((30, 30), int)
    confusion[t, t], confusion[t, (t + 1) % 30] = t, 30 - t
    confusion[3] = 0
    short = evaluate.per_class_table(confusion, names, short=True).splitlines()
    assert short[0] == (
        "the 5 worst and the 5 best of 30 classes by accuracy (per_class.txt lists all 30):"
    )
    assert short[1].split()[:2] == ["index", "class"]
    assert short[7].split() == ["...", "(20", "classes", "more)"]
    shown = [line.split()[0] for line in short[2:7] + short[8:]]
    assert shown == ["0", "1", "2", "4", "5", "25", "26", "27", "28", "29"]
    assert short[2].split() == ["0", "c0", "0.0000", "0", "30", "c1", "(30)"]
    full = evaluate.per_class_table(confusion, names).splitlines()
    assert [line.split()[0] for line in full[1:]] == [str(t) for t in range(30)]
    assert full[26].split() == ["25", "c25", f"{25 / 30:.4f}", "25", "30", "c26", "(5)"]
    assert full[4].split() == ["3", "c3", "-", "0", "0", "-"]


def test_confusion_image_shades_by_row_fraction():
    cell = 40
    image = evaluate.confusion_image(HAND_CONFUSION, NAMES, cell=cell)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    # Cells sit at the bottom-right corner of the image; sample each cell's top-left interior.
    h, w, _ = image.shape
    top, left = h - 1 - 3 * cell, w - 1 - 3 * cell
    shade = np.array(
        [
            [image[top + t * cell + 2, left + p * cell + 2].astype(int).sum() for p in range(3)]
            for t in range(3)
        ]
    )
    assert shade[0, 0] < shade[0, 1] < shade[0, 2] == 3 * 255  # 2/3, 1/3, 0 of the row
    assert shade[2, 0] == shade[2, 2] < shade[2, 1] == 3 * 255  # 1/2, 0, 1/2
    assert shade[1, 1] == shade[0, 0]  # both 2/3


def test_confusion_image_titles_and_names_both_axes():
    """Rows: "true class" and each class name on the left; columns: "predicted class" and each
    name (turned upright) above the grid. Longer names widen both margins; above 20 classes every
    5th class index is written, with a tick at every class (longer at a written one) and a grey line
    before every 10th."""
    cell = 40
    image = evaluate.confusion_image(HAND_CONFUSION, NAMES, cell=cell)
    h, w, _ = image.shape
    top, left = h - 1 - 3 * cell, w - 1 - 3 * cell
    ink = image.max(-1) < 100  # black text (the cells' darkest blue has a channel at 107)
    for i in range(3):
        assert ink[top + i * cell : top + (i + 1) * cell, 20:left].any()  # row i's name
        assert ink[20:top, left + i * cell : left + (i + 1) * cell].any()  # column i's name
    assert ink[:18, left:].any() and not ink[:18, :left].any()  # "predicted class" over the columns
    assert ink[top:, :20].any() and not ink[:top, :20].any()  # "true class" beside the rows
    longer = evaluate.confusion_image(HAND_CONFUSION, ("antelope", "bee", "cat"), cell=cell)
    assert longer.shape[0] > h and longer.shape[1] > w  # both margins fit the longest name

    many = np.eye(30, dtype=np.int64)
    image = evaluate.confusion_image(many, [f"class_{i}" for i in range(30)], cell=10)
    h, w, _ = image.shape
    top, left = h - 1 - 300, w - 1 - 300
    ink = image.max(-1) < 100
    labelled = [bool(ink[top + 10 * i : top + 10 * i + 10, 20 : left - 6].any()) for i in range(30)]
    assert labelled == [i % 5 == 0 for i in range(30)]
    ticks = [[bool(ink[top + 10 * i + 5, left - d]) for i in range(30)] for d in (2, 5)]
    assert ticks == [[True] * 30, [i % 5 == 0 for i in range(30)]]  # in each row's middle
    columns = [bool(ink[top - 5, left + 10 * i + 5]) for i in range(30)]
    assert columns == ticks[1]
    lines = [tuple(image[top + 10 * i, left + 5]) for i in range(1, 30)]  # column 0 below its 1
    assert lines == [(170, 170, 170) if i % 10 == 0 else (255, 255, 255) for i in range(1, 30)]


def test_write_report_png_table_and_tensorboard(tmp_path):
    result = evaluate.scores(np.eye(3)[PREDS], LABELS, 3)
    paths = evaluate.write_report(result, NAMES, tmp_path / "eval", step=12)
    png = np.asarray(Image.open(paths["confusion_png"]))
    np.testing.assert_array_equal(png, evaluate.confusion_image(HAND_CONFUSION, NAMES))
    assert paths["table"].read_text().splitlines()[1].split()[:3] == ["0", "ant", "0.6667"]
    saved = json.loads(paths["scores"].read_text())
    assert saved["confusion"] == HAND_CONFUSION.tolist() and saved["class_names"] == list(NAMES)
    tags = {}
    for event_file in (tmp_path / "eval").glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(event_file)):
            for value in event.summary.value:
                tags[value.tag] = event.step
    figures = ("confusion_matrix", "eval_accuracy", "eval_top5_accuracy", "eval_loss")
    assert [tags.get(tag) for tag in figures] == [12] * 4


def tiny_config(embed_dim: int = 8):
    """A tiny model on 37 synthetic test images (not a multiple of the batch: the padding must not
    count)."""
    c = default_config()
    c.dataset = "synthetic"
    c.synthetic_test_examples = 37
    c.eval_batch_size = 16
    c.model.update(
        img_size=32,
        patch_size=4,
        embed_dim=embed_dim,
        depths=(2,),
        num_heads=(1,),
        window_size=4,
        num_classes=10,
    )
    return c


def random_params(config, seed: int = 0):
    """Random params of the config's model's shapes (no init compile); std 0.3 spreads the logits
    apart."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda s: (0.3 * rng.standard_normal(s.shape)).astype(np.float32),
        summary.param_shapes(build.model_from_config(config)),
    )


def make_run(workdir, embed_dim: int = 8, record_model: bool = False):
    """A tiny run with random params as train.py leaves it: config.json and a `best` checkpoint of
    step 3 (its record names the model when `record_model`, as train.py's do)."""
    c = tiny_config(embed_dim)
    rundir.write_config(c, workdir)
    meta = {"epoch": 1, "step": 3, **({"model": c.model.to_dict()} if record_model else {})}
    ckpts = checkpoints.Checkpoints(workdir)
    ckpts.save("best", 3, {"params": random_params(c), "step": 3}, meta)
    ckpts.close()


def save_runs(workdir, config, each_params, step: int = 3) -> None:
    """config.json and a `best` checkpoint as train.py writes them for the runs of `config`: one
    run's params as they are, several stacked on a leading run axis (in run order), the record
    progress.Progress makes (per-run figures, "runs", the model identity)."""
    n = len(each_params)
    assert n == runs.run_set(config).count
    params = each_params[0] if n == 1 else jax.tree.map(lambda *xs: np.stack(xs), *each_params)
    done = progress.Progress(n, [0.5] * n, [1] * n, test_accuracy=[0.5] * n)
    rundir.write_config(config, workdir)
    ckpts = checkpoints.Checkpoints(workdir)
    ckpts.save("best", step, {"params": params}, done.record(config, 1, step, step, 0.0))
    ckpts.close()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run")
    make_run(workdir)
    return workdir


def test_evaluate_checkpoint_counts_every_test_image(run):
    workdir, ckpt = evaluate.resolve_checkpoint(str(run), None)
    config = evaluate.load_run_config(workdir)
    loaded, meta = evaluate.load_params(ckpt)
    result = evaluate.evaluate_checkpoint(config, [loaded])
    assert meta["step"] == 3 and result["num_examples"] == 37
    _, labels = sources.synthetic_split(37, seed=0, split="test")
    np.testing.assert_array_equal(result["confusion"].sum(1), np.bincount(labels, minlength=10))
    assert result["accuracy"] == np.trace(result["confusion"]) / 37
    logits, scored = evaluate.eval_logits(config, [loaded])
    np.testing.assert_array_equal(scored, labels)
    assert result["top5_accuracy"] == top5_by_sorting(logits[0], labels) > result["accuracy"]


def _copy(run, tmp_path):
    shutil.copytree(run, tmp_path / "copy")
    return tmp_path / "copy"


def _other_model(run, tmp_path):
    """A checkpoint copied out of its run, given with the --workdir of a run of another model."""
    make_run(tmp_path / "other", embed_dim=16, record_model=True)
    shutil.copytree(tmp_path / "other" / "checkpoints" / "best" / "3", tmp_path / "saved" / "3")
    return str(run), str(tmp_path / "saved" / "3")


def _other_run(run, tmp_path):
    make_run(tmp_path / "other")
    return str(run), str(tmp_path / "other" / "checkpoints" / "best" / "3")


def _outside_a_run(run, tmp_path):
    shutil.copytree(run / "checkpoints" / "best" / "3", tmp_path / "saved" / "3")
    return None, str(tmp_path / "saved" / "3")


def _renamed(run, tmp_path):
    """A step folder copied out under a name that is not its step."""
    shutil.copytree(run / "checkpoints" / "best" / "3", tmp_path / "small_best")
    return str(run), str(tmp_path / "small_best")


def _starting(run, tmp_path):
    """A run's folder before its config.json: what the scripts create first."""
    (tmp_path / "compilation_cache").mkdir()
    return str(tmp_path), None


def _without_checkpoint(run, tmp_path):
    shutil.copy(run / "config.json", tmp_path)
    return str(tmp_path), None


def _config_edited(run, tmp_path):
    make_run(tmp_path / "edited", embed_dim=16, record_model=True)
    path = tmp_path / "edited" / "config.json"
    path.write_text(path.read_text().replace('"embed_dim": 16', '"embed_dim": 8'))
    return str(tmp_path / "edited"), None


def _not_json(run, tmp_path):
    (_copy(run, tmp_path) / "config.json").write_text("{")
    return str(tmp_path / "copy"), None


def _unknown_dataset(run, tmp_path):
    path = _copy(run, tmp_path) / "config.json"
    path.write_text(path.read_text().replace('"dataset": "synthetic"', '"dataset": "imagenet"'))
    return str(tmp_path / "copy"), None


# What --workdir / --checkpoint can name wrongly (docs/errors.md, "Other entry points"): each is
# refused by evaluate.open_run, before any params are read, saying what to give instead.
WRONG_RUNS = {
    "workdir_missing": (lambda run, tmp: (str(tmp / "nope"), None), "nope does not exist"),
    "workdir_a_file": (lambda run, tmp: (str(run / "config.json"), None), "json is a file"),
    "workdir_not_a_run": (lambda run, tmp: (str(tmp), None), "holds no config.json: give"),
    "workdir_of_a_starting_run": (
        _starting,
        "holds no config.json (a run writes it when its training starts: if one is starting "
        "there, wait): give",
    ),
    "no_checkpoint_yet": (
        _without_checkpoint,
        "holds no checkpoint yet (checkpoints/best or checkpoints/latest): a run writes best/ after "
        "its first epoch.",
    ),
    "neither_flag": (lambda run, tmp: (None, None), "give --workdir"),
    "checkpoint_missing": (lambda run, tmp: (None, str(tmp / "9")), "9 does not exist"),
    "checkpoint_series_folder": (
        lambda run, tmp: (None, str(run / "checkpoints" / "best")),
        "is not a checkpoint step folder: give one that holds state/ and meta/, such as "
        "WORKDIR/checkpoints/best/STEP (its newest step: --checkpoint ",
    ),
    "checkpoint_not_a_checkpoint": (
        lambda run, tmp: (None, str(run)),
        "is not a checkpoint step folder",
    ),
    "checkpoint_state_folder": (  # a folder inside a step folder: that step folder is named
        lambda run, tmp: (None, str(run / "checkpoints" / "best" / "3" / "state")),
        "best/3/state is not a checkpoint step folder but lies inside one: give that folder, "
        "--checkpoint ",
    ),
    "checkpoint_missing_step": (  # the steps its series holds are listed
        lambda run, tmp: (None, str(run / "checkpoints" / "best" / "9")),
        "best/9 does not exist; ",
    ),
    "checkpoint_outside_a_run": (
        _outside_a_run,
        "is not inside a run folder (not in a run's checkpoints/best or checkpoints/latest): give",
    ),
    "checkpoint_renamed": (
        _renamed,
        "small_best holds a checkpoint, but orbax reads a checkpoint's step from its folder's "
        "name: copy it to ",
    ),
    "checkpoint_of_another_model": (
        _other_model,
        "was written for another model than",
    ),
    "checkpoint_of_another_run": (_other_run, "/other, not to --workdir "),
    "config_edited": (_config_edited, "disagree only when one of them was edited"),
    "config_not_json": (_not_json, "is not a config that scripts/main.py wrote"),
    "config_unknown_dataset": (
        _unknown_dataset,
        "config.json is not a config that scripts/main.py wrote (ValueError: dataset 'imagenet' is "
        "not one of ('cifar10', 'cifar100', 'synthetic')).",
    ),
}


@pytest.mark.parametrize("case", WRONG_RUNS)
def test_open_run_refuses_what_names_no_run(case, run, tmp_path):
    make_flags, expected = WRONG_RUNS[case]
    workdir, checkpoint = make_flags(run, tmp_path)
    before = snapshot(tmp_path), snapshot(run)
    with pytest.raises(CheckpointError) as e:
        evaluate.open_run(workdir, checkpoint)
    assert expected in str(e.value)
    assert (snapshot(tmp_path), snapshot(run)) == before
    if case == "checkpoint_series_folder":
        assert str(e.value).endswith(f"{run}/checkpoints/best/3).")
    if case == "checkpoint_state_folder":
        assert str(e.value).endswith(f"--checkpoint {run}/checkpoints/best/3.")
    if case == "checkpoint_missing_step":
        best = run / "checkpoints" / "best"
        assert str(e.value).endswith(f"{best} holds step 3: give --checkpoint {best}/3.")
    if case == "checkpoint_renamed":  # beside it, named by its step
        assert f"copy it to {tmp_path}/STEP, STEP the global step it was saved at" in str(e.value)
    if case == "checkpoint_of_another_model":
        assert "embed_dim: checkpoint 16 vs config.json 8" in str(e.value)


def test_resolve_checkpoint_names_the_step_folder_to_give(run, tmp_path):
    """A path inside a step folder (its meta/, or deeper) names that folder; a step its series
    does not hold lists the ones it does (step folders only: a stray numbered folder is none)."""
    step = run / "checkpoints" / "best" / "3"
    for inside in (step / "meta", sorted((step / "state").iterdir())[0]):
        with pytest.raises(CheckpointError) as e:
            evaluate.resolve_checkpoint(None, str(inside))
        assert str(e.value) == (
            f"--checkpoint {inside} is not a checkpoint step folder but lies inside one: give "
            f"that folder, --checkpoint {step}."
        )
    latest = _copy(run, tmp_path) / "checkpoints" / "latest"
    for held in (160, 96, 128):
        shutil.copytree(step, latest / str(held))
    (latest / "64").mkdir()  # not a step folder: not listed
    with pytest.raises(CheckpointError) as e:
        evaluate.resolve_checkpoint(None, str(latest / "100"))
    assert str(e.value) == (
        f"--checkpoint {latest}/100 does not exist; {latest} holds steps 96, 128 and 160: give "
        f"one of them, such as --checkpoint {latest}/160."
    )
    (latest / "200").mkdir()  # a stray folder newer than every step: the series' hint skips it
    with pytest.raises(CheckpointError) as e:
        evaluate.resolve_checkpoint(None, str(latest))
    assert str(e.value).endswith(f"(its newest step: --checkpoint {latest}/160).")


def test_a_state_dict_file_given_as_checkpoint_says_what_it_is(run, tmp_path):
    """An export of scripts/export.py given to predict.py / evaluate.py as --checkpoint said only
    "is not a checkpoint step folder": it is named as a state_dict, with the run's checkpoint to
    give instead and how to fine-tune from it. Found by a predict/export user trial."""
    export = tmp_path / "swin.safetensors"
    export.write_bytes(b"a state_dict")
    with pytest.raises(CheckpointError) as e:
        evaluate.resolve_checkpoint(None, str(export))
    assert str(e.value) == (
        f"--checkpoint {export} is a state_dict file (as scripts/export.py writes, for PyTorch or "
        "to fine-tune from), not a checkpoint of a run: give the folder of the run it came from "
        "as --workdir (its best checkpoint is read), or a step folder such as --checkpoint "
        "WORKDIR/checkpoints/best/STEP. To fine-tune from it: scripts/main.py --config CONFIG "
        f"--config.pretrained={export}."
    )
    with pytest.raises(CheckpointError) as e:
        evaluate.resolve_checkpoint(str(run), str(export))
    assert (
        f"not a checkpoint of a run: leave --checkpoint out (the best checkpoint of --workdir {run} is read)."
        in str(e.value)
    )


@pytest.mark.parametrize("given", ["3", "best", "best/3", "checkpoints/best", "checkpoints/best/3"])
def test_a_checkpoint_given_within_the_workdir_names_the_path_meant(given, run, tmp_path):
    """--checkpoint is a path of its own; given as within --workdir (as flax's `step=`) it is
    refused, naming the step folder it meant (a series': its newest step)."""
    with pytest.raises(CheckpointError) as e:
        evaluate.resolve_checkpoint(str(run), given)
    assert str(e.value) == (
        f"--checkpoint {given} does not exist (it is a path of its own, not one within "
        f"--workdir): did you mean --checkpoint {run}/checkpoints/best/3?"
    )


def test_a_suggested_flag_pastes_into_a_shell_with_a_space_in_its_path(run, tmp_path):
    """A path with a space (a "My Drive" folder) is quoted in the command a message suggests, so
    that the shell reads it back as one argument (shlex: the shell's own rules)."""
    spaced = tmp_path / "my runs" / "a"
    shutil.copytree(run, spaced)
    with pytest.raises(CheckpointError) as e:
        evaluate.resolve_checkpoint(str(spaced), "best/3")
    suggested = str(e.value).rpartition("did you mean ")[2].rstrip("?")
    assert shlex.split(suggested) == ["--checkpoint", f"{spaced}/checkpoints/best/3"]


def test_a_step_the_run_does_not_hold_lists_those_it_holds(run):
    """`--workdir RUN --checkpoint best/9` (a step given within the workdir, not held): the steps
    its series holds are listed, as for a full path."""
    with pytest.raises(CheckpointError) as e:
        evaluate.resolve_checkpoint(str(run), "best/9")
    best = run / "checkpoints" / "best"
    assert str(e.value) == (
        f"--checkpoint best/9 does not exist; {best} holds step 3: give --checkpoint {best}/3."
    )


def test_a_step_given_relative_from_inside_its_series_is_found(run, monkeypatch):
    """`cd RUN/checkpoints/best; --checkpoint 3` (and `--checkpoint .` inside the step): the run
    is the folder three levels above the step, not above the path as typed."""
    step = run / "checkpoints" / "best" / "3"
    for cwd, given in ((step.parent, "3"), (step, ".")):
        monkeypatch.chdir(cwd)
        found, ckpt = evaluate.resolve_checkpoint(None, given)
        assert (str(found), os.path.realpath(ckpt)) == (str(run), str(step))


def test_open_run_finds_the_best_checkpoint_and_its_record(run):
    opened = evaluate.open_run(str(run), None)
    assert opened.checkpoint == run / "checkpoints" / "best" / "3"
    assert opened.meta["step"] == 3 and opened.config.model.embed_dim == 8
    by_step = evaluate.open_run(None, str(opened.checkpoint))
    assert by_step.workdir == run and by_step.config == opened.config


def test_open_run_names_the_run_and_checkpoint_by_absolute_paths(run, monkeypatch):
    """What the reports record stays valid from any folder: paths given relative are made
    absolute."""
    monkeypatch.chdir(run.parent)
    for flags in ((run.name, None), (None, f"{run.name}/checkpoints/best/3")):
        opened = evaluate.open_run(*flags)
        assert (opened.workdir, opened.checkpoint) == (run, run / "checkpoints" / "best" / "3")


def test_test_data_that_moved_points_at_the_runs_config(run, tmp_path, monkeypatch):
    """The archive a run trained on is gone: evaluate says where the path comes from (the run's
    config.json, not a --config flag it does not take) and how to give the new place, which then
    scores the data found there (scripts/evaluate.py --archive: the same call)."""
    from tests import cifar_files  # noqa: PLC0415

    copy = _copy(run, tmp_path)
    config = json.loads((copy / "config.json").read_text())
    # Recorded with a data_dir too (accepted once; the archive was what it read).
    config.update(dataset="cifar10", archive=str(tmp_path / "gone.tar.gz"), data_dir="/old/tfds")
    (copy / "config.json").write_text(json.dumps(config))
    opened = evaluate.open_run(str(copy), None)
    assert opened.config.data_dir is None
    params, _ = evaluate.load_params(opened.checkpoint)
    with pytest.raises(
        DataError, match=r"gone\.tar\.gz does not exist \(--archive\).*--archive PATH or"
    ):
        evaluate.evaluate_checkpoint(opened.config, [params])
    split = cifar_files.random_split(11, seed=3)
    moved = cifar_files.cifar10_python_tarball(tmp_path / "moved.tar.gz", split, split)
    config = evaluate.with_data(opened.config, archive=str(moved))
    result = evaluate.evaluate_checkpoint(config, [params])
    assert result["num_examples"] == 11
    np.testing.assert_array_equal(result["confusion"].sum(1), np.bincount(split[1], minlength=10))
    assert opened.config.archive == str(tmp_path / "gone.tar.gz")  # the run's record is kept
    monkeypatch.chdir(tmp_path)  # a relative path, recorded absolute
    tfds_dir = evaluate.with_data(config, data_dir="tfds")
    assert (tfds_dir.archive, tfds_dir.data_dir) == (None, str(tmp_path / "tfds"))
    # `evaluate.py --archive '~/moved.tar.gz'` (the shell leaves a quoted ~): expanded, as
    # --config.archive is (was "does not exist").
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cli.moved_data(config, str(copy), "~/moved.tar.gz", None).archive == str(moved)
    # The data loader's advice in this tool's flags: a folder holding only the download, and a tfds
    # data_dir without the data (its three ways less the synthetic one, no way to score a run).
    (tmp_path / "downloads").mkdir()
    shutil.copy(moved, tmp_path / "downloads" / "cifar-10-python.tar.gz")
    (tmp_path / "tfds").mkdir()
    monkeypatch.setattr(sources, "_unreachable", lambda url, timeout: "offline")
    hundred = cifar_files.cifar100_python_tarball(tmp_path / "c100.tar.gz", split, split)
    for place in (dict(archive="downloads"), dict(data_dir="tfds"), dict(archive=str(hundred))):
        with pytest.raises(DataError) as e:
            evaluate.evaluate_checkpoint(evaluate.with_data(config, **place), [params])
        said = str(e.value)
        assert "--config." not in said and "Synthetic" not in said, said
        assert "Supply the data in one of three" not in said, said
        assert "--archive=" in said or said.startswith(
            f"{hundred} holds cifar-100-python but dataset='cifar10': give an archive of that data set."
        ), said


# The failed read leaves reads in flight whose callbacks may find orbax's event loop closed; the
# scripts drop that error (cli's unraisablehook, test_cli_on_a_damaged_checkpoint_ends_with_its_
# paragraph), in-process pytest reports it as a warning in some runs.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_damaged_checkpoint_is_named(run, tmp_path):
    """The error names the run's other steps by their paths to give with --checkpoint (no
    WORKDIR placeholder), and says when the run keeps none."""
    copy = _copy(run, tmp_path)
    ckpt = copy / "checkpoints" / "best" / "3"
    shutil.rmtree(ckpt / "state" / "ocdbt.process_0" / "d")  # the arrays' data files
    opened = evaluate.open_run(str(copy), None)
    with pytest.raises(CheckpointError, match="cannot be read .* incomplete or damaged") as e:
        evaluate.load_params(opened.checkpoint)
    assert str(e.value).endswith(
        "incomplete or damaged. No other step of its run is kept to give with --checkpoint instead."
    ), str(e.value)
    for step in (2, 3):  # latest/ keeping two steps (copies of run's intact best/3)
        shutil.copytree(
            run / "checkpoints" / "best" / "3", copy / "checkpoints" / "latest" / str(step)
        )
    shutil.rmtree(ckpt / "meta")  # its record: orbax raises KeyError
    with pytest.raises(CheckpointError, match=r"cannot be read \(KeyError: ") as e:
        evaluate.load_params(ckpt)
    latest = copy / "checkpoints" / "latest"
    assert str(e.value).endswith(
        f"incomplete or damaged. Give another step with --checkpoint: {latest}/2, {latest}/3."
    ), str(e.value)


@pytest.mark.slow  # runs evaluate.py as a subprocess, three times
def test_cli_on_a_damaged_checkpoint_ends_with_its_paragraph(tmp_path):
    """The failed read leaves reads in flight whose callbacks find orbax's event loop closed: an
    asyncio traceback followed the paragraph in about half the runs with this checkpoint
    (embed_dim 64: many reads at once). The paragraph must be all that is printed, every time."""
    copy = tmp_path / "run"
    make_run(copy, embed_dim=64)
    shutil.rmtree(copy / "checkpoints" / "best" / "3" / "state" / "ocdbt.process_0" / "d")
    for _ in range(3):
        message = fails_cleanly("evaluate.py", "--workdir", str(copy), cwd=tmp_path)
        assert "cannot be read" in message and "incomplete or damaged" in message


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--json", "no_such_folder/scores.json"], "is not a file path in a folder that exists"),
        (["--json", "."], "--json . is a folder: give a file path in it, or another path."),
        (
            ["--json", "RUN/config.json"],
            "--json RUN/config.json is among the files of RUN, the run this command reads",
        ),
        (["--eval_dir", "RUN/config.json"], "config.json is a file: give a folder"),
        (["--checkpoint", "RUN/checkpoints/best"], "is not a checkpoint step folder"),
        (["--checkpoint", "RUN/checkpoints/best/9"], "holds step 3: give --checkpoint RUN/"),
        (["--archive", "a.tar.gz", "--data_dir", "d"], "--data_dir DIR (a tensorflow-datasets"),
        (
            ["--archive", "typo.tar.gz"],
            "--archive typo.tar.gz does not exist: give the data's new place.",
        ),
        (["--archive", "RUN"], "trained on the synthetic data set, which reads no files"),
    ],
    ids=[
        "json_folder_missing",
        "json_a_folder",
        "json_over_the_run_config",
        "eval_dir_a_file",
        "checkpoint_series_folder",
        "checkpoint_missing_step",
        "archive_and_data_dir",
        "archive_missing",
        "archive_of_synthetic",
    ],
)
def test_cli_refuses_before_evaluating(args, expected, run, tmp_path):
    """evaluate.py: wrong output paths are refused before anything is loaded, a wrong checkpoint
    before its params are read; exit 2, one paragraph, nothing written."""
    args, expected = [a.replace("RUN", str(run)) for a in args], expected.replace("RUN", str(run))
    before = snapshot(run)
    message = fails_cleanly("evaluate.py", "--workdir", str(run), *args, cwd=tmp_path)
    assert expected in message
    assert snapshot(run) == before


def test_cli_json_does_not_replace_the_data_the_run_records(run, tmp_path):
    """--json over the archive the run's config.json names (no --archive given) replaced the run's
    data with JSON: the data a run reads is an input as --archive is. Found by a trial."""
    from tests import cifar_files  # noqa: PLC0415

    copy = _copy(run, tmp_path)
    split = cifar_files.random_split(11, seed=3)
    data = cifar_files.cifar10_python_tarball(tmp_path / "data.tar.gz", split, split)
    config = json.loads((copy / "config.json").read_text())
    config.update(dataset="cifar10", archive=str(data))
    (copy / "config.json").write_text(json.dumps(config))
    before = data.read_bytes()
    message = fails_cleanly(
        "evaluate.py", "--workdir", str(copy), "--json", str(data), cwd=tmp_path
    )
    assert f"--json {data} is an input of this command" in message
    assert data.read_bytes() == before


# A checkpoint of several runs: params stacked on a leading run axis, as train.py writes them.
NAMES_3 = ["seed=0", "seed=1", "seed=2"]


def save_runs_and_singles(tmp_path_factory, config, single_config, seeds):
    """(folder of `config`'s runs with independent random params, one per seed, and each run's
    params saved as a single run's checkpoint of `single_config`, for reference)."""
    each = [random_params(config, seed) for seed in seeds]
    stacked = tmp_path_factory.mktemp("runs")
    save_runs(stacked, config, each)
    singles = []
    for k, params in enumerate(each):
        singles.append(tmp_path_factory.mktemp(f"run_{k}"))
        save_runs(singles[-1], single_config, [params])
    return stacked, singles


@pytest.fixture(scope="module")
def three_runs(tmp_path_factory):
    """(folder of a run of 3 seeds with independent random params, each run's params saved as a
    single run's checkpoint for reference). The references keep the stack's config but one run:
    the same model and the same test images (synthetic ones follow the data seed)."""
    c = tiny_config()
    c.num_runs = 3
    return save_runs_and_singles(tmp_path_factory, c, tiny_config(), (1, 2, 3))


@pytest.fixture(scope="module")
def single_scores(three_runs):
    """Each run scored by the single-run path from its own checkpoint: (its scores, its logits,
    the labels)."""
    out = []
    for folder in three_runs[1]:
        opened = evaluate.open_run(str(folder), None)
        params, _ = evaluate.load_params(opened.checkpoint)
        logits, labels = evaluate.eval_logits(opened.config, [params])
        out.append((evaluate.evaluate_checkpoint(opened.config, [params]), logits[0], labels))
    return out


def _score_stack(folder, which=None, ensemble=False):
    opened = evaluate.open_run(str(folder), None, which, ensemble)
    return evaluate.evaluate_checkpoint(opened.config, opened.members(), opened.choice)


def test_every_run_and_their_ensemble(three_runs, single_scores):
    """Default: each run's figures exactly as its own checkpoint scores them, and the ensemble's
    from the mean of their softmax probabilities (numpy, float64); --ensemble: the same ensemble
    without the runs."""
    result = _score_stack(three_runs[0])
    assert result["ensemble"] == NAMES_3 and [r["name"] for r in result["runs"]] == NAMES_3
    figures = ("accuracy", "top5_accuracy", "loss", "per_class_accuracy")
    for name, row, (single, _, _) in zip(NAMES_3, result["runs"], single_scores):
        assert row == {"name": name, **{f: single[f] for f in figures}}
    labels = single_scores[0][2]
    logits = np.stack([np.asarray(x, np.float64) for _, x, _ in single_scores])
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs = (probs / probs.sum(-1, keepdims=True)).mean(0)
    assert result["num_examples"] == 37 and len(labels) == 37
    assert result["accuracy"] == (probs.argmax(-1) == labels).mean()
    assert result["top5_accuracy"] == top5_by_sorting(probs, labels)
    np.testing.assert_allclose(result["loss"], -np.log(probs[np.arange(37), labels]).mean(), 1e-10)
    expected = evaluate.confusion_matrix(labels, probs.argmax(-1), 10)
    np.testing.assert_array_equal(result["confusion"], expected)
    only = _score_stack(three_runs[0], ensemble=True)
    assert "runs" not in only and only["ensemble"] == NAMES_3
    assert all(np.array_equal(only[f], result[f]) for f in (*figures, "num_examples", "confusion"))
    table = evaluate.runs_table(result).splitlines()
    assert [line.split()[0] for line in table] == ["run", *NAMES_3, "ensemble"]
    assert table[0].split() == ["run", "accuracy", "top-5", "loss"]
    assert table[-1].split()[1:] == [
        f"{result[f]:.4f}" for f in ("accuracy", "top5_accuracy", "loss")
    ]
    # Runs of two swept values: the table says the ensemble spans them.
    swept = [
        {**r, "name": f"learning_rate={lr},{r['name']}"} for r, lr in zip(result["runs"], (1, 1, 2))
    ]
    table = evaluate.runs_table({**result, "runs": swept}).splitlines()
    assert table[-1] == (
        "(the ensemble spans the swept learning_rate values: --run learning_rate=VALUE scores one "
        "sweep point's runs and their ensemble)"
    )
    # Two swept fields, one held (as --run weight_decay=0.05 chooses): the hint keeps it.
    held = [{**r, "name": f"weight_decay=0.05,{r['name']}"} for r in swept]
    table = evaluate.runs_table({**result, "runs": held}).splitlines()
    assert "--run weight_decay=0.05,learning_rate=VALUE scores one sweep point's" in table[-1]


def test_some_runs_are_scored_as_their_ensemble(three_runs, single_scores):
    """Runs 0 and 2 of three: their ensemble from the mean of those two runs' softmax
    probabilities, each of them scored as its own checkpoint scores it."""
    opened = evaluate.open_run(str(three_runs[0]), None)
    choice = evaluate.Choice(opened.choice.names, (0, 2), each_run=True)
    result = evaluate.evaluate_checkpoint(
        opened.config, dataclasses.replace(opened, choice=choice).members(), choice
    )
    assert result["ensemble"] == [NAMES_3[0], NAMES_3[2]]
    assert [r["accuracy"] for r in result["runs"]] == [
        single_scores[k][0]["accuracy"] for k in (0, 2)
    ]
    labels = single_scores[0][2]
    logits = np.stack([np.asarray(single_scores[k][1], np.float64) for k in (0, 2)])
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs = (probs / probs.sum(-1, keepdims=True)).mean(0)
    assert result["accuracy"] == (probs.argmax(-1) == labels).mean()
    assert result["top5_accuracy"] == top5_by_sorting(probs, labels)
    np.testing.assert_allclose(result["loss"], -np.log(probs[np.arange(37), labels]).mean(), 1e-10)


def test_part_of_a_name_chooses_a_sweep_points_runs():
    """--run with part of a name (a swept value, in any spelling) chooses every run whose name
    holds it; a whole name or an index one run; the header and the report folder say which."""
    names = [f"learning_rate={lr},seed={s}" for lr in ("0.001", "0.002") for s in (0, 1)]
    sweep = evaluate.Run(
        epath.Path("w"), epath.Path("w/checkpoints/latest/8"), default_config(), {"runs": names}
    )
    point = evaluate.choose_runs(sweep, "learning_rate=2e-3")
    assert (point.indices, point.each_run, point.label()) == ((2, 3), True, "learning_rate=0.002")
    alone = evaluate.choose_runs(sweep, "learning_rate=2e-3", ensemble=True)  # their ensemble only
    assert (alone.indices, alone.each_run, alone.label()) == ((2, 3), False, "learning_rate=0.002")
    assert point.describe() == (
        "the ensemble of 2 of its 4 runs, learning_rate=0.002 (the mean of their probabilities)"
    )
    assert evaluate.choose_runs(sweep, "seed=1").indices == (1, 3)
    one = evaluate.choose_runs(sweep, "seed=1,learning_rate=1e-3")
    assert (one.indices, one.each_run, one.label()) == ((1,), False, names[1])
    assert evaluate.choose_runs(sweep, "3").label() == names[3]
    assert evaluate.choose_runs(sweep).label() == ""  # all: WORKDIR/eval itself
    with pytest.raises(CheckpointError, match="names none of the 4 runs"):
        evaluate.choose_runs(sweep, "learning_rate=3e-3")
    # Seeds that six digits would not tell apart (runs.names writes them exactly).
    big = dataclasses.replace(sweep, meta={"runs": ["seed=1e+06", "seed=1000001"]})
    assert evaluate.choose_runs(big, "seed=1000001").indices == (1,)
    assert evaluate.choose_runs(big, "seed=1000000").indices == (0,)


def test_a_refused_run_shows_the_form_taken_from_the_runs_own_names():
    """`--run 0.002` (a bare swept value) names no run: the refusal shows a --run that works, made
    of the checkpoint's names, the one holding the value given; a part of a name (the runs holding
    it together) where several runs hold one, and not to export.py (`several=False`)."""
    lrs = ["learning_rate=0.001", "learning_rate=0.002"]
    sweep = evaluate.Run(
        epath.Path("w"), epath.Path("w/checkpoints/latest/8"), default_config(), {"runs": lrs}
    )
    for which in ("0.002", "lr=2e-3"):
        with pytest.raises(CheckpointError) as e:
            evaluate.choose_runs(sweep, which)
        assert str(e.value).endswith("1 'learning_rate=0.002'), e.g. --run learning_rate=0.002."), (
            str(e.value)
        )
    assert evaluate.choose_runs(sweep, "learning_rate=0.002").indices == (1,)  # the form shown
    names = [f"{lr},seed={s}" for lr in lrs for s in (0, 1)]
    seeds = dataclasses.replace(sweep, meta={"runs": names})
    with pytest.raises(CheckpointError) as e:
        evaluate.choose_runs(seeds, "0.002")
    assert str(e.value).endswith(
        "e.g. --run learning_rate=0.002,seed=0, or a part of one for the runs holding it, e.g. "
        "--run learning_rate=0.002."
    ), str(e.value)
    assert evaluate.choose_runs(seeds, "learning_rate=0.002").indices == (2, 3)
    with pytest.raises(CheckpointError) as e:
        evaluate.choose_runs(seeds, "0.002", several=False)
    assert str(e.value).endswith("e.g. --run learning_rate=0.002,seed=0."), str(e.value)


@pytest.mark.parametrize("which, k", [("1", 1), ("seed=2", 2)])
def test_one_run_is_scored_as_a_single_run(which, k, three_runs, single_scores):
    """--run K (an index or a name): exactly the scores of run K's params saved as a single run."""
    result = _score_stack(three_runs[0], which)
    single = single_scores[k][0]
    assert result.pop("run") == NAMES_3[k] and result.keys() == single.keys()
    assert all(np.array_equal(result[f], single[f]) for f in single)


def test_choose_runs(three_runs, run):
    opened = evaluate.open_run(str(three_runs[0]), None)
    every = evaluate.choose_runs(opened)
    assert every == opened.choice and every.names == tuple(NAMES_3)
    assert (every.indices, every.each_run) == ((0, 1, 2), True)
    assert evaluate.choose_runs(opened, ensemble=True).each_run is False
    assert evaluate.choose_runs(opened, "seed=1").indices == (1,)
    assert evaluate.choose_runs(opened, "2").describe() == "run 2 (of 0-2), seed=2"
    assert evaluate.choose_runs(opened, "seed=2.0").indices == (2,)
    assert evaluate.choose_runs(opened, "") == every  # --run= (empty): not given
    # best/ holds each run's params of its own best epoch: the header names those epochs.
    bests = dataclasses.replace(opened, meta={**opened.meta, "best_epoch": [4, 9, 7]})
    one = dataclasses.replace(bests, choice=evaluate.choose_runs(bests, "1"))
    assert one.describe().endswith("best/3, run 1 (of 0-2), seed=1, its best epoch 9")
    # Its TensorBoard point: the end of that run's best epoch; the ensemble's, the folder's step.
    assert one.step() == 9 * opened.meta["steps_per_epoch"]
    assert bests.step() == opened.meta["step"] == 3
    assert bests.describe().endswith(
        "best/3, the ensemble of its 3 runs (the mean of their probabilities), their best "
        "epochs 4, 9, 7"
    )
    single = evaluate.open_run(str(run), None)
    assert evaluate.choose_runs(single) == evaluate.Choice() == single.choice
    # A checkpoint of a stop within an epoch (record: epoch 7 done, 18 steps of the 8th, 32 an
    # epoch): named by its place in the 8th epoch, not as the end of the 7th.
    stopped = dataclasses.replace(single, meta={"epoch": 7, "step": 242, "steps_per_epoch": 32})
    assert stopped.describe().endswith(" (step 18 of epoch 8, global step 242)")
    assert stopped.step() == 242
    ended = dataclasses.replace(single, meta={"epoch": 7, "step": 224, "steps_per_epoch": 32})
    assert ended.describe().endswith(" (epoch 7, step 224)")


# --run / --ensemble that do not fit the checkpoint (docs/errors.md): refused before any params
# are read. (checkpoint: "three" or "single", flags, message)
WRONG_CHOICES = {
    "run_of_a_single_run": (
        "single",
        ("0", False),
        "--run chooses among the runs of a checkpoint of several (config.num_runs, "
        "config.sweep), but ",
    ),
    "ensemble_of_a_single_run": ("single", (None, True), "holds the params of a single run"),
    "run_out_of_range": (
        "three",
        ("3", False),
        "--run 3 names none of the 3 runs of the checkpoint ",
    ),
    "unknown_run_name": ("three", ("seed=7", False), "give an index from 0 to 2 or a name"),
    "one_run_and_ensemble": ("three", ("0", True), "--run 0 chooses one run and --ensemble the"),
}


@pytest.mark.parametrize("case", WRONG_CHOICES)
def test_choose_runs_refuses_what_the_checkpoint_does_not_hold(case, three_runs, run):
    which_checkpoint, (which, ensemble), expected = WRONG_CHOICES[case]
    opened = evaluate.open_run(str(three_runs[0] if which_checkpoint == "three" else run), None)
    with pytest.raises(CheckpointError) as e:
        evaluate.choose_runs(opened, which, ensemble)
    assert expected in str(e.value)
    if case == "unknown_run_name":
        assert str(e.value).endswith(
            "give an index from 0 to 2 or a name (0 'seed=0', 1 'seed=1', 2 'seed=2'), e.g. --run "
            "seed=0."  # no part of a name is held by several seeds: none offered
        )
    if case.endswith("single_run"):
        flag = "--run" if which else "--ensemble"
        assert str(e.value).endswith(f": leave {flag} out.")


@pytest.mark.slow  # scripts/evaluate.py as a subprocess
def test_cli_scores_every_run_and_reports_the_ensemble(three_runs, tmp_path):
    """The table (a row per run, then the ensemble), and the report files of the ensemble, with
    every run's figures in scores.json."""
    result = _score_stack(three_runs[0])
    (tmp_path / "s.json").write_text("{}")  # --json over a file: said
    out = run_script(
        "evaluate.py", "--workdir", str(three_runs[0]), "--eval_dir", "eval", "--json", "s.json",
        cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert lines[0].endswith(
        "the ensemble of its 3 runs (the mean of their probabilities), their best epochs 1, 1, 1"
    )
    # The data scored: synthetic ones are flagged as such.
    assert lines[1] == "data: the SYNTHETIC data set (striped patterns, NOT CIFAR)"
    assert [line.split()[0] for line in lines[2:7]] == ["run", *NAMES_3, "ensemble"]
    assert lines[7].startswith(f"ensemble test accuracy: {result['accuracy']:.4f} (37 images)")
    saved = json.loads((tmp_path / "eval" / "scores.json").read_text())
    assert saved["ensemble"] == NAMES_3 and saved["runs"] == result["runs"]
    assert saved["accuracy"] == result["accuracy"]
    assert saved["confusion"] == result["confusion"].tolist()
    # The report files name the checkpoint they score.
    assert saved["checkpoint"].startswith(f"{three_runs[0] / 'checkpoints' / 'best'}/")
    assert lines[0] == f"checkpoint: {saved['checkpoint_line']}"  # each run's best epoch
    assert json.loads((tmp_path / "s.json").read_text()) == saved  # --json: the same scores
    assert lines[-1].endswith(", s.json (replacing the file there) and TensorBoard summaries")
    table = (tmp_path / "eval" / "per_class.txt").read_text().splitlines()
    assert table == lines[: len(table)] and table[8].split()[:2] == ["index", "class"]  # as shown
    assert saved["data"] == lines[1].removeprefix("data: ")
    assert (tmp_path / "eval" / "confusion.png").is_file()
    # The ensemble alone into the same folder: the report it replaces held each run's scores.
    again = ["--workdir", str(three_runs[0]), "--eval_dir", "eval", "--ensemble"]
    out = run_script("evaluate.py", *again, cwd=tmp_path)
    assert out.stdout.splitlines()[-1] == (
        f"replaced the report of {saved['checkpoint_line']} (with each run's scores); give "
        "another --eval_dir to keep both"
    )
    assert "runs" not in json.loads((tmp_path / "eval" / "scores.json").read_text())


@pytest.mark.slow  # scripts/evaluate.py as a subprocess
def test_cli_on_a_hundred_classes_shows_top5_and_a_short_table(tmp_path):
    """CIFAR-100 (a tiny archive of 150 test images): the accuracy line has the top-5 accuracy of
    the logits (by numpy's argsort); the console's table the 5 worst and the 5 best classes by
    accuracy, each by its index; per_class.txt all 100 in index order."""
    from tests import cifar_files  # noqa: PLC0415

    split = cifar_files.random_split(150, num_classes=100, seed=4)
    c = tiny_config()
    c.dataset, c.model.num_classes = "cifar100", 100
    c.archive = str(cifar_files.cifar100_python_tarball(tmp_path / "c100.tar.gz", split, split))
    save_runs(tmp_path / "run", c, [random_params(c)])
    out = run_script("evaluate.py", "--workdir", "run", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    opened = evaluate.open_run(str(tmp_path / "run"))
    logits, labels = evaluate.eval_logits(opened.config, opened.members())
    right, top5 = logits[0].argmax(-1) == labels, top5_by_sorting(logits[0], labels)
    assert f"{right.mean():.4f} (150 images), top-5 {top5:.4f}, loss " in lines[2]
    saved = json.loads((tmp_path / "run" / "eval" / "scores.json").read_text())
    assert saved["top5_accuracy"] == top5 > saved["accuracy"]
    assert lines[3] == (
        "the 5 worst and the 5 best of 100 classes by accuracy (per_class.txt lists all 100):"
    )
    assert lines[4].split()[:2] == ["index", "class"] and lines[10] == "  ...  (90 classes more)"
    held = np.unique(labels)  # classes with a test image, and their accuracy
    accuracy = {t: right[labels == t].mean() for t in held}
    rows = [line.split() for line in lines[5:10] + lines[11:16]]
    names = sources.class_names("cifar100")
    assert [row[1] for row in rows] == [names[int(row[0])] for row in rows]
    shown = [accuracy[int(row[0])] for row in rows]
    assert [row[2] for row in rows] == [f"{a:.4f}" for a in shown]
    ranked = sorted(accuracy.values())
    assert shown == ranked[:5] + ranked[-5:]
    assert lines[16].startswith("wrote ") and len(lines) == 17
    table = (tmp_path / "run" / "eval" / "per_class.txt").read_text().splitlines()
    assert table[:3] == lines[:3] and table[3] == lines[4]  # the console's header, all the rows
    assert [row.split()[:2] for row in table[4:]] == [[str(t), n] for t, n in enumerate(names)]


@pytest.mark.slow  # scripts/evaluate.py as a subprocess
def test_cli_reports_one_run_of_several_in_a_folder_of_its_own(three_runs, single_scores, tmp_path):
    """--run: the run's report in WORKDIR/eval/<its name>/, beside (not over) the ensemble's."""
    run = tmp_path / "run"
    shutil.copytree(three_runs[0], run)
    out = run_script("evaluate.py", "--workdir", str(run), "--run", "seed=1", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    saved = json.loads((run / "eval" / "seed=1" / "scores.json").read_text())
    assert saved["accuracy"] == single_scores[1][0]["accuracy"]
    assert not (run / "eval" / "scores.json").exists()
    # The run moved (its report with it): the same checkpoint again, not said to be replaced.
    run = run.rename(tmp_path / "moved")
    out = run_script("evaluate.py", "--workdir", str(run), "--run", "seed=1", cwd=tmp_path)
    assert out.stdout.splitlines()[-1].startswith("wrote "), out.stdout
    saved = json.loads((run / "eval" / "seed=1" / "scores.json").read_text())
    # Another checkpoint or run reported into the same folder says whose report it replaced.
    again = ["--workdir", str(run), "--eval_dir", str(run / "eval" / "seed=1")]
    out = run_script("evaluate.py", *again, "--run", "seed=2", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines()[-1] == (
        f"replaced the report of {saved['checkpoint_line']}; give another --eval_dir to keep both"
    )  # --eval_dir was given: another one
    again[1] = "moved"  # the same checkpoint, spelled relative to cwd: not said
    out = run_script("evaluate.py", *again, "--run", "seed=2", cwd=tmp_path)
    assert out.stdout.splitlines()[-1].startswith("wrote "), out.stdout
    # Four reports in the folder, the last one's TensorBoard events only (no repeated points).
    assert len(list((run / "eval" / "seed=1").glob("events.out.tfevents.*"))) == 1


@pytest.mark.slow  # scripts/evaluate.py as a subprocess
@pytest.mark.parametrize(
    "which, args, expected",
    [
        ("single", ["--ensemble"], "holds the params of a single run: leave --ensemble out."),
        ("three", ["--run", "seed=7"], "--run seed=7 names none of the 3 runs"),
    ],
    ids=["ensemble_of_a_single_run", "unknown_run_name"],
)
def test_cli_refuses_a_run_choice_before_evaluating(
    which, args, expected, three_runs, run, tmp_path
):
    """Exit 2, one paragraph, nothing written (no eval/ folder)."""
    folder = three_runs[0] if which == "three" else run
    before = snapshot(folder)
    message = fails_cleanly("evaluate.py", "--workdir", str(folder), *args, cwd=tmp_path)
    assert expected in message
    assert snapshot(folder) == before


@pytest.mark.parametrize("recorded, expected", [(False, "none"), (True, "full")])
def test_run_config_from_before_remat_named_its_policy(tmp_path, recorded, expected):
    """A config.json written when `remat` was a bool still loads: False kept everything ("none"),
    True only each block's input ("full")."""
    fields = json.loads(default_config().to_json_best_effort())
    fields["remat"] = recorded
    (tmp_path / "config.json").write_text(json.dumps(fields))
    assert evaluate.load_run_config(tmp_path).remat == expected


@pytest.mark.slow  # scripts/summary.py as a subprocess
def test_summary_of_a_trained_run(run, three_runs, tmp_path):
    """summary.py --workdir: the table of the run's model (its config.json), whose total is its
    checkpoint's parameter count; a run of several says how many it holds, each of that model;
    with --config as well, or neither, one paragraph."""
    params, _ = evaluate.load_params(evaluate.open_run(str(run)).checkpoint)
    count = sum(int(np.size(x)) for x in jax.tree.leaves(params))
    out = run_script("summary.py", "--workdir", str(run), cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"Total params: {count:,}" in out.stdout, out.stdout[-1500:]
    assert " runs of this model" not in out.stdout
    out = run_script("summary.py", "--workdir", str(three_runs[0]), cwd=tmp_path)
    assert f"Total params: {count:,}" in out.stdout, out.stdout[-1500:]  # the same model
    assert out.stdout.splitlines()[-1] == (
        f"{three_runs[0]} holds 3 runs of this model ({'; '.join(NAMES_3)}): the table is each "
        "one's"
    )
    demo = str(pathlib.Path(__file__).resolve().parents[1] / "configs" / "demo.py")
    out = run_script("summary.py", "--config", demo, "--config.num_runs=40", cwd=tmp_path)
    assert out.stdout.splitlines()[-1] == (  # the first names, not forty
        "the config trains 40 runs of this model (seed=0; seed=1; seed=2; ...): the table is "
        "each one's"
    )
    for args in ([], ["--workdir", str(run), "--config", demo]):
        message = fails_cleanly("summary.py", *args, cwd=tmp_path)
        assert "give --config FILE (a config's model, e.g. configs/strong.py, with" in message


def test_a_replaced_report_takes_its_events_but_never_a_runs(tmp_path):
    """A report written where one was: the old report's TensorBoard events go. Written into a run's
    own folder (--eval_dir WORKDIR), the training's events stay."""
    result = evaluate.scores(np.eye(3), np.array([0, 1, 2]), 3)
    for folder, kept in ((tmp_path / "eval", False), (tmp_path / "run", True)):
        folder.mkdir()
        if kept:
            (folder / "config.json").write_text("{}")
        (folder / "scores.json").write_text("{}")
        old = folder / "events.out.tfevents.1.old"
        old.write_bytes(b"")
        evaluate.write_report(result, ["a", "b", "c"], folder, step=1)
        assert old.exists() == kept
        assert len(list(folder.glob("events.out.tfevents.*"))) == 1 + kept
