"""The pure functions under the Swin modules: PyTorch's initialisers, windows (numpy or jax), the
relative position index and shifted-window mask (numpy constants, also the official buffers) and
stochastic depth."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
Dtype = Any
Initializer = Callable[..., Array]

MASK_VALUE = -100.0  # the official mask value between tokens of different shifted-window regions


def torch_trunc_normal(std: float = 0.02) -> Initializer:
    """timm's `trunc_normal_(std=std)`: a normal truncated at the ABSOLUTE bounds -2, 2, which for
    the official std=.02 sit at +-100 std (truncation mass < 1e-23): sampled as a plain normal, then
    clipped, as inverse-CDF sampling would put rare samples at the bounds."""

    def init(key: Array, shape: Sequence[int], dtype: Dtype = jnp.float32) -> Array:
        z = jax.random.normal(key, shape, jnp.float32)
        return jnp.clip(z * std, -2.0, 2.0).astype(dtype)

    return init


def torch_default_uniform(fan_in: int) -> Initializer:
    """PyTorch's default Conv2d/Linear init, weight and bias alike: U(+-1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)

    def init(key: Array, shape: Sequence[int], dtype: Dtype = jnp.float32) -> Array:
        return jax.random.uniform(key, shape, jnp.float32, -bound, bound).astype(dtype)

    return init


def window_partition(x, window: int):
    """[B, H, W, C] -> [B * H/window * W/window, window, window, C], windows in row-major order."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // window, window, w // window, window, c)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(-1, window, window, c)


def window_reverse(windows, window: int, height: int, width: int):
    """Inverse of `window_partition`: [B * nW, window, window, C] -> [B, H, W, C]."""
    c = windows.shape[-1]
    x = windows.reshape(-1, height // window, width // window, window, window, c)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(-1, height, width, c)


def relative_position_index(window: int) -> np.ndarray:
    """The official [window^2, window^2] index into the ((2W-1)^2, heads) bias table: entry (i, j)
    encodes the offset of token i from token j, (dh + W - 1) * (2W - 1) + (dw + W - 1)."""
    rows, cols = np.divmod(np.arange(window * window), window)  # each token's (h, w), row-major
    offset = lambda a: a[:, None] - a[None, :] + (window - 1)  # [N, N]
    return (offset(rows) * (2 * window - 1) + offset(cols)).astype(np.int32)


def shifted_window_mask(grid: Sequence[int], window: int, shift: int) -> np.ndarray:
    """The official SW-MSA mask [nW, N, N]: -100 between tokens the roll by -shift put in one window
    that were not neighbours in the image (up to three regions per axis), else 0."""
    height, width = grid
    regions = np.zeros((1, height, width, 1), np.float32)
    bands = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    for count, (hs, ws) in enumerate((h, w) for h in bands for w in bands):
        regions[:, hs, ws, :] = count
    windows = window_partition(regions, window).reshape(-1, window * window)
    diff = windows[:, None, :] - windows[:, :, None]
    return np.where(diff != 0, MASK_VALUE, 0.0).astype(np.float32)


def drop_path(x: Array, rate: float | Array, key: Array) -> Array:
    """timm's DropPath: zero whole samples with probability `rate`, scale the kept by 1/(1-rate)."""
    keep = 1.0 - jnp.asarray(rate, jnp.float32)  # > 0: rates lie in [0, 1)
    mask = jax.random.bernoulli(key, keep, (x.shape[0],) + (1,) * (x.ndim - 1))
    return x * (mask / keep).astype(x.dtype)
