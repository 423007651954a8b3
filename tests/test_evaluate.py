"""Scoring a checkpoint: the confusion matrix, the per-class table, the PNG and TensorBoard report."""

import json

import jax
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from swin_flax import build, checkpoints, evaluate, train
from swin_flax.config import default_config
from swin_flax.data import sources
from swin_flax.models import swin

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


def test_evaluate_checkpoint_counts_every_test_image(tmp_path):
    c = default_config()
    c.dataset = "synthetic"
    c.synthetic_test_examples = 37  # not a multiple of the batch: the padding must not count
    c.eval_batch_size = 16
    c.model.update(
        img_size=32,
        patch_size=4,
        embed_dim=8,
        depths=(2,),
        num_heads=(1,),
        window_size=4,
        num_classes=10,
    )
    model = build.create_model(c)
    rng = np.random.default_rng(0)
    params = jax.tree.map(
        lambda s: (0.3 * rng.standard_normal(s.shape)).astype(np.float32), swin.param_shapes(model)
    )
    train.write_config(c, tmp_path)
    ckpts = checkpoints.Checkpoints(tmp_path)
    ckpts.save("best", 3, {"params": params, "step": 3}, {"epoch": 1, "step": 3})
    ckpts.close()

    workdir, ckpt = evaluate.resolve_checkpoint(str(tmp_path), None)
    config = evaluate.load_run_config(workdir)
    loaded, meta = evaluate.load_params(ckpt)
    result = evaluate.evaluate_checkpoint(config, loaded)
    assert meta["step"] == 3 and result["num_examples"] == 37
    _, labels = sources.synthetic_split(37, seed=0, split="test")
    np.testing.assert_array_equal(result["confusion"].sum(1), np.bincount(labels, minlength=10))
    assert result["accuracy"] == np.trace(result["confusion"]) / 37
