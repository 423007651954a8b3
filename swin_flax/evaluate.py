"""Using a finished run: load its config and a checkpoint's params, and score them on the test split."""

from __future__ import annotations

import functools
import json
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from flax import jax_utils

from swin_flax import checkpoints, train
from swin_flax.config import default_config
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
    config.update_from_flattened_dict(_flatten(saved))
    return config


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = tuple(v) if isinstance(v, list) else v
    return out


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

    params = jax_utils.replicate(params)
    all_logits, all_labels = [], []
    for batch in batches:
        logits = np.asarray(logits_fn(params, batch["image"]))
        mask = np.asarray(batch["mask"]).reshape(-1) > 0
        all_logits.append(logits.reshape(-1, logits.shape[-1])[mask])
        all_labels.append(np.asarray(batch["label"]).reshape(-1)[mask])
    return np.concatenate(all_logits), np.concatenate(all_labels)


def scores(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> dict[str, Any]:
    """Accuracy, mean cross-entropy, per-class accuracy and the confusion matrix (rows: true)."""
    pred = logits.argmax(-1)
    confusion = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(confusion, (labels, pred), 1)
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
    model = swin.create_model(
        config.model, dtype=jnp.dtype(config.dtype), scan_blocks=config.scan_blocks
    )
    logits, labels = predict_logits(model, params, ds.as_numpy_iterator())
    return scores(logits, labels, config.model.num_classes)
