"""Scoring a checkpoint: the confusion matrix, the per-class table, the PNG and TensorBoard report."""

import json
import shutil

import jax
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from swin_flax import build, checkpoints, evaluate, rundir
from swin_flax.checkpoints import CheckpointError
from swin_flax.config import default_config
from swin_flax.data import sources
from swin_flax.models import summary
from tests.test_entry_points import fails_cleanly, snapshot

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


def test_per_class_table():
    table = evaluate.per_class_table(HAND_CONFUSION, NAMES).splitlines()
    assert table[0].split()[:4] == ["class", "accuracy", "correct", "total"]
    assert table[1].split() == ["ant", "0.6667", "2", "3", "bee", "(1)"]
    assert table[2].split() == ["bee", "0.6667", "2", "3", "cat", "(1)"]
    assert table[3].split() == ["cat", "0.5000", "1", "2", "ant", "(1)"]
    perfect = evaluate.per_class_table(np.diag([4, 0]), ("a", "b")).splitlines()
    assert perfect[1].split() == ["a", "1.0000", "4", "4", "-"]
    assert perfect[2].split() == ["b", "-", "0", "0", "-"]


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
    name (turned upright) above the grid. Longer names widen both margins; above 20 classes only
    every 10th class index is written."""
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
    labelled = [bool(ink[top + 10 * i : top + 10 * i + 10, 20:left].any()) for i in range(30)]
    assert labelled == [i % 10 == 0 for i in range(30)]


def test_write_report_png_table_and_tensorboard(tmp_path):
    result = evaluate.scores(np.eye(3)[PREDS], LABELS, 3)
    paths = evaluate.write_report(result, NAMES, tmp_path / "eval", step=12)
    png = np.asarray(Image.open(paths["confusion_png"]))
    np.testing.assert_array_equal(png, evaluate.confusion_image(HAND_CONFUSION, NAMES))
    assert paths["table"].read_text().splitlines()[1].split()[:2] == ["ant", "0.6667"]
    saved = json.loads(paths["scores"].read_text())
    assert saved["confusion"] == HAND_CONFUSION.tolist() and saved["class_names"] == list(NAMES)
    tags = {}
    for event_file in (tmp_path / "eval").glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(event_file)):
            for value in event.summary.value:
                tags[value.tag] = event.step
    assert tags.get("confusion_matrix") == 12 and tags.get("eval_accuracy") == 12


def make_run(workdir, embed_dim: int = 8, record_model: bool = False):
    """A tiny run with random params as train.py leaves it: config.json and a `best` checkpoint of
    step 3 (its record names the model when `record_model`, as train.py's do)."""
    c = default_config()
    c.dataset = "synthetic"
    c.synthetic_test_examples = 37  # not a multiple of the batch: the padding must not count
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
    model = build.model_from_config(c)
    rng = np.random.default_rng(0)
    params = jax.tree.map(
        lambda s: (0.3 * rng.standard_normal(s.shape)).astype(np.float32),
        summary.param_shapes(model),
    )
    rundir.write_config(c, workdir)
    meta = {"epoch": 1, "step": 3, **({"model": c.model.to_dict()} if record_model else {})}
    ckpts = checkpoints.Checkpoints(workdir)
    ckpts.save("best", 3, {"params": params, "step": 3}, meta)
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
    result = evaluate.evaluate_checkpoint(config, loaded)
    assert meta["step"] == 3 and result["num_examples"] == 37
    _, labels = sources.synthetic_split(37, seed=0, split="test")
    np.testing.assert_array_equal(result["confusion"].sum(1), np.bincount(labels, minlength=10))
    assert result["accuracy"] == np.trace(result["confusion"]) / 37


def _copy(run, tmp_path):
    shutil.copytree(run, tmp_path / "copy")
    return tmp_path / "copy"


def _other_model(run, tmp_path):
    make_run(tmp_path / "other", embed_dim=16, record_model=True)
    return str(run), str(tmp_path / "other" / "checkpoints" / "best" / "3")


def _outside_a_run(run, tmp_path):
    shutil.copytree(run / "checkpoints" / "best" / "3", tmp_path / "saved" / "3")
    return None, str(tmp_path / "saved" / "3")


def _without_checkpoint(run, tmp_path):
    shutil.copy(run / "config.json", tmp_path)
    return str(tmp_path), None


def _not_json(run, tmp_path):
    (_copy(run, tmp_path) / "config.json").write_text("{")
    return str(tmp_path / "copy"), None


# What --workdir / --checkpoint can name wrongly (docs/errors.md, "Other entry points"): each is
# refused by evaluate.open_run, before any params are read, saying what to give instead.
WRONG_RUNS = {
    "workdir_missing": (lambda run, tmp: (str(tmp / "nope"), None), "nope does not exist"),
    "workdir_a_file": (lambda run, tmp: (str(run / "config.json"), None), "json is a file"),
    "workdir_not_a_run": (lambda run, tmp: (str(tmp), None), "holds no config.json"),
    "no_checkpoint_yet": (_without_checkpoint, "holds no checkpoint yet"),
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
    "checkpoint_outside_a_run": (_outside_a_run, "is not inside a run folder"),
    "checkpoint_of_another_model": (
        _other_model,
        "was written for another model than",
    ),
    "config_not_json": (_not_json, "is not a config that scripts/main.py wrote"),
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
    if case == "checkpoint_of_another_model":
        assert "embed_dim: checkpoint 16 vs config.json 8" in str(e.value)


def test_open_run_finds_the_best_checkpoint_and_its_record(run):
    opened = evaluate.open_run(str(run), None)
    assert opened.checkpoint == run / "checkpoints" / "best" / "3"
    assert opened.meta["step"] == 3 and opened.config.model.embed_dim == 8
    by_step = evaluate.open_run(None, str(opened.checkpoint))
    assert by_step.workdir == run and by_step.config == opened.config


def test_damaged_checkpoint_is_named(run, tmp_path):
    copy = _copy(run, tmp_path)
    ckpt = copy / "checkpoints" / "best" / "3"
    shutil.rmtree(ckpt / "state" / "ocdbt.process_0" / "d")  # the arrays' data files
    opened = evaluate.open_run(str(copy), None)
    with pytest.raises(CheckpointError, match="cannot be read .* incomplete or damaged"):
        evaluate.load_params(opened.checkpoint)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--json", "no_such_folder/scores.json"], "is not a file path in a folder that exists"),
        (["--json", "."], "--json . is not a file path in a folder that exists"),
        (["--eval_dir", "RUN/config.json"], "config.json is a file: give a folder"),
        (["--checkpoint", "RUN/checkpoints/best"], "is not a checkpoint step folder"),
    ],
    ids=["json_folder_missing", "json_a_folder", "eval_dir_a_file", "checkpoint_series_folder"],
)
def test_cli_refuses_before_evaluating(args, expected, run, tmp_path):
    """evaluate.py: wrong output paths are refused before anything is loaded, a wrong checkpoint
    before its params are read; exit 2, one paragraph, nothing written."""
    args = [a.replace("RUN", str(run)) for a in args]
    before = snapshot(run)
    message = fails_cleanly("evaluate.py", "--workdir", str(run), *args, cwd=tmp_path)
    assert expected in message
    assert snapshot(run) == before
