"""Classifying image files with a trained run: top-k classes with probabilities and names.

Images (anything Pillow reads, any size, turned RGB) go through the test pipeline's transform of the
run's config (`pipeline.to_model_input`): antialiased bilinear resize to model.img_size, then
(x / 255 - normalize_mean) / normalize_std. A checkpoint of several runs predicts with the one
chosen, or with the ensemble of those chosen (all by default).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import warnings
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
import numpy as np

from swin_flax import build, evaluate, steps
from swin_flax.data import sources


@dataclasses.dataclass(frozen=True)
class Prediction:
    """Top-k of one image: class indices, names and probabilities, most likely first."""

    path: str
    indices: tuple[int, ...]
    names: tuple[str, ...]
    probabilities: tuple[float, ...]


def load_image(path: str | os.PathLike) -> np.ndarray:
    """An image file -> uint8 [H, W, 3] RGB, upright (EXIF orientation applied), 16-bit grey scaled
    to 8 bits (Pillow's RGB conversion would clip it). FileNotFoundError for a missing path,
    DataError for a folder, an undecodable file or a 32-bit one (its range unknown). Pillow's
    large-image warning is not shown: the user chose the file."""
    from PIL import Image, ImageOps  # noqa: PLC0415

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"image {path} does not exist.")
    if os.path.isdir(path):
        raise sources.DataError(f"image {path} is a folder, not an image file.")
    try:
        with warnings.catch_warnings():  # set before Image.open, which warns of large images
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            warnings.filterwarnings("ignore", "Corrupt EXIF data", UserWarning)  # still read
            with Image.open(path) as opened:
                img = ImageOps.exif_transpose(opened)
                if img.mode in ("I", "F"):
                    kind = "integer" if img.mode == "I" else "floating-point"
                    raise sources.DataError(
                        f"image {path} holds 32-bit {kind} values, whose range is not known: save it "
                        "with 8 or 16 bits per channel (e.g. as PNG) and pass that file."
                    )
                if img.mode.startswith("I;16"):
                    grey = (np.asarray(img, np.uint32) * 255 + 32767) // 65535  # rounded to 8 bits
                    return np.repeat(grey.astype(np.uint8)[..., None], 3, axis=-1)
                return np.asarray(img.convert("RGB"), np.uint8)
    except sources.DataError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError) as e:  # "cannot identify image file"
        raise sources.DataError(
            f"image {path} cannot be read as an image ({type(e).__name__}: {e})."
        ) from None


def check_images(paths: Sequence[str | os.PathLike]) -> tuple[list[str], list[str]]:
    """(readable image paths, one message per other path), decoded before a checkpoint is loaded
    so that bad files are named at once and the good ones still get their predictions. A folder
    stands for the files under it, subfolders included (an ImageFolder layout: class/img.png;
    hidden ones and macOS' __MACOSX/ not), whose suffix Pillow reads, in path order."""
    from PIL import Image  # noqa: PLC0415

    good, bad = [], []
    suffixes = tuple(Image.registered_extensions())
    for given in map(os.fspath, paths):
        files = [given]
        if os.path.isdir(given):
            files = []
            for folder, subfolders, names in os.walk(given, followlinks=True):  # as ImageFolder
                subfolders[:] = [d for d in subfolders if not d.startswith((".", "__MACOSX"))]
                files += [
                    path
                    for n in names
                    if n.lower().endswith(suffixes) and not n.startswith(".")  # macOS' ._x.jpg
                    if os.path.isfile(path := os.path.join(folder, n))  # not a broken link
                ]
            files.sort()
            if not files:
                bad.append(f"the folder {given} holds no image file (PNG, JPEG, ...)")
        for path in files:
            try:
                load_image(path)
                good.append(path)
            except (OSError, sources.DataError) as e:
                bad.append(str(e).rstrip("."))
    return good, bad


def preprocess(
    image: np.ndarray, image_size: int, mean: Sequence[float], std: Sequence[float]
) -> np.ndarray:
    """uint8 [H, W, 3] -> float32 [image_size, image_size, 3], the config's eval transform."""
    import tensorflow as tf  # noqa: PLC0415

    from swin_flax.data import pipeline  # noqa: PLC0415 (TF: only when classifying)

    x = pipeline.to_model_input(tf.constant(image[None]), int(image_size), mean, std)
    return np.asarray(x[0])


def top_k(logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices [N, k], probabilities [N, k]): each row's k (at most all) largest probabilities."""
    if not (isinstance(k, int) and k >= 1):
        raise ValueError(f"top_k must be a positive integer, got {k!r}.")
    probs = np.exp(evaluate.log_softmax(np.asarray(logits, np.float64)))
    order = np.argsort(-probs, axis=-1, kind="stable")[:, :k]
    return order, np.take_along_axis(probs, order, axis=-1)


def predict_images(
    config: ml_collections.ConfigDict,
    members: Sequence[Any],
    images: Sequence[str | os.PathLike | np.ndarray],
    k: int = 5,
    batch_size: int = 64,
) -> list[Prediction]:
    """Top-k predictions for each image in order (one device, `batch_size` at a time) of `members`
    (`evaluate.open_run(...).members()`), one params tree or an ensemble. An image is a file path
    or a uint8 [H, W, 3] array (as load_image returns; its Prediction's path: `array K`)."""
    for i, x in enumerate(images):
        if isinstance(x, np.ndarray) and (x.dtype != np.uint8 or x.ndim != 3 or x.shape[2] != 3):
            raise ValueError(f"image {i}: give a uint8 [H, W, 3] array, not {x.dtype} {x.shape}.")
    apply = jax.jit(functools.partial(steps.logits, apply_fn=build.model_from_config(config).apply))
    transform = (config.model.img_size, config.normalize_mean, config.normalize_std)
    logits = []
    for start in range(0, len(images), batch_size):
        batch = [
            x if isinstance(x, np.ndarray) else load_image(x)
            for x in images[start : start + batch_size]
        ]
        inputs = np.stack([preprocess(x, *transform) for x in batch])
        logits.append(np.stack([np.asarray(apply(params, inputs)) for params in members]))
    indices, probs = top_k(evaluate.combined_logits(np.concatenate(logits, axis=1)), k)
    names = sources.class_names(config.dataset)
    return [
        Prediction(
            f"array {i}" if isinstance(x, np.ndarray) else os.fspath(x),
            tuple(idx.tolist()),
            tuple(names[j] for j in idx),
            tuple(prob.tolist()),
        )
        for i, (x, idx, prob) in enumerate(zip(images, indices, probs))
    ]


def format_predictions(predictions: Sequence[Prediction]) -> str:
    """One block per image: its path, then `rank. name (index)  probability` lines."""
    lines = []
    for pred in predictions:
        lines.append(pred.path)
        w = len(str(len(pred.indices)))  # rank 10's dot under rank 9's
        for rank, (i, name, p) in enumerate(zip(pred.indices, pred.names, pred.probabilities), 1):
            lines.append(f"  {rank:>{w}}. {name:<20s} ({i:>3d})  {p:.4f}")
    return "\n".join(lines)
