"""Swin Transformer in flax.linen: a port of the official model (microsoft/Swin-Transformer).

The modules carry the official names, so PyTorch checkpoints map one to one (`convert.py`):
`patch_embed/{proj,norm}`, `layers_i/blocks_j/{norm1,attn/{qkv,proj,relative_position_bias_table},
norm2,mlp/{fc1,fc2}}`, `layers_i/downsample/{norm,reduction}` at the END of stage i (official
layout; timm puts it at the start of stage i+1), `norm`, `head`.

Numerics follow the official code: exact GELU, LayerNorm eps 1e-5, mask -100 between shifted-window
regions, per-sample stochastic depth with rates linear over all blocks. Tokens travel as [B, L, C];
images come in NHWC. `drop_rate` is the official one (after the patch embedding, the attention
projection and in the MLP), not timm's (before the head).

`scan_blocks` (nn.scan over the blocks of deep stages: compile time flat in depth, see
`scans_stage`) and `remat` (what each block keeps for the backward pass, `block_class`) keep the
numbers identical. Arguments are checked once, by `SwinTransformer`'s constructor."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from swin_flax.models import ops, plan

Array = jax.Array
Dtype = Any

# The official init of Linear weights (bias 0), the bias table and absolute_pos_embed; nn.LayerNorm
# as in PyTorch (eps 1e-5, flax's is 1e-6; two-pass variance; statistics in float32).
_trunc_normal = ops.torch_trunc_normal(0.02)
_linear = functools.partial(nn.Dense, kernel_init=_trunc_normal, bias_init=nn.initializers.zeros)
_layer_norm = functools.partial(nn.LayerNorm, epsilon=1e-5, use_fast_variance=False)


class PatchEmbed(nn.Module):
    """Image [B, H, W, C] -> tokens [B, H/p * W/p, embed_dim]: a stride-p conv, then LayerNorm."""

    img_size: int | tuple[int, int] = 224
    patch_size: int = 4
    in_chans: int = 3
    embed_dim: int = 96
    patch_norm: bool = True
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        img = plan.to_2tuple(self.img_size)
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
            kernel_init=ops.torch_default_uniform(fan_in),
            bias_init=ops.torch_default_uniform(fan_in),
            name="proj",
        )(x)
        x = x.reshape(x.shape[0], -1, self.embed_dim)
        if self.patch_norm:
            x = _layer_norm(dtype=self.dtype, name="norm")(x)
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

    @nn.compact
    def __call__(self, x: Array, deterministic: bool = True) -> Array:
        x = _linear(self.hidden_features, dtype=self.dtype, name="fc1")(x)
        x = _gelu(x)
        x = nn.Dropout(self.drop)(x, deterministic)
        x = _linear(self.out_features, dtype=self.dtype, name="fc2")(x)
        return nn.Dropout(self.drop)(x, deterministic)


class WindowAttention(nn.Module):
    """Window attention with the official relative position bias on [B * nW, window^2, C]; `mask`
    [nW, N, N] for shifted windows. Logits, bias, mask and softmax in float32 whatever the dtype."""

    dim: int
    window_size: int
    num_heads: int
    qkv_bias: bool = True
    qk_scale: float | None = None
    attn_drop: float = 0.0
    proj_drop: float = 0.0
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, mask: Array | None = None, deterministic: bool = True) -> Array:
        b, n, c = x.shape
        heads, w = self.num_heads, self.window_size
        head_dim = c // heads
        scale = self.qk_scale or head_dim**-0.5  # `or`, as the official code
        qkv = _linear(3 * self.dim, use_bias=self.qkv_bias, dtype=self.dtype, name="qkv")(x)
        # The official permute(2, 0, 3, 1, 4): heads ahead of tokens, so both attention products
        # are plain batched matmuls over (B_, heads) (8% faster on 4-token windows on CPU).
        qkv = qkv.reshape(b, n, 3, heads, head_dim).transpose(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # [B_, heads, N, head_dim]
        q = q * jnp.asarray(scale, q.dtype)
        attn = jnp.einsum("bhnd,bhmd->bhnm", q, k).astype(jnp.float32)

        table = self.param("relative_position_bias_table", _trunc_normal, ((2 * w - 1) ** 2, heads))
        index = ops.relative_position_index(w).reshape(-1)
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
        x = _linear(self.dim, dtype=self.dtype, name="proj")(x)
        return nn.Dropout(self.proj_drop)(x, deterministic)


class SwinBlock(nn.Module):
    """The official SwinTransformerBlock on [B, H*W, C]. A `drop_path_rate` given at call time
    (nn.scan passes each block's so) overrides `drop_path`."""

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

    @nn.compact
    def __call__(
        self, x: Array, deterministic: bool = True, drop_path_rate: float | Array | None = None
    ) -> Array:
        height, width = self.input_resolution
        b, length, c = x.shape
        window, shift = plan.window_rule(self.input_resolution, self.window_size, self.shift_size)
        rate = self.drop_path if drop_path_rate is None else drop_path_rate

        shortcut = x
        x = _layer_norm(dtype=self.dtype, name="norm1")(x)
        x = x.reshape(b, height, width, c)
        mask = None
        if shift:
            x = jnp.roll(x, (-shift, -shift), axis=(1, 2))
            mask = jnp.asarray(ops.shifted_window_mask((height, width), window, shift))
        windows = ops.window_partition(x, window).reshape(-1, window * window, c)
        windows = WindowAttention(
            dim=self.dim,
            window_size=window,
            num_heads=self.num_heads,
            qkv_bias=self.qkv_bias,
            qk_scale=self.qk_scale,
            attn_drop=self.attn_drop,
            proj_drop=self.drop,
            dtype=self.dtype,
            name="attn",
        )(windows, mask, deterministic)
        x = ops.window_reverse(windows.reshape(-1, window, window, c), window, height, width)
        if shift:
            x = jnp.roll(x, (shift, shift), axis=(1, 2))
        x = shortcut + self._drop_path(x.reshape(b, length, c), rate, deterministic)

        y = _layer_norm(dtype=self.dtype, name="norm2")(x)
        y = Mlp(
            hidden_features=int(self.dim * self.mlp_ratio),
            out_features=self.dim,
            drop=self.drop,
            dtype=self.dtype,
            name="mlp",
        )(y, deterministic)
        return x + self._drop_path(y, rate, deterministic)

    def _drop_path(self, x: Array, rate: float | Array, deterministic: bool) -> Array:
        if deterministic or (isinstance(rate, int | float) and rate == 0.0):
            return x
        return ops.drop_path(x, rate, self.make_rng("dropout"))


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

# plan.REMAT's names -> what jax.checkpoint saves of a block's forward pass.
_REMAT_POLICIES = {
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "full": jax.checkpoint_policies.nothing_saveable,
}


def block_class(remat: str, scanned: bool) -> Callable[..., nn.Module]:
    """SwinBlock, or its nn.remat for `remat` in plan.REMAT (docs/benchmarks.md). `deterministic`
    (argument 2, counting self) selects code paths: static. Under nn.scan the recomputation cannot
    merge with the forward pass (the loop body is its own computation): prevent_cse only outside."""
    if remat == "none":
        return SwinBlock
    policy = _REMAT_POLICIES[remat]
    return nn.remat(SwinBlock, static_argnums=(2,), prevent_cse=not scanned, policy=policy)


def scans_stage(depth: int, scan_blocks: bool) -> bool:
    """Whether a stage of `depth` blocks scans them: from SCAN_MIN_DEPTH on, as a scan stacks every
    block's residuals, which for one or two blocks costs more than the compile time it saves."""
    return bool(scan_blocks) and depth >= SCAN_MIN_DEPTH


class SwinStage(nn.Module):
    """The official BasicLayer: `spec.depth` blocks, odd ones shifted, then PatchMerging if
    `spec.downsample`; blocks under nn.scan if `scanned` (params as `layout.py` says)."""

    spec: plan.StageSpec
    block: Callable[..., nn.Module]  # block_class(remat, scanned) with the stage's arguments bound
    scanned: bool = False  # scans_stage
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, deterministic: bool = True) -> Array:
        spec, rates, block = self.spec, self.spec.drop_path, self.block
        if not self.scanned:
            for j, rate in enumerate(rates):
                shift = spec.shift_size if j % 2 else 0
                x = block(shift_size=shift, drop_path=rate, name=f"blocks_{j}")(x, deterministic)
                # Materialise the residual stream (and, in the backward pass, its gradient) between
                # blocks: without it XLA fuses the residual gradient's chain of adds across blocks
                # into each consumer and recomputes it, so step time grows faster than depth.
                x = jax.lax.optimization_barrier(x)
        else:
            unit_rates = jnp.asarray(rates, jnp.float32)
            if spec.shift_size == 0:  # every block alike: scan over blocks
                unit, length = block(shift_size=0, name="blocks"), spec.depth
            else:  # scan over the depth // 2 (regular, shifted) pairs, one at least (SCAN_MIN_DEPTH)
                length = spec.depth // 2
                unit = SwinBlockPair(block=block, shift_size=spec.shift_size, name="blocks")
                unit_rates = unit_rates[: 2 * length].reshape(length, 2)
            scan = nn.scan(
                lambda module, x, deterministic, rates: (module(x, deterministic, rates), None),
                variable_axes={"params": 0},
                split_rngs={"params": True, "dropout": True},
                in_axes=(nn.broadcast, 0),
                length=length,
            )
            x, _ = scan(unit, x, deterministic, unit_rates)
            if spec.shift_size and spec.depth % 2:
                x = block(shift_size=0, drop_path=rates[-1], name="blocks_tail")(x, deterministic)

        if spec.downsample:
            x = PatchMerging(spec.input_resolution, spec.dim, self.dtype, name="downsample")(x)
        return x


class PatchMerging(nn.Module):
    """[B, H*W, C] -> [B, H/2*W/2, 2C]: the 2x2 neighbours concatenated in the official order,
    LayerNorm(4C), Linear(4C->2C) without bias."""

    input_resolution: tuple[int, int]
    dim: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        height, width = self.input_resolution
        b, _, c = x.shape
        x = x.reshape(b, height, width, c)
        parts = (x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2])
        x = jnp.concatenate(parts, axis=-1).reshape(b, -1, 4 * c)
        x = _layer_norm(dtype=self.dtype, name="norm")(x)
        return _linear(2 * self.dim, use_bias=False, dtype=self.dtype, name="reduction")(x)


class SwinTransformer(nn.Module):
    """The official SwinTransformer: NHWC images [B, H, W, C] -> logits [B, num_classes] (float32).
    Fields: the official arguments and defaults, plus `dtype` (of compute; params stay float32),
    `scan_blocks` and `remat`. Dropouts and stochastic depth draw from the 'dropout' RNG when
    deterministic=False."""

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
    scan_blocks: bool = False
    remat: str = "none"  # plan.REMAT

    def __post_init__(self):
        # Fields read directly: a method called here would meet flax's method interceptors
        # (nn.tabulate, summary_table) on a module not yet bound.
        plan.check_arguments(**{name: getattr(self, name) for name in plan.OFFICIAL_DEFAULTS})
        plan.check_remat(self.remat)
        super().__post_init__()

    def official_arguments(self) -> dict[str, Any]:
        """The official constructor arguments of this model, by name."""
        return {name: getattr(self, name) for name in plan.OFFICIAL_DEFAULTS}

    def stage_specs(self) -> tuple[plan.StageSpec, ...]:
        """The per-stage plan (resolution, window after the rule, shift, drop-path rates)."""
        args = ("img_size", "patch_size", "embed_dim", "depths", "num_heads", "window_size")
        return plan.stage_specs(*(getattr(self, a) for a in args), self.drop_path_rate)

    def setup(self):
        self.patch_embed = PatchEmbed(
            img_size=self.img_size,
            patch_size=self.patch_size,
            in_chans=self.in_chans,
            embed_dim=self.embed_dim,
            patch_norm=self.patch_norm,
            dtype=self.dtype,
        )
        if self.ape:
            shape = (1, math.prod(self.stage_specs()[0].input_resolution), self.embed_dim)
            self.absolute_pos_embed = self.param("absolute_pos_embed", _trunc_normal, shape)
        self.pos_drop = nn.Dropout(self.drop_rate)
        layers = []
        for spec in self.stage_specs():
            scanned = scans_stage(spec.depth, self.scan_blocks)
            block = functools.partial(
                block_class(self.remat, scanned),
                dim=spec.dim,
                input_resolution=spec.input_resolution,
                num_heads=spec.num_heads,
                window_size=spec.window_size,
                mlp_ratio=self.mlp_ratio,
                qkv_bias=self.qkv_bias,
                qk_scale=self.qk_scale,
                drop=self.drop_rate,
                attn_drop=self.attn_drop_rate,
                dtype=self.dtype,
            )
            layers.append(SwinStage(spec, block, scanned, self.dtype))
        self.layers = layers
        self.norm = _layer_norm(dtype=self.dtype)
        if self.num_classes > 0:
            self.head = _linear(self.num_classes, dtype=self.dtype)

    def forward_features(self, x: Array, deterministic: bool = True) -> Array:
        """Images [B, H, W, C] -> pooled features [B, embed_dim * 2^(stages - 1)] (official)."""
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
    remat: str = "none",
    scan_blocks: bool = False,
) -> SwinTransformer:
    """SwinTransformer from a config's `model` dict of official arguments (defaults for those
    missing); ValueError for unknown ones and for arguments that cannot build. Lists become tuples
    (module fields must hash). A run's model, whose params fit its checkpoints (scan_blocks), is
    build.model_from_config(config)'s."""
    args = {k: tuple(v) if isinstance(v, list) else v for k, v in dict(model_config).items()}
    if unknown := sorted(set(args) - set(plan.OFFICIAL_DEFAULTS)):
        raise ValueError(
            f"unknown model argument(s) {unknown}; the official SwinTransformer takes "
            f"{sorted(plan.OFFICIAL_DEFAULTS)}."
        )
    return SwinTransformer(
        **args, dtype=jnp.dtype(dtype), remat=remat, scan_blocks=bool(scan_blocks)
    )
