"""The official SwinTransformer's arguments: their checks and the per-stage plan they give.

Pure Python and numpy, no jax: `config.validate` checks a config's model with `check_arguments`
before any data is read or anything compiled. `window_rule` is the one place of the official rule
that shrinks a window to a grid no larger than it.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


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


def drop_path_rates(drop_path_rate: float, depths: Sequence[int]) -> tuple[tuple[float, ...], ...]:
    """Stochastic depth rates per stage: linear from 0 to drop_path_rate over all blocks."""
    rates = np.linspace(0.0, drop_path_rate, int(sum(depths)))
    bounds = np.cumsum([0, *depths])
    return tuple(tuple(float(r) for r in rates[s:e]) for s, e in zip(bounds[:-1], bounds[1:]))


def _is_int(v: Any) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


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

    The signature is the official constructor's, defaults included (OFFICIAL_DEFAULTS reads it).

    Called at the two boundaries only (`config.validate` and `SwinTransformer`'s constructor);
    everything inside trusts its arguments.
    """
    pair = isinstance(img_size, Sequence) and len(img_size) == 2 and all(map(_is_int, img_size))
    if not ((_is_int(img_size) or pair) and min(to_2tuple(img_size)) > 0):
        raise ValueError(f"img_size must be a positive int or an (h, w) pair, got {img_size!r}.")
    for name, value in (
        ("patch_size", patch_size),
        ("in_chans", in_chans),
        ("embed_dim", embed_dim),
        ("window_size", window_size),
    ):
        if not (_is_int(value) and value > 0):
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    if not (_is_int(num_classes) and num_classes >= 0):
        raise ValueError(f"num_classes must be an integer >= 0 (0: no head), got {num_classes!r}.")
    for name, seq in (("depths", depths), ("num_heads", num_heads)):
        if isinstance(seq, str | bytes) or not isinstance(seq, Sequence) or len(seq) == 0:
            raise ValueError(f"{name} must be a non-empty sequence of positive ints, got {seq!r}.")
        if not all(_is_int(v) and v > 0 for v in seq):
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
    specs = stage_specs(
        img_size, patch_size, embed_dim, depths, num_heads, window_size, drop_path_rate
    )
    for i, spec in enumerate(specs):
        (height, width), dim, heads = spec.input_resolution, spec.dim, spec.num_heads
        if dim % heads:
            raise ValueError(
                f"num_heads[{i}]={heads} does not divide stage-{i} width embed_dim*2^{i}={dim}: "
                f"choose num_heads[{i}] in {_divisors(dim)} or change embed_dim."
            )
        if height % spec.window_size or width % spec.window_size:
            raise ValueError(
                f"window_size={window_size} does not divide the stage-{i} token grid "
                f"{height}x{width} (img_size {img_size} / patch_size {patch_size} / 2^{i}); "
                f"choose a window_size among {_divisors(math.gcd(height, width))} or >= "
                f"{min(height, width)} (then the window is the whole grid, as in the official code)."
            )
        if spec.downsample and (height % 2 or width % 2):
            raise ValueError(
                f"the stage-{i} token grid {height}x{width} is odd, so PatchMerging cannot "
                f"halve it for stage {i + 1}: use fewer stages (len(depths)={len(depths)}) or "
                "an img_size / patch_size giving a grid divisible by 2^(stages-1)."
            )


# The official constructor arguments with the official defaults, read from the one signature.
OFFICIAL_DEFAULTS: dict[str, Any] = {
    name: p.default for name, p in inspect.signature(check_arguments).parameters.items()
}


def official_arguments(model_config: Mapping[str, Any]) -> dict[str, Any]:
    """A config's `model` dict as every official argument: missing names take the official
    defaults, lists become tuples (module fields must hash); unknown names raise ValueError."""
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
    return args


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
