"""Swin Transformer in flax.linen: a port of the official model (microsoft/Swin-Transformer).

The modules carry the official names and layout, so PyTorch checkpoints map one to one (see
`convert.py`): `patch_embed/{proj,norm}`, `layers_i/blocks_j/{norm1,attn/{qkv,proj,
relative_position_bias_table},norm2,mlp/{fc1,fc2}}`, `layers_i/downsample/{norm,reduction}` at the
END of stage i (official layout; timm puts it at the start of stage i+1), `norm`, `head`.

Numerics follow the official code: exact GELU, LayerNorm eps 1e-5, attention mask -100 between
shifted-window regions, relative position bias gathered with the official index, per-sample
stochastic depth with rates linear over all blocks. Tokens travel as [B, L, C] like the official
code; images come in NHWC. `drop_rate` means what it means in the official code (dropout after the
patch embedding, after the attention projection and in the MLP), not timm's (before the head).

Two performance options keep the model numerically identical: `scan_blocks` runs the blocks of each
stage deeper than two blocks with `nn.scan` (params stacked on a leading axis, see
`stack_block_params` and `scans_stage`), so compile time stays flat in depth; `remat` recomputes
each block in the backward pass to save memory.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
Dtype = Any
Initializer = Callable[..., Array]

LAYER_NORM_EPS = 1e-5  # torch.nn.LayerNorm's default (flax's is 1e-6)
MASK_VALUE = -100.0  # the official mask value between tokens of different shifted-window regions

# The official constructor arguments, with the official defaults.
OFFICIAL_DEFAULTS: dict[str, Any] = dict(
    img_size=224,
    patch_size=4,
    in_chans=3,
    num_classes=1000,
    embed_dim=96,
    depths=(2, 2, 6, 2),
    num_heads=(3, 6, 12, 24),
    window_size=7,
    mlp_ratio=4.0,
    qkv_bias=True,
    qk_scale=None,
    drop_rate=0.0,
    attn_drop_rate=0.0,
    drop_path_rate=0.1,
    ape=False,
    patch_norm=True,
)


# --------------------------------------------------------------------------------------------------
# Initialisers (PyTorch's, as the official init_weights leaves them)
# --------------------------------------------------------------------------------------------------


def torch_trunc_normal(std: float = 0.02, a: float = -2.0, b: float = 2.0) -> Initializer:
    """timm's `trunc_normal_(std=std, a=a, b=b)`: a normal truncated at ABSOLUTE bounds a, b.

    With the official std=.02 the bounds sit at +-100 std, so this is a plain normal; it is
    sampled as one (then clipped) because inverse-CDF sampling would put rare samples at the bounds.
    """

    def init(key: Array, shape: Sequence[int], dtype: Dtype = jnp.float32) -> Array:
        lower, upper = a / std, b / std
        if min(-lower, upper) > 10.0:  # truncation mass < 1e-23: identical in distribution
            z = jax.random.normal(key, shape, jnp.float32)
        else:
            z = jax.random.truncated_normal(key, lower, upper, shape, jnp.float32)
        return jnp.clip(z * std, a, b).astype(dtype)

    return init


def torch_default_uniform(fan_in: int) -> Initializer:
    """PyTorch's default Conv2d/Linear init (kaiming_uniform a=sqrt(5), and its bias rule):
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)), for weight and bias alike."""
    bound = 1.0 / math.sqrt(fan_in)

    def init(key: Array, shape: Sequence[int], dtype: Dtype = jnp.float32) -> Array:
        return jax.random.uniform(key, shape, jnp.float32, -bound, bound).astype(dtype)

    return init


def _dense(
    features: int, dtype: Dtype, param_dtype: Dtype, use_bias: bool = True, name: str | None = None
) -> nn.Dense:
    """nn.Linear as the official init leaves it: weight trunc_normal(.02), bias 0."""
    return nn.Dense(
        features,
        use_bias=use_bias,
        dtype=dtype,
        param_dtype=param_dtype,
        kernel_init=torch_trunc_normal(0.02),
        bias_init=nn.initializers.zeros,
        name=name,
    )


def _layer_norm(dtype: Dtype, param_dtype: Dtype, name: str | None = None) -> nn.LayerNorm:
    """nn.LayerNorm as in PyTorch: eps 1e-5, two-pass variance; statistics in float32."""
    return nn.LayerNorm(
        epsilon=LAYER_NORM_EPS,
        use_fast_variance=False,
        dtype=dtype,
        param_dtype=param_dtype,
        name=name,
    )


# --------------------------------------------------------------------------------------------------
# Window helpers (pure; numpy or jax arrays)
# --------------------------------------------------------------------------------------------------


def to_2tuple(value: int | Sequence[int]) -> tuple[int, int]:
    """An int or an (h, w) pair as an (h, w) tuple."""
    if isinstance(value, int | np.integer):
        return (int(value), int(value))
    h, w = value
    return (int(h), int(w))


def window_rule(grid: Sequence[int], window_size: int, shift_size: int) -> tuple[int, int]:
    """The official rule, in one place: the (window, shift) a block really uses on `grid`.

    If min(grid) <= window_size the window becomes the whole grid (min(grid)) and the shift 0;
    otherwise the requested window and shift stand.
    """
    if min(grid) <= window_size:
        return int(min(grid)), 0
    return int(window_size), int(shift_size)


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
    """The official [window^2, window^2] index into the ((2W-1)^2, heads) bias table.

    Entry (i, j) encodes the offset of token i from token j inside a window:
    (dh + W - 1) * (2W - 1) + (dw + W - 1).
    """
    coords = np.stack(np.meshgrid(np.arange(window), np.arange(window), indexing="ij"))
    flat = coords.reshape(2, -1)  # 2, N
    rel = (flat[:, :, None] - flat[:, None, :]).transpose(1, 2, 0)  # N, N, 2
    rel = rel + (window - 1)
    return (rel[..., 0] * (2 * window - 1) + rel[..., 1]).astype(np.int32)


def shifted_window_mask(grid: Sequence[int], window: int, shift: int) -> np.ndarray:
    """The official SW-MSA mask [nW, N, N]: 0 within a region, -100 across regions.

    After the cyclic roll by -shift, windows on the bottom/right edges hold tokens from up to three
    regions per axis that were not neighbours in the image; they must not attend to each other.
    """
    height, width = grid
    regions = np.zeros((1, height, width, 1), np.float32)
    bands = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    count = 0
    for hs in bands:
        for ws in bands:
            regions[:, hs, ws, :] = count
            count += 1
    windows = window_partition(regions, window).reshape(-1, window * window)
    diff = windows[:, None, :] - windows[:, :, None]
    return np.where(diff != 0, MASK_VALUE, 0.0).astype(np.float32)


def drop_path_rates(drop_path_rate: float, depths: Sequence[int]) -> tuple[tuple[float, ...], ...]:
    """Stochastic depth rates per stage: linear from 0 to drop_path_rate over all blocks."""
    rates = np.linspace(0.0, drop_path_rate, int(sum(depths)))
    bounds = np.cumsum([0, *depths])
    return tuple(tuple(float(r) for r in rates[s:e]) for s, e in zip(bounds[:-1], bounds[1:]))


def drop_path(x: Array, rate: float | Array, key: Array) -> Array:
    """timm's DropPath: zero whole samples with probability `rate`, scale the kept by 1/(1-rate)."""
    keep = 1.0 - jnp.asarray(rate, jnp.float32)
    mask = jax.random.bernoulli(key, keep, (x.shape[0],) + (1,) * (x.ndim - 1))
    scale = jnp.where(keep > 0, 1.0 / jnp.maximum(keep, 1e-12), 0.0)
    return x * (mask * scale).astype(x.dtype)


# --------------------------------------------------------------------------------------------------
# Argument checks and the per-stage plan
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StageSpec:
    """What stage i builds: official BasicLayer arguments plus the window the rule leaves it."""

    dim: int
    depth: int
    num_heads: int
    input_resolution: tuple[int, int]
    window_size: int  # after the window rule
    shift_size: int  # shift of odd blocks after the rule; 0: no block of the stage shifts
    downsample: bool  # PatchMerging at the end of the stage
    drop_path: tuple[float, ...]


def _is_int(v: Any) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


def _positive_int(name: str, v: Any) -> None:
    if not (_is_int(v) and v > 0):
        raise ValueError(f"{name} must be a positive integer, got {v!r}.")


def check_arguments(
    img_size: int | Sequence[int] = 224,
    patch_size: int = 4,
    in_chans: int = 3,
    num_classes: int = 1000,
    embed_dim: int = 96,
    depths: Sequence[int] = (2, 2, 6, 2),
    num_heads: Sequence[int] = (3, 6, 12, 24),
    window_size: int = 7,
    mlp_ratio: float = 4.0,
    qkv_bias: bool = True,
    qk_scale: float | None = None,
    drop_rate: float = 0.0,
    attn_drop_rate: float = 0.0,
    drop_path_rate: float = 0.1,
    ape: bool = False,
    patch_norm: bool = True,
) -> None:
    """Raises ValueError naming the first official SwinTransformer argument that cannot build.

    Pure Python, no jax: config validation calls it before any data is read or anything compiled.
    """
    if _is_int(img_size):
        _positive_int("img_size", img_size)
    elif (
        not (
            isinstance(img_size, Sequence)
            and len(img_size) == 2
            and all(_is_int(v) for v in img_size)
        )
        or min(img_size) <= 0
    ):
        raise ValueError(f"img_size must be a positive int or an (h, w) pair, got {img_size!r}.")
    for name, value in (("patch_size", patch_size), ("in_chans", in_chans)):
        _positive_int(name, value)
    _positive_int("embed_dim", embed_dim)
    _positive_int("window_size", window_size)
    if not (_is_int(num_classes) and num_classes >= 0):
        raise ValueError(f"num_classes must be an integer >= 0 (0: no head), got {num_classes!r}.")
    for name, seq in (("depths", depths), ("num_heads", num_heads)):
        if isinstance(seq, str | bytes) or not isinstance(seq, Sequence) or len(seq) == 0:
            raise ValueError(f"{name} must be a non-empty sequence of positive ints, got {seq!r}.")
        for v in seq:
            if not (_is_int(v) and v > 0):
                raise ValueError(f"{name} must hold positive integers, got {tuple(seq)!r}.")
    if len(depths) != len(num_heads):
        raise ValueError(
            f"depths {tuple(depths)} and num_heads {tuple(num_heads)} must have the same length "
            "(one entry per stage)."
        )
    if not (isinstance(mlp_ratio, int | float) and mlp_ratio > 0 and int(embed_dim * mlp_ratio)):
        raise ValueError(
            f"mlp_ratio must be > 0 (hidden width int(dim * ratio)), got {mlp_ratio!r}."
        )
    if qk_scale is not None and not (isinstance(qk_scale, int | float) and qk_scale > 0):
        raise ValueError(f"qk_scale must be None (head_dim ** -0.5) or > 0, got {qk_scale!r}.")
    for name, rate in (
        ("drop_rate", drop_rate),
        ("attn_drop_rate", attn_drop_rate),
        ("drop_path_rate", drop_path_rate),
    ):
        if not (isinstance(rate, int | float) and 0.0 <= rate < 1.0):
            raise ValueError(f"{name} must lie in [0, 1), got {rate!r}.")
    for name, flag in (("qkv_bias", qkv_bias), ("ape", ape), ("patch_norm", patch_norm)):
        if not isinstance(flag, bool | np.bool_):
            raise ValueError(f"{name} must be a bool, got {flag!r}.")

    img = to_2tuple(img_size)
    if img[0] % patch_size or img[1] % patch_size:
        raise ValueError(
            f"patch_size={patch_size} does not divide img_size={img_size}; choose a patch_size "
            f"that divides the image (e.g. one of {_divisors(math.gcd(*img))})."
        )
    grid = (img[0] // patch_size, img[1] // patch_size)
    for i, heads in enumerate(num_heads):
        dim = embed_dim * 2**i
        if dim % heads:
            raise ValueError(
                f"num_heads[{i}]={heads} does not divide stage-{i} width embed_dim*2^{i}={dim}: "
                f"choose num_heads[{i}] in {_divisors(dim)} or change embed_dim."
            )
        window, _ = window_rule(grid, window_size, window_size // 2)
        if grid[0] % window or grid[1] % window:
            raise ValueError(
                f"window_size={window_size} does not divide the stage-{i} token grid "
                f"{grid[0]}x{grid[1]} (img_size {img_size} / patch_size {patch_size} / 2^{i}); "
                f"choose a window_size among {_divisors(math.gcd(*grid))} or >= {min(grid)} "
                "(then the window is the whole grid, as in the official code)."
            )
        if i < len(depths) - 1:
            if grid[0] % 2 or grid[1] % 2:
                raise ValueError(
                    f"the stage-{i} token grid {grid[0]}x{grid[1]} is odd, so PatchMerging cannot "
                    f"halve it for stage {i + 1}: use fewer stages (len(depths)={len(depths)}) or "
                    "an img_size / patch_size giving a grid divisible by 2^(stages-1)."
                )
            grid = (grid[0] // 2, grid[1] // 2)


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def stage_specs(
    img_size: int | Sequence[int],
    patch_size: int,
    embed_dim: int,
    depths: Sequence[int],
    num_heads: Sequence[int],
    window_size: int,
    drop_path_rate: float,
) -> tuple[StageSpec, ...]:
    """The per-stage plan of the official SwinTransformer (resolutions, windows, shifts, rates)."""
    img = to_2tuple(img_size)
    grid0 = (img[0] // patch_size, img[1] // patch_size)
    rates = drop_path_rates(drop_path_rate, depths)
    specs = []
    for i, (depth, heads) in enumerate(zip(depths, num_heads)):
        grid = (grid0[0] // 2**i, grid0[1] // 2**i)
        window, shift = window_rule(grid, window_size, window_size // 2)
        specs.append(
            StageSpec(
                dim=embed_dim * 2**i,
                depth=int(depth),
                num_heads=int(heads),
                input_resolution=grid,
                window_size=window,
                shift_size=shift,
                downsample=i < len(depths) - 1,
                drop_path=rates[i],
            )
        )
    return tuple(specs)


# --------------------------------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------------------------------


class PatchEmbed(nn.Module):
    """Image [B, H, W, C] -> tokens [B, H/p * W/p, embed_dim]: a stride-p conv, then LayerNorm."""

    img_size: int | tuple[int, int] = 224
    patch_size: int = 4
    in_chans: int = 3
    embed_dim: int = 96
    patch_norm: bool = True
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        img = to_2tuple(self.img_size)
        if tuple(x.shape[1:]) != (*img, self.in_chans):
            raise ValueError(
                f"input of shape {tuple(x.shape)} does not match the model: expected NHWC "
                f"[batch, {img[0]}, {img[1]}, {self.in_chans}] (img_size, in_chans)."
            )
        p = self.patch_size
        fan_in = self.in_chans * p * p  # the official init leaves Conv2d at PyTorch's default
        x = nn.Conv(
            self.embed_dim,
            (p, p),
            strides=(p, p),
            padding="VALID",
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=torch_default_uniform(fan_in),
            bias_init=torch_default_uniform(fan_in),
            name="proj",
        )(x)
        x = x.reshape(x.shape[0], -1, self.embed_dim)
        if self.patch_norm:
            x = _layer_norm(self.dtype, self.param_dtype, name="norm")(x)
        return x


@jax.checkpoint
def _gelu(x: Array) -> Array:
    """Exact (erf) GELU, as torch.nn.GELU(). Rematerialised: the backward pass keeps only the input
    and recomputes the rest, instead of storing several hidden-size intermediates per block."""
    return nn.gelu(x, approximate=False)


class Mlp(nn.Module):
    """fc1 -> exact GELU -> dropout -> fc2 -> dropout (the official Mlp)."""

    hidden_features: int
    out_features: int
    drop: float = 0.0
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, deterministic: bool = True) -> Array:
        x = _dense(self.hidden_features, self.dtype, self.param_dtype, name="fc1")(x)
        x = _gelu(x)
        x = nn.Dropout(self.drop)(x, deterministic)
        x = _dense(self.out_features, self.dtype, self.param_dtype, name="fc2")(x)
        return nn.Dropout(self.drop)(x, deterministic)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows with the official relative position bias.

    Input [B * nW, N, C] with N = window^2; `mask` [nW, N, N] (0 / -100) for shifted windows.
    Logits, bias, mask and softmax are computed in float32 whatever the compute dtype.
    """

    dim: int
    window_size: int
    num_heads: int
    qkv_bias: bool = True
    qk_scale: float | None = None
    attn_drop: float = 0.0
    proj_drop: float = 0.0
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, mask: Array | None = None, deterministic: bool = True) -> Array:
        b, n, c = x.shape
        heads, w = self.num_heads, self.window_size
        head_dim = c // heads
        scale = self.qk_scale or head_dim**-0.5  # `or`, as the official code
        qkv = _dense(3 * self.dim, self.dtype, self.param_dtype, self.qkv_bias, name="qkv")(x)
        # The official permute(2, 0, 3, 1, 4): heads ahead of tokens, so both attention products
        # are plain batched matmuls over (B_, heads) (8% faster on 4-token windows on CPU).
        qkv = qkv.reshape(b, n, 3, heads, head_dim).transpose(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # [B_, heads, N, head_dim]
        q = q * jnp.asarray(scale, q.dtype)
        attn = jnp.einsum("bhnd,bhmd->bhnm", q, k).astype(jnp.float32)

        table = self.param(
            "relative_position_bias_table",
            torch_trunc_normal(0.02),
            ((2 * w - 1) ** 2, heads),
            self.param_dtype,
        )
        index = relative_position_index(w).reshape(-1)
        bias = jnp.asarray(table, jnp.float32)[index].reshape(n, n, heads).transpose(2, 0, 1)
        attn = attn + bias[None]
        if mask is not None:
            num_windows = mask.shape[0]
            attn = attn.reshape(b // num_windows, num_windows, heads, n, n)
            attn = (attn + mask[None, :, None]).reshape(b, heads, n, n)
        attn = jax.nn.softmax(attn, axis=-1).astype(self.dtype)
        attn = nn.Dropout(self.attn_drop)(attn, deterministic)

        x = jnp.einsum("bhnm,bhmd->bhnd", attn, v.astype(self.dtype))
        x = x.transpose(0, 2, 1, 3).reshape(b, n, c)
        x = _dense(self.dim, self.dtype, self.param_dtype, name="proj")(x)
        return nn.Dropout(self.proj_drop)(x, deterministic)


class SwinBlock(nn.Module):
    """One Swin Transformer block (official SwinTransformerBlock) on tokens [B, H*W, C].

    `window_size` / `shift_size` are what the stage asks for; `window_rule` turns them into what
    the block uses on its `input_resolution`. `drop_path_rate` given at call time overrides the
    `drop_path` field (nn.scan passes each block's rate that way).
    """

    dim: int
    input_resolution: tuple[int, int]
    num_heads: int
    window_size: int = 7
    shift_size: int = 0
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    qk_scale: float | None = None
    drop: float = 0.0
    attn_drop: float = 0.0
    drop_path: float = 0.0
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(
        self, x: Array, deterministic: bool = True, drop_path_rate: float | Array | None = None
    ) -> Array:
        height, width = self.input_resolution
        b, length, c = x.shape
        if length != height * width:
            raise ValueError(f"SwinBlock got {length} tokens, expected {height}x{width}.")
        window, shift = window_rule(self.input_resolution, self.window_size, self.shift_size)
        if not 0 <= shift < window:
            raise ValueError(f"shift_size={shift} must lie in [0, window={window}).")
        rate = self.drop_path if drop_path_rate is None else drop_path_rate

        shortcut = x
        x = _layer_norm(self.dtype, self.param_dtype, name="norm1")(x)
        x = x.reshape(b, height, width, c)
        if shift:
            x = jnp.roll(x, (-shift, -shift), axis=(1, 2))
        windows = window_partition(x, window).reshape(-1, window * window, c)
        mask = jnp.asarray(shifted_window_mask((height, width), window, shift)) if shift else None
        windows = WindowAttention(
            dim=self.dim,
            window_size=window,
            num_heads=self.num_heads,
            qkv_bias=self.qkv_bias,
            qk_scale=self.qk_scale,
            attn_drop=self.attn_drop,
            proj_drop=self.drop,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="attn",
        )(windows, mask, deterministic)
        x = window_reverse(windows.reshape(-1, window, window, c), window, height, width)
        if shift:
            x = jnp.roll(x, (shift, shift), axis=(1, 2))
        x = shortcut + self._drop_path(x.reshape(b, length, c), rate, deterministic)

        y = _layer_norm(self.dtype, self.param_dtype, name="norm2")(x)
        y = Mlp(
            hidden_features=int(self.dim * self.mlp_ratio),
            out_features=self.dim,
            drop=self.drop,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="mlp",
        )(y, deterministic)
        return x + self._drop_path(y, rate, deterministic)

    def _drop_path(self, x: Array, rate: float | Array, deterministic: bool) -> Array:
        if deterministic or (isinstance(rate, int | float) and rate == 0.0):
            return x
        return drop_path(x, rate, self.make_rng("dropout"))


class SwinBlockPair(nn.Module):
    """A regular-window block then a shifted-window block: the unit nn.scan repeats in a stage
    whose windows shift. Params: `regular/...`, `shifted/...`."""

    block: Callable[..., nn.Module]  # SwinBlock (or its remat) with the stage's arguments bound
    shift_size: int

    @nn.compact
    def __call__(self, x: Array, deterministic: bool, rates: Array) -> Array:
        x = self.block(shift_size=0, name="regular")(x, deterministic, rates[0])
        return self.block(shift_size=self.shift_size, name="shifted")(x, deterministic, rates[1])


SCAN_MIN_DEPTH = 3


def scans_stage(depth: int, scan_blocks: bool) -> bool:
    """Whether a stage of `depth` blocks runs them under nn.scan (params stacked under `blocks`).

    Only stages of at least SCAN_MIN_DEPTH blocks do: a scan stacks every block's residuals for the
    backward pass (zero-filled buffers, then a dynamic-update-slice per block), which for one or
    two blocks costs more than the compile time it saves (the recipe's first stage trains ~17%
    faster unscanned on a 2-core CPU, docs/benchmarks.md).
    """
    return bool(scan_blocks) and depth >= SCAN_MIN_DEPTH


def _scan_body(module: nn.Module, x: Array, deterministic: bool, rates: Array):
    return module(x, deterministic, rates), None


class SwinStage(nn.Module):
    """One stage (official BasicLayer): `depth` blocks, then PatchMerging if `downsample`.

    Block j shifts by window_size // 2 when j is odd (subject to `window_rule`). With
    `scan_blocks` the blocks run under nn.scan: `blocks` holds every block stacked when no block
    shifts, else `blocks/{regular,shifted}` stacked over depth // 2 pairs plus `blocks_tail` (the
    last, regular block) when depth is odd. Stages shallower than SCAN_MIN_DEPTH keep `blocks_j`.
    """

    dim: int
    input_resolution: tuple[int, int]
    depth: int
    num_heads: int
    window_size: int = 7
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    qk_scale: float | None = None
    drop: float = 0.0
    attn_drop: float = 0.0
    drop_path: tuple[float, ...] = ()
    downsample: bool = False
    scan_blocks: bool = False
    remat: bool = False
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, deterministic: bool = True) -> Array:
        rates = tuple(self.drop_path) or (0.0,) * self.depth
        if len(rates) != self.depth:
            raise ValueError(f"drop_path has {len(rates)} rates for depth {self.depth}.")
        scanned = scans_stage(self.depth, self.scan_blocks)
        block_cls = SwinBlock
        if self.remat:  # deterministic (argument 2, counting self) selects code paths: static
            block_cls = nn.remat(SwinBlock, static_argnums=(2,), prevent_cse=not scanned)
        block = functools.partial(
            block_cls,
            dim=self.dim,
            input_resolution=tuple(self.input_resolution),
            num_heads=self.num_heads,
            window_size=self.window_size,
            mlp_ratio=self.mlp_ratio,
            qkv_bias=self.qkv_bias,
            qk_scale=self.qk_scale,
            drop=self.drop,
            attn_drop=self.attn_drop,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )
        shift = self.window_size // 2
        _, stage_shift = window_rule(self.input_resolution, self.window_size, shift)

        if not scanned:
            for j in range(self.depth):
                x = block(
                    shift_size=0 if j % 2 == 0 else shift, drop_path=rates[j], name=f"blocks_{j}"
                )(x, deterministic)
                # Materialise the residual stream (and, in the backward pass, its gradient) between
                # blocks: without it XLA fuses the residual gradient's chain of adds across blocks
                # into each consumer and recomputes it, so step time grows faster than depth.
                x = jax.lax.optimization_barrier(x)
        else:
            scan = functools.partial(
                nn.scan,
                variable_axes={"params": 0},
                split_rngs={"params": True, "dropout": True},
                in_axes=(nn.broadcast, 0),
            )
            rates_array = jnp.asarray(rates, jnp.float32)
            if stage_shift == 0:  # every block alike: scan over blocks
                scanned = scan(_scan_body, length=self.depth)
                x, _ = scanned(block(shift_size=0, name="blocks"), x, deterministic, rates_array)
            else:  # scan over (regular, shifted) pairs
                pairs = self.depth // 2
                if pairs:
                    scanned = scan(_scan_body, length=pairs)
                    pair = SwinBlockPair(block=block, shift_size=shift, name="blocks")
                    pair_rates = rates_array[: 2 * pairs].reshape(pairs, 2)
                    x, _ = scanned(pair, x, deterministic, pair_rates)
                if self.depth % 2:
                    x = block(shift_size=0, drop_path=rates[-1], name="blocks_tail")(
                        x, deterministic
                    )

        if self.downsample:
            x = PatchMerging(
                input_resolution=tuple(self.input_resolution),
                dim=self.dim,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                name="downsample",
            )(x)
        return x


class PatchMerging(nn.Module):
    """[B, H*W, C] -> [B, H/2*W/2, 2C]: concat the 2x2 neighbours in the official order
    (x0=[0::2,0::2], x1=[1::2,0::2], x2=[0::2,1::2], x3=[1::2,1::2]), LayerNorm(4C), Linear(4C->2C)
    without bias."""

    input_resolution: tuple[int, int]
    dim: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        height, width = self.input_resolution
        b, _, c = x.shape
        x = x.reshape(b, height, width, c)
        parts = (x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2])
        x = jnp.concatenate(parts, axis=-1).reshape(b, -1, 4 * c)
        x = _layer_norm(self.dtype, self.param_dtype, name="norm")(x)
        return _dense(2 * self.dim, self.dtype, self.param_dtype, use_bias=False, name="reduction")(
            x
        )


class SwinTransformer(nn.Module):
    """The official SwinTransformer: NHWC images [B, H, W, C] -> logits [B, num_classes] (float32).

    Fields are the official constructor arguments with the official defaults, plus `dtype` (compute
    dtype; parameters stay in `param_dtype`), `scan_blocks` and `remat` (see module docstring).
    `forward_features` returns the pooled features before the head, in the compute dtype. Dropout,
    attention dropout and stochastic depth draw from the 'dropout' RNG when deterministic=False.
    """

    img_size: int | tuple[int, int] = 224
    patch_size: int = 4
    in_chans: int = 3
    num_classes: int = 1000
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    window_size: int = 7
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    qk_scale: float | None = None
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.1
    ape: bool = False
    patch_norm: bool = True
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32
    scan_blocks: bool = False
    remat: bool = False

    def __post_init__(self):
        check_arguments(**self.official_arguments())
        super().__post_init__()

    def official_arguments(self) -> dict[str, Any]:
        """The official constructor arguments of this model, by name."""
        return {name: getattr(self, name) for name in OFFICIAL_DEFAULTS}

    @property
    def num_features(self) -> int:
        """Width of the pooled features: embed_dim * 2^(stages - 1)."""
        return self.embed_dim * 2 ** (len(self.depths) - 1)

    def stage_specs(self) -> tuple[StageSpec, ...]:
        """The per-stage plan (resolution, window after the rule, shift, drop-path rates)."""
        return stage_specs(
            self.img_size,
            self.patch_size,
            self.embed_dim,
            self.depths,
            self.num_heads,
            self.window_size,
            self.drop_path_rate,
        )

    def setup(self):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        self.patch_embed = PatchEmbed(
            img_size=self.img_size,
            patch_size=self.patch_size,
            in_chans=self.in_chans,
            embed_dim=self.embed_dim,
            patch_norm=self.patch_norm,
            **kw,
        )
        if self.ape:
            img = to_2tuple(self.img_size)
            num_patches = (img[0] // self.patch_size) * (img[1] // self.patch_size)
            self.absolute_pos_embed = self.param(
                "absolute_pos_embed",
                torch_trunc_normal(0.02),
                (1, num_patches, self.embed_dim),
                self.param_dtype,
            )
        self.pos_drop = nn.Dropout(self.drop_rate)
        self.layers = [
            SwinStage(
                dim=spec.dim,
                input_resolution=spec.input_resolution,
                depth=spec.depth,
                num_heads=spec.num_heads,
                window_size=self.window_size,
                mlp_ratio=self.mlp_ratio,
                qkv_bias=self.qkv_bias,
                qk_scale=self.qk_scale,
                drop=self.drop_rate,
                attn_drop=self.attn_drop_rate,
                drop_path=spec.drop_path,
                downsample=spec.downsample,
                scan_blocks=self.scan_blocks,
                remat=self.remat,
                **kw,
            )
            for spec in self.stage_specs()
        ]
        self.norm = _layer_norm(**kw)
        if self.num_classes > 0:
            self.head = _dense(self.num_classes, **kw)

    def forward_features(self, x: Array, deterministic: bool = True) -> Array:
        """Images [B, H, W, C] -> pooled features [B, num_features] (official forward_features)."""
        x = self.patch_embed(x)
        if self.ape:
            x = x + self.absolute_pos_embed.astype(x.dtype)
        x = self.pos_drop(x, deterministic)
        for stage in self.layers:
            x = stage(x, deterministic)
        x = self.norm(x)
        return jnp.mean(x.astype(jnp.float32), axis=1).astype(x.dtype)

    def __call__(self, x: Array, deterministic: bool = True) -> Array:
        """Images [B, H, W, C] -> logits [B, num_classes] in float32 (features if no head)."""
        x = self.forward_features(x, deterministic)
        if self.num_classes > 0:
            x = self.head(x)
        return x.astype(jnp.float32)


def create_model(
    model_config: Mapping[str, Any],
    dtype: Dtype | str = jnp.float32,
    remat: bool = False,
    scan_blocks: bool = False,
    param_dtype: Dtype | str = jnp.float32,
) -> SwinTransformer:
    """SwinTransformer from a config's `model` dict (official argument names); missing names take
    the official defaults, unknown names raise ValueError."""
    args = dict(model_config.items()) if hasattr(model_config, "items") else dict(model_config)
    unknown = sorted(set(args) - set(OFFICIAL_DEFAULTS))
    if unknown:
        raise ValueError(
            f"unknown model argument(s) {unknown}; the official SwinTransformer takes "
            f"{sorted(OFFICIAL_DEFAULTS)}."
        )
    args = {**OFFICIAL_DEFAULTS, **args}
    for name in ("depths", "num_heads"):
        if isinstance(args[name], Sequence) and not isinstance(args[name], str):
            args[name] = tuple(args[name])
    if isinstance(args["img_size"], list):
        args["img_size"] = tuple(args["img_size"])
    check_arguments(**args)
    return SwinTransformer(
        **args,
        dtype=jnp.dtype(dtype),
        param_dtype=jnp.dtype(param_dtype),
        remat=bool(remat),
        scan_blocks=bool(scan_blocks),
    )


# --------------------------------------------------------------------------------------------------
# Scanned <-> unscanned parameter layouts
# --------------------------------------------------------------------------------------------------


def _stack(trees: Sequence[Any]) -> Any:
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def _unstack(tree: Any, n: int) -> list[Any]:
    return [jax.tree.map(lambda leaf, i=i: leaf[i], tree) for i in range(n)]


def _as_dict(tree: Any) -> Any:
    if isinstance(tree, Mapping):
        return {k: _as_dict(v) for k, v in tree.items()}
    return tree


def stack_block_params(params: Mapping[str, Any], model: SwinTransformer) -> dict[str, Any]:
    """Canonical params (`blocks_j`) -> the layout of `model.clone(scan_blocks=True)` (stages
    shallower than SCAN_MIN_DEPTH stay as they are)."""
    out = _as_dict(params)
    for i, spec in enumerate(model.stage_specs()):
        if not scans_stage(spec.depth, True):
            continue
        stage = out[f"layers_{i}"]
        missing = [
            f"layers_{i}/blocks_{j}" for j in range(spec.depth) if f"blocks_{j}" not in stage
        ]
        if missing:
            raise ValueError(f"params are not in the unscanned layout: no {missing[0]}.")
        blocks = [stage.pop(f"blocks_{j}") for j in range(spec.depth)]
        if spec.shift_size == 0:
            stage["blocks"] = _stack(blocks)
        else:
            pairs = spec.depth // 2
            if pairs:
                stage["blocks"] = {
                    "regular": _stack(blocks[0 : 2 * pairs : 2]),
                    "shifted": _stack(blocks[1 : 2 * pairs : 2]),
                }
            if spec.depth % 2:
                stage["blocks_tail"] = blocks[-1]
    return out


def unstack_block_params(params: Mapping[str, Any], model: SwinTransformer) -> dict[str, Any]:
    """Inverse of `stack_block_params`: scanned params -> canonical `blocks_j` layout."""
    out = _as_dict(params)
    for i, spec in enumerate(model.stage_specs()):
        if not scans_stage(spec.depth, True):
            continue
        stage = out[f"layers_{i}"]
        if "blocks" not in stage and "blocks_tail" not in stage:
            raise ValueError(f"params are not in the scanned layout: no layers_{i}/blocks.")
        if spec.shift_size == 0:
            blocks = _unstack(stage.pop("blocks"), spec.depth)
        else:
            pairs = spec.depth // 2
            blocks = []
            if pairs:
                pair = stage.pop("blocks")
                for r, s in zip(_unstack(pair["regular"], pairs), _unstack(pair["shifted"], pairs)):
                    blocks += [r, s]
            if spec.depth % 2:
                blocks.append(stage.pop("blocks_tail"))
        for j, block in enumerate(blocks):
            stage[f"blocks_{j}"] = block
    return out


# --------------------------------------------------------------------------------------------------
# Shapes and counts without compiling
# --------------------------------------------------------------------------------------------------


def param_shapes(model: SwinTransformer) -> Any:
    """The params tree of `model` as ShapeDtypeStructs (jax.eval_shape: nothing runs)."""
    img = to_2tuple(model.img_size)
    x = jax.ShapeDtypeStruct((1, *img, model.in_chans), jnp.float32)
    return jax.eval_shape(lambda x: model.init({"params": jax.random.key(0)}, x), x)["params"]


def count_params(tree: Any) -> int:
    """Number of scalars in a tree of arrays or ShapeDtypeStructs."""
    return int(sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree)))


def summary_table(model: SwinTransformer, depth: int = 2, batch_size: int = 1) -> str:
    """A torchinfo-like table: each module to `depth` levels, its output shape, its param count.

    Runs under jax.eval_shape (nothing compiles); shows the canonical (unscanned) layout.
    """
    model = model.clone(scan_blocks=False, remat=False)
    rows: list[list[Any]] = []

    def interceptor(next_fun, args, kwargs, context):
        if context.method_name != "__call__":
            return next_fun(*args, **kwargs)
        row = [tuple(context.module.path), type(context.module).__name__, None]
        seen = any(r[0] == row[0] for r in rows)
        if not seen:
            rows.append(row)
        out = next_fun(*args, **kwargs)
        if not seen:
            row[2] = tuple(out.shape)
        return out

    img = to_2tuple(model.img_size)
    x = jax.ShapeDtypeStruct((batch_size, *img, model.in_chans), jnp.float32)

    def init(x):
        with nn.intercept_methods(interceptor):
            return model.init({"params": jax.random.key(0)}, x)

    params = jax.eval_shape(init, x)["params"]
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    sizes = [(tuple(k.key for k in path), math.prod(leaf.shape)) for path, leaf in flat]

    def params_under(prefix: tuple[str, ...]) -> int:
        return sum(n for p, n in sizes if p[: len(prefix)] == prefix)

    lines = []
    for path, type_name, shape in rows:
        if len(path) > depth:
            continue
        label = type_name if not path else f"{'  ' * len(path)}{path[-1]} ({type_name})"
        lines.append((label, str(list(shape or ())), f"{params_under(path):,}"))
    total = count_params(params)
    width = max(40, *(len(a) for a, _, _ in lines)) + 2
    header = f"{'Layer (type)':<{width}}{'Output shape':<22}{'Param #':>14}"
    rule = "=" * len(header)
    body = [f"{a:<{width}}{b:<22}{c:>14}" for a, b, c in lines]
    return "\n".join(
        [
            rule,
            header,
            rule,
            *body,
            rule,
            f"Total params: {total:,}",
            f"Params size (MB, float32): {total * 4 / 1e6:.2f}",
            rule,
        ]
    )
