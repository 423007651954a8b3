"""The official SwinTransformer's arguments: their check and the per-stage plan they give. No jax:
`config.validate` runs `check_arguments` before any data is read or anything compiled."""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

# What each block keeps for the backward pass (`swin.block_class` maps each to a jax.checkpoint
# policy): "none" everything, "dots" the outputs of its dense layers, "full" only its input.
REMAT = ("none", "dots", "full")


def check_remat(remat: Any) -> None:
    """ValueError unless `remat` is one of REMAT (the model's constructor and config.validate)."""
    if remat not in REMAT:
        raise ValueError(
            f"{remat!r} is not one of {REMAT}: 'dots' keeps each block's dense-layer outputs for "
            "the backward pass, 'full' only its input (least memory), 'none' everything."
        )


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


def to_2tuple(value: int | Sequence[int]) -> tuple[int, int]:
    """An int or an (h, w) pair as an (h, w) tuple (timm's `to_2tuple`)."""
    h, w = (value, value) if isinstance(value, int | np.integer) else value
    return int(h), int(w)


def window_rule(grid: Sequence[int], window_size: int, shift_size: int) -> tuple[int, int]:
    """The official (window, shift) of a block on `grid`: a grid no larger than the window makes the
    window the whole grid and the shift 0."""
    if min(grid) <= window_size:
        return int(min(grid)), 0
    return int(window_size), int(shift_size)


def _is_int(v: Any) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


def _is_positive_int(v: Any) -> bool:
    return _is_int(v) and v > 0


def _is_positive_ints(seq: Any) -> bool:
    return isinstance(seq, tuple | list) and len(seq) > 0 and all(map(_is_positive_int, seq))


def _is_number(v: Any) -> bool:
    """An int or a finite float (not a bool)."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return False
    return isinstance(v, int) or math.isfinite(v)


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


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
    """ValueError naming the first official argument that cannot build. The signature is the
    official constructor's, defaults included (OFFICIAL_DEFAULTS reads it). Called by
    `config.validate` and `SwinTransformer`'s constructor; everything inside trusts them."""
    given = dict(locals())  # the arguments by name, for the messages
    img = (img_size, img_size) if not isinstance(img_size, Sequence) else tuple(img_size)
    img_ok = len(img) == 2 and all(map(_is_positive_int, img))
    widths_ok = _is_positive_int(embed_dim) and _is_number(mlp_ratio) and mlp_ratio > 0
    width = embed_dim * mlp_ratio if widths_ok else 0  # the MLP's hidden width, before int()
    scale_ok = qk_scale is None or (_is_number(qk_scale) and qk_scale > 0)
    rules = {  # argument: (whether it can build, what it must be), in the signature's order
        "img_size": (img_ok, "a positive int or an (h, w) pair"),
        "patch_size": (_is_positive_int(patch_size), "a positive integer"),
        "in_chans": (_is_positive_int(in_chans), "a positive integer"),
        "num_classes": (_is_int(num_classes) and num_classes >= 0, "an integer >= 0 (0: no head)"),
        "embed_dim": (_is_positive_int(embed_dim), "a positive integer"),
        "depths": (_is_positive_ints(depths), "a non-empty sequence of positive ints"),
        "num_heads": (_is_positive_ints(num_heads), "a non-empty sequence of positive ints"),
        "window_size": (_is_positive_int(window_size), "a positive integer"),
        "mlp_ratio": (
            _is_number(width) and int(width) > 0,
            "> 0, with a finite hidden width int(dim * ratio) > 0",
        ),
        "qkv_bias": (isinstance(qkv_bias, bool | np.bool_), "a bool"),
        "qk_scale": (scale_ok, "None (head_dim ** -0.5) or a finite number > 0"),
        "drop_rate": (_is_number(drop_rate) and 0 <= drop_rate < 1, "in [0, 1)"),
        "attn_drop_rate": (_is_number(attn_drop_rate) and 0 <= attn_drop_rate < 1, "in [0, 1)"),
        "drop_path_rate": (_is_number(drop_path_rate) and 0 <= drop_path_rate < 1, "in [0, 1)"),
        "ape": (isinstance(ape, bool | np.bool_), "a bool"),
        "patch_norm": (isinstance(patch_norm, bool | np.bool_), "a bool"),
    }
    for name, (ok, what) in rules.items():
        _require(ok, f"{name} must be {what}, got {given[name]!r}.")
    _require(
        len(depths) == len(num_heads),
        f"depths {tuple(depths)} and num_heads {tuple(num_heads)} must have the same length "
        "(one entry per stage).",
    )
    _require(
        img[0] % patch_size == 0 and img[1] % patch_size == 0,
        f"patch_size={patch_size} does not divide img_size={img_size}; choose a patch_size "
        f"that divides the image (e.g. one of {_divisors(math.gcd(*img))}).",
    )
    specs = stage_specs(img, patch_size, embed_dim, depths, num_heads, window_size, 0.0)
    for i, spec in enumerate(specs):
        (height, width), dim, heads = spec.input_resolution, spec.dim, spec.num_heads
        _require(
            dim % heads == 0,
            f"num_heads[{i}]={heads} does not divide stage-{i} width embed_dim*2^{i}={dim}: "
            f"choose num_heads[{i}] in {_divisors(dim)} or change embed_dim.",
        )
        _require(
            height % spec.window_size == 0 and width % spec.window_size == 0,
            f"window_size={window_size} does not divide the stage-{i} token grid "
            f"{height}x{width} (img_size {img_size} / patch_size {patch_size} / 2^{i}); "
            f"choose a window_size among {_divisors(math.gcd(height, width))} or >= "
            f"{min(height, width)} (then the window is the whole grid, as in the official code).",
        )
        _require(
            not spec.downsample or (height % 2 == 0 and width % 2 == 0),
            f"the stage-{i} token grid {height}x{width} is odd, so PatchMerging cannot "
            f"halve it for stage {i + 1}: use fewer stages (len(depths)={len(depths)}) or "
            "an img_size / patch_size giving a grid divisible by 2^(stages-1).",
        )


# The official constructor arguments with the official defaults, read from the one signature.
OFFICIAL_DEFAULTS: dict[str, Any] = {
    name: p.default for name, p in inspect.signature(check_arguments).parameters.items()
}


def stage_specs(
    img_size: int | Sequence[int],
    patch_size: int,
    embed_dim: int,
    depths: Sequence[int],
    num_heads: Sequence[int],
    window_size: int,
    drop_path_rate: float,
) -> tuple[StageSpec, ...]:
    """The official per-stage plan; stochastic depth rates linear from 0 over all blocks."""
    img = to_2tuple(img_size)
    rates = iter(np.linspace(0.0, drop_path_rate, int(sum(depths))).tolist())  # taken per stage
    specs = []
    for i, (depth, heads) in enumerate(zip(depths, num_heads)):
        grid = (img[0] // patch_size // 2**i, img[1] // patch_size // 2**i)
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
                drop_path=tuple(itertools.islice(rates, depth)),
            )
        )
    return tuple(specs)
