"""Using a finished run: load its config and a checkpoint's params, and score them on the test split."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from clu import metric_writers
from etils import epath

from swin_flax import build, checkpoints, steps, train
from swin_flax.config import default_config, flatten
from swin_flax.data import pipeline
from swin_flax.models import swin


def load_run_config(workdir: str | epath.Path) -> ml_collections.ConfigDict:
    """The config a run wrote into its workdir (config.json), over the defaults."""
    path = epath.Path(workdir) / "config.json"
    if not path.exists():
        raise checkpoints.CheckpointError(
            f"{path} does not exist: is {workdir} the --workdir of a swin-flax run?"
        )
    config = default_config()
    saved = json.loads(path.read_text())
    config.unlock()
    config.update_from_flattened_dict(flatten(saved))
    return config


def resolve_checkpoint(
    workdir: str | None, checkpoint: str | None
) -> tuple[epath.Path, epath.Path]:
    """(workdir, checkpoint step folder): the given checkpoint, else the run's best, else its latest."""
    if checkpoint:
        ckpt = epath.Path(checkpoint)
        if not ckpt.is_dir():
            raise checkpoints.CheckpointError(f"--checkpoint {ckpt} is not a checkpoint folder.")
        if workdir is None:  # .../WORKDIR/checkpoints/{latest,best}/STEP
            workdir = str(ckpt.parent.parent.parent)
        return epath.Path(workdir), ckpt
    if workdir is None:
        raise checkpoints.CheckpointError("give --workdir (a run's folder) or --checkpoint PATH.")
    ckpts = checkpoints.Checkpoints(workdir, read_only=True)
    for which in ("best", "latest"):
        step = ckpts.latest_step(which)
        if step is not None:
            return epath.Path(workdir), ckpts.root / which / str(step)
    raise checkpoints.CheckpointError(
        f"{workdir} holds no checkpoint yet (checkpoints/best or latest)."
    )


def load_params(checkpoint: epath.Path) -> tuple[Any, dict[str, Any]]:
    """The params and the JSON record of one checkpoint step folder."""
    with ocp.StandardCheckpointer() as ckptr:
        state = ckptr.restore(checkpoint / "state")
    meta = json.loads((checkpoint / "meta" / "metadata").read_text())
    return state["params"], meta


def predict_logits(
    model: swin.SwinTransformer, params: Any, batches
) -> tuple[np.ndarray, np.ndarray]:
    """(logits, labels) of every real (unpadded) example of the eval batches."""

    @functools.partial(jax.pmap, axis_name="batch")
    def logits_fn(params, images):
        return model.apply({"params": params}, images, deterministic=True).astype(jnp.float32)

    params = steps.replicate(params)
    all_logits, all_labels = [], []
    for batch in batches:
        logits = np.asarray(logits_fn(params, batch["image"]))
        mask = np.asarray(batch["mask"]).reshape(-1) > 0
        all_logits.append(logits.reshape(-1, logits.shape[-1])[mask])
        all_labels.append(np.asarray(batch["label"]).reshape(-1)[mask])
    return np.concatenate(all_logits), np.concatenate(all_labels)


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """int64 [num_classes, num_classes]: entry (t, p) counts examples of true class t predicted p."""
    labels, predictions = np.asarray(labels).reshape(-1), np.asarray(predictions).reshape(-1)
    if labels.shape != predictions.shape:
        raise ValueError(
            f"labels {labels.shape} and predictions {predictions.shape} differ in size."
        )
    for name, v in (("labels", labels), ("predictions", predictions)):
        if v.size and (v.min() < 0 or v.max() >= num_classes):
            raise ValueError(f"{name} must lie in [0, {num_classes}), got {v.min()}..{v.max()}.")
    confusion = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    return confusion


def scores(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> dict[str, Any]:
    """Accuracy, mean cross-entropy, per-class accuracy and the confusion matrix (rows: true)."""
    pred = logits.argmax(-1)
    confusion = confusion_matrix(labels, pred, num_classes)
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    per_class = confusion.diagonal() / np.maximum(confusion.sum(1), 1)
    return {
        "accuracy": float((pred == labels).mean()),
        "loss": float(-log_probs[np.arange(len(labels)), labels].mean()),
        "num_examples": int(len(labels)),
        "per_class_accuracy": per_class.tolist(),
        "confusion": confusion,
    }


def evaluate_checkpoint(config: ml_collections.ConfigDict, params: Any) -> dict[str, Any]:
    """Scores params on the test split that `config` names, every test image counted once."""
    images, labels = train.load_split(config, "test")
    n_dev = jax.local_device_count()
    batch = max(n_dev, config.eval_batch_size - config.eval_batch_size % n_dev)
    ds = pipeline.eval_dataset(
        images,
        labels,
        global_batch_size=batch,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        local_device_count=n_dev,
        normalize_mean=tuple(config.normalize_mean),
        normalize_std=tuple(config.normalize_std),
        image_size=config.model.img_size,
    )
    model = build.create_model(config)
    logits, labels = predict_logits(model, params, ds.as_numpy_iterator())
    return scores(logits, labels, config.model.num_classes)


def per_class_table(confusion: np.ndarray, class_names: Sequence[str]) -> str:
    """Text table: per class its accuracy (recall), correct / total, and the class it is most
    often mistaken for."""
    confusion = np.asarray(confusion)
    width = max(8, *(len(n) for n in class_names))
    lines = [
        f"{'class':<{width}}  {'accuracy':>8}  {'correct':>8}  {'total':>6}  most confused with"
    ]
    for t, name in enumerate(class_names):
        row = confusion[t]
        total, correct = int(row.sum()), int(row[t])
        off = row.copy()
        off[t] = -1
        worst = int(off.argmax())
        acc = f"{correct / total:.4f}" if total else "-"
        confused = f"{class_names[worst]} ({row[worst]})" if total and row[worst] > 0 else "-"
        lines.append(f"{name:<{width}}  {acc:>8}  {correct:>8}  {total:>6}  {confused}")
    return "\n".join(lines)


def confusion_image(
    confusion: np.ndarray, class_names: Sequence[str] | None = None, cell: int | None = None
) -> np.ndarray:
    """The row-normalised confusion matrix as a uint8 RGB heat map [H, W, 3] (white 0 -> dark blue
    1, rows: true class, columns: predicted), with class names on the left and indices on top, and
    each cell's percentage written in it when there are at most 20 classes."""
    from PIL import Image, ImageDraw  # noqa: PLC0415

    confusion = np.asarray(confusion, np.float64)
    n = len(confusion)
    names = list(class_names) if class_names is not None else [str(i) for i in range(n)]
    cell = cell or (40 if n <= 20 else max(6, 800 // n))
    fractions = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
    left, top = 8 + 7 * max(len(s) for s in names) if n <= 20 else 4, 18 if n <= 20 else 4
    img = Image.new("RGB", (left + n * cell + 1, top + n * cell + 1), "white")
    draw = ImageDraw.Draw(img)
    white, blue = np.array([255.0, 255.0, 255.0]), np.array([8.0, 48.0, 107.0])
    for t in range(n):
        for p in range(n):
            f = fractions[t, p]
            colour = tuple(int(round(c)) for c in white + f * (blue - white))
            x, y = left + p * cell, top + t * cell
            draw.rectangle([x, y, x + cell, y + cell], fill=colour, outline=(200, 200, 200))
            if n <= 20 and confusion[t, p] > 0:
                ink = "white" if f > 0.5 else "black"
                draw.text((x + 3, y + cell // 2 - 5), f"{100 * f:.0f}", fill=ink)
        if n <= 20:
            draw.text((4, top + t * cell + cell // 2 - 5), names[t], fill="black")
            draw.text((left + t * cell + cell // 2 - 3, 4), str(t), fill="black")
    return np.asarray(img, np.uint8)


def write_report(
    result: Mapping[str, Any],
    class_names: Sequence[str],
    out_dir: str | epath.Path,
    step: int = 0,
) -> dict[str, epath.Path]:
    """Writes the scores of `result` (from `scores`) into `out_dir`: per_class.txt (the table),
    confusion.png, scores.json, and TensorBoard summaries (the confusion image and the accuracy,
    at `step`). Returns the paths written."""
    from PIL import Image  # noqa: PLC0415

    out = epath.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    confusion = np.asarray(result["confusion"])
    image = confusion_image(confusion, class_names)
    paths = {
        "table": out / "per_class.txt",
        "confusion_png": out / "confusion.png",
        "scores": out / "scores.json",
    }
    paths["table"].write_text(per_class_table(confusion, class_names) + "\n")
    with paths["confusion_png"].open("wb") as f:
        Image.fromarray(image).save(f, format="PNG")
    plain = {**result, "confusion": confusion.tolist(), "class_names": list(class_names)}
    paths["scores"].write_text(json.dumps(plain, indent=2))
    writer = metric_writers.SummaryWriter(str(out))
    writer.write_images(step, {"confusion_matrix": image[None]})
    writer.write_scalars(step, {"eval_accuracy": result["accuracy"], "eval_loss": result["loss"]})
    writer.flush()
    writer.close()
    return paths
