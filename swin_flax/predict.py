"""Classifying image files with a trained run: top-k classes with probabilities and names.

Images (anything Pillow reads, any size, turned RGB) go through the test pipeline's transform of the
run's config (`pipeline.to_model_input`): antialiased bilinear resize to model.img_size squared
(the aspect ratio is not kept: crop an image first to keep it), here rounded to 8 bits as
torchvision's Resize of a PIL image is (so kept until its batch: a quarter of float32's memory;
within half a grey level of evaluate's unrounded resize), then (x / 255 - normalize_mean) /
normalize_std. A checkpoint of several runs predicts with the one chosen, or with the ensemble of
those chosen (all by default).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import os
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np

from swin_flax import build, evaluate, runfiles, steps
from swin_flax.data import sources


@dataclasses.dataclass(frozen=True)
class Prediction:
    """Top-k of one image: class indices, names and probabilities, most likely first."""

    path: str
    indices: tuple[int, ...]
    names: tuple[str, ...]
    probabilities: tuple[float, ...]


def image_suffixes() -> tuple[str, ...]:
    """The suffixes of the formats Pillow decodes here, which a folder's images are told by: not its
    save-only ones (PDF), stubs that read a header and need a handler to decode (HDF5, GRIB, BUFR,
    WMF), MPEG (a header only) or EPS without Ghostscript."""
    from PIL import EpsImagePlugin, Image, ImageFile  # noqa: PLC0415

    Image.init()
    decoded = {"MPO"}  # opened by JPEG's factory, so not a key of Image.OPEN
    for fmt, (factory, _) in Image.OPEN.items():
        stub = isinstance(factory, type) and issubclass(factory, ImageFile.StubImageFile)
        decoded |= set() if stub or fmt == "MPEG" else {fmt}
    if not EpsImagePlugin.has_ghostscript():
        decoded.discard("EPS")
    return tuple(e for e, fmt in Image.registered_extensions().items() if fmt in decoded)


def load_image(path: str | os.PathLike) -> np.ndarray:
    """An image file -> uint8 [H, W, 3] RGB, upright (EXIF orientation applied), 16-bit grey scaled
    to 8 bits (Pillow's RGB conversion would clip it). FileNotFoundError for a missing path,
    DataError for a folder, an undecodable file, a 32-bit one (its range unknown) or one too large
    for the host's memory. Pillow's limit on large images (Image.MAX_IMAGE_PIXELS, a guard for
    servers) is lifted while it reads: the user chose the file."""
    from PIL import Image, ImageOps  # noqa: PLC0415

    path = os.fspath(path)
    if not os.path.exists(path):
        if any(c in path for c in "*?["):  # a glob the shell passed as it is
            raise FileNotFoundError(
                f"image {path} does not exist: the pattern was not expanded (it was quoted, or no "
                "file matches it): give it without quotes, or give the folder itself (its images "
                "are all read)."
            )
        raise FileNotFoundError(f"image {path} does not exist.")
    if os.path.isdir(path):
        raise sources.DataError(f"image {path} is a folder, not an image file.")
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        with warnings.catch_warnings():
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
    except MemoryError:  # a huge image or a decompression bomb: this file's fault, not the run's
        raise sources.DataError(
            f"image {path} is too large to decode in memory: pass a smaller copy of it (predict "
            "resizes it to the model's input size anyway)."
        ) from None
    except (OSError, ValueError) as e:  # "cannot identify image file"
        said = str(e).rstrip(".")  # Pillow's own sentence ends in a full stop, as this one does
        raise sources.DataError(
            f"image {path} cannot be read as an image ({type(e).__name__}: {said})."
        ) from None
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def _is_run(folder: str) -> bool:
    """A run's folder (its config.json and config.txt, both written at its start), not one of
    photos that holds some config.json."""
    return runfiles.is_run_folder(folder) and os.path.isfile(os.path.join(folder, "config.txt"))


def read_images(
    paths: Sequence[str | os.PathLike], image_size: int
) -> tuple[list[str], list[np.ndarray], list[str]]:
    """(readable image paths, their images as `resize` makes them, one message per other path):
    each file decoded once, kept only at the model's input size in uint8, so that bad files are
    named before anything compiles and the good ones still get their predictions. A folder stands
    for the files under it, subfolders included (an ImageFolder layout: class/img.png; hidden ones,
    macOS' __MACOSX/ and runs' folders, whose reports are no photos, not; linked folders followed,
    but not a link back up to a folder it was reached by or one above it, a loop), whose suffix is
    of a format Pillow decodes, in path order."""
    good, inputs, bad = [], [], []
    suffixes = image_suffixes()
    for given in map(os.fspath, paths):
        files = [given]
        if os.path.isdir(given) and _is_run(given):
            bad.append(f"{given} is a run's folder, not a folder of images")
            continue
        if os.path.isdir(given):
            files, walked = [], {}  # a folder -> the real paths of those it was reached by
            for folder, subfolders, names in os.walk(given, followlinks=True):  # as ImageFolder
                chain = (*walked.get(folder, ()), os.path.join(os.path.realpath(folder), ""))
                subfolders[:] = [
                    d
                    for d in subfolders
                    if not d.startswith((".", "__MACOSX"))
                    if not _is_run(os.path.join(folder, d))  # eval/confusion.png
                    if not any(  # a link to one of them or above (`up -> ..`): a loop
                        c.startswith(os.path.join(os.path.realpath(os.path.join(folder, d)), ""))
                        for c in chain
                    )
                ]
                walked |= {os.path.join(folder, d): chain for d in subfolders}
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
                inputs.append(resize(load_image(path), image_size))
                good.append(path)
            except (OSError, sources.DataError) as e:
                bad.append(str(e).rstrip("."))
    return good, inputs, bad


def resize(image: np.ndarray, image_size: int) -> np.ndarray:
    """uint8 [H, W, 3] -> uint8 [image_size, image_size, 3]: the eval transform's resize
    (`pipeline.to_model_input`'s), rounded to 8 bits, so that an image waiting for its batch takes
    a quarter of its float32 model input's memory."""
    import tensorflow as tf  # noqa: PLC0415

    from swin_flax.data import pipeline  # noqa: PLC0415 (TF: only when classifying)

    if image.shape[:2] == (image_size, image_size):
        return image
    x = pipeline.resize(tf.cast(image[None], tf.float32), image_size)[0]
    return np.clip(np.round(x.numpy()), 0, 255).astype(np.uint8)


def normalize(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """uint8 [B, S, S, 3] -> float32 model inputs: (x / 255 - mean) / std, as evaluated."""
    import tensorflow as tf  # noqa: PLC0415

    from swin_flax.data import pipeline  # noqa: PLC0415 (TF: only when classifying)

    return np.asarray(pipeline.to_model_input(tf.constant(images), images.shape[1], mean, std))


def preprocess(
    image: np.ndarray, image_size: int, mean: Sequence[float], std: Sequence[float]
) -> np.ndarray:
    """uint8 [H, W, 3] -> float32 [image_size, image_size, 3], the model input predict makes."""
    return normalize(resize(image, image_size)[None], mean, std)[0]


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
    size = config.model.img_size
    inputs = (resize(x if isinstance(x, np.ndarray) else load_image(x), size) for x in images)
    paths = [
        f"array {i}" if isinstance(x, np.ndarray) else os.fspath(x) for i, x in enumerate(images)
    ]
    return classify(config, members, paths, inputs, k, batch_size)


def classify(
    config: ml_collections.ConfigDict,
    members: Sequence[Any],
    paths: Sequence[str],
    inputs: Iterable[np.ndarray],
    k: int = 5,
    batch_size: int = 64,
) -> list[Prediction]:
    """Top-k predictions of images at the model's input size (`resize`'s, as `read_images` returns
    them), named by `paths`; read and normalised `batch_size` at a time, so that a generator of
    them holds no more."""
    apply = jax.jit(functools.partial(steps.logits, apply_fn=build.model_from_config(config).apply))
    logits, inputs = [], iter(inputs)
    while batch := list(itertools.islice(inputs, batch_size)):
        x = normalize(np.stack(batch), config.normalize_mean, config.normalize_std)
        logits.append(np.stack([np.asarray(apply(params, x)) for params in members]))
    indices, probs = top_k(evaluate.combined_logits(np.concatenate(logits, axis=1)), k)
    names = sources.class_names(config.dataset)
    return [
        Prediction(path, tuple(idx.tolist()), tuple(names[j] for j in idx), tuple(prob.tolist()))
        for path, idx, prob in zip(paths, indices, probs, strict=True)
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
