"""Pictures of what the input pipeline feeds the model: augmentation grids for people to look at."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def to_uint8(
    images: np.ndarray, normalize_mean: Sequence[float], normalize_std: Sequence[float]
) -> np.ndarray:
    """Undoes the pipeline's (x / 255 - mean) / std: float [..., 3] -> uint8 pixels."""
    x = np.asarray(images, np.float32) * np.asarray(normalize_std, np.float32)
    x = (x + np.asarray(normalize_mean, np.float32)) * 255.0
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def image_grid(images: np.ndarray, *, cols: int = 8, scale: int = 4, pad: int = 2) -> np.ndarray:
    """Tiles uint8 images [N, H, W, 3] into one uint8 picture, each enlarged `scale` times
    (nearest neighbour, so pixels stay visible) with `pad` white pixels between tiles."""
    images = np.asarray(images)
    assert images.dtype == np.uint8 and images.ndim == 4, (images.dtype, images.shape)
    n, h, w, c = images.shape
    cols = max(1, min(cols, n))
    rows = -(-n // cols)
    # Tiles of the enlarged image and `pad` white pixels after it; the grid has one more margin.
    tiles = np.full((rows * cols, h * scale + pad, w * scale + pad, c), 255, np.uint8)
    tiles[:n, : h * scale, : w * scale] = images.repeat(scale, axis=1).repeat(scale, axis=2)
    th, tw = tiles.shape[1:3]
    grid = tiles.reshape(rows, cols, th, tw, c).swapaxes(1, 2).reshape(rows * th, cols * tw, c)
    return np.pad(grid, ((pad, 0), (pad, 0), (0, 0)), constant_values=255)


def batch_grid(
    batch_images: np.ndarray,
    normalize_mean: Sequence[float],
    normalize_std: Sequence[float],
    *,
    count: int = 64,
    cols: int = 8,
    scale: int = 4,
) -> np.ndarray:
    """The first `count` images of a pipeline batch (float [D, b, H, W, 3] or [B, H, W, 3]) as one
    uint8 grid picture, ready for a PNG file or a TensorBoard image summary."""
    x = np.asarray(batch_images)
    x = x.reshape(-1, *x.shape[-3:])[:count]
    return image_grid(to_uint8(x, normalize_mean, normalize_std), cols=cols, scale=scale)


def before_after_grid(
    before: np.ndarray, after: np.ndarray, *, cols: int = 8, scale: int = 4
) -> np.ndarray:
    """uint8 images [N, H, W, 3] twice (e.g. plain and augmented), as alternating rows of `cols`:
    each row of originals is followed by the same images transformed."""
    assert before.shape == after.shape, (before.shape, after.shape)
    rows = -(-len(before) // cols)
    white = np.full((rows * cols - len(before), *before.shape[1:]), 255, np.uint8)
    by_row = [np.concatenate([x, white]).reshape(rows, cols, *x.shape[1:]) for x in (before, after)]
    return image_grid(np.stack(by_row, 1).reshape(-1, *before.shape[1:]), cols=cols, scale=scale)
