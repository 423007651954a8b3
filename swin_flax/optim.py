"""torch.optim.AdamW on optax, and timm's CosineLRScheduler (stepped once per epoch, as the recipe
does) as a float64-computed table that an optax schedule reads: a sweep keeps each run's table and
weight decay in the optimiser state (`build.create_optimizer(in_state=True)`), one run plain optax's."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from swin_flax.config import SCHEDULES

# Parameter names the official Swin excludes from weight decay (its `no_weight_decay` and
# `no_weight_decay_keywords`), besides every 1-D parameter and every bias.
NO_WEIGHT_DECAY_NAMES = ("relative_position_bias_table", "absolute_pos_embed", "bias")


def epoch_learning_rate(
    t: float,
    *,
    schedule: str,
    learning_rate: float,
    warmup_epochs: int = 0,
    warmup_lr_init: float = 0.0,
    lr_min: float = 0.0,
    cosine_epochs: int = 300,
    warmup_prefix: bool = True,
) -> float:
    """timm's CosineLRScheduler(t_initial=cosine_epochs, warmup_t=warmup_epochs, ...) at epoch `t`
    (fractional too), in float64: a linear warmup, then one half cosine down to `lr_min`, counted
    from the warmup's end when `warmup_prefix`, else from epoch 0 (timm's default)."""
    if schedule == "constant":
        return float(learning_rate)
    if t < warmup_epochs:
        return warmup_lr_init + t * (learning_rate - warmup_lr_init) / warmup_epochs
    t_cos = t - warmup_epochs if warmup_prefix else t
    if t_cos >= cosine_epochs:
        return float(lr_min)
    cosine = 1.0 + math.cos(math.pi * t_cos / cosine_epochs)
    return lr_min + 0.5 * (learning_rate - lr_min) * cosine


def learning_rate_table(
    *, schedule: str, steps_per_epoch: int, **curve: Any
) -> tuple[np.ndarray, int]:
    """(float32 lrs, optimiser steps per entry), computed in float64: one entry for 'constant', one
    per epoch for 'cosine_epoch', one per step for 'cosine_step'. It ends at epoch warmup_epochs +
    cosine_epochs, where the curve stays at lr_min, whatever the run's length."""
    assert schedule in SCHEDULES and steps_per_epoch >= 1, (schedule, steps_per_epoch)
    entries, per = table_size(schedule=schedule, steps_per_epoch=steps_per_epoch, **curve)
    epochs_at = (i * per / steps_per_epoch for i in range(entries))  # each entry's epoch t
    lrs = [epoch_learning_rate(t, schedule=schedule, **curve) for t in epochs_at]
    return np.array(lrs, np.float32), per


MAX_TABLE = 2**22  # learning rates a schedule's table may hold: 16 MiB of float32, built in seconds


def table_size(
    *, schedule: str, steps_per_epoch: int, warmup_epochs: int = 0, cosine_epochs: int = 300, **_
) -> tuple[int, int]:
    """(entries, optimiser steps per entry) of `learning_rate_table`'s table."""
    if schedule == "constant":
        return 1, 1
    per = steps_per_epoch if schedule == "cosine_epoch" else 1
    return (warmup_epochs + cosine_epochs) * steps_per_epoch // per + 1, per


def table_schedule(table: Any, steps_per_entry: int, xp: Any = jnp) -> optax.Schedule:
    """The optax schedule (step -> lr) reading `table`; `xp=np`: on the host, for the reports."""

    def schedule(step: Any) -> jax.Array:
        return xp.asarray(table)[xp.minimum(xp.asarray(step) // steps_per_entry, len(table) - 1)]

    return schedule


def weight_decay_mask(params: Any) -> Any:
    """True where weight decay applies (official Swin): not on params of at most one dimension (a
    scanned `blocks` leaf's block axis not counted; call it on unreplicated params) nor on those
    whose path has a key in NO_WEIGHT_DECAY_NAMES."""

    def decays(path: tuple, leaf: Any) -> bool:
        names = {jax.tree_util.keystr((k,), simple=True) for k in path}
        stacked = "blocks" in names
        return jnp.ndim(leaf) - stacked > 1 and not names.intersection(NO_WEIGHT_DECAY_NAMES)

    return jax.tree.map_with_path(decays, params)


def _layer_id(path: tuple, leaf: Any, depths: tuple[int, ...]) -> np.ndarray:
    """Layer id of one param for layer-wise lr decay, as the official Swin fine-tuning code (SimMIM
    / Swin-v2 `get_swin_layer`) assigns them, with L = sum(depths):

      patch_embed                         0
      block j of stage i                  sum(depths[:i]) + j + 1   (1 .. L)
      stage i's PatchMerging              sum(depths[:i+1])         (its stage's last block)
      norm, head (and absolute_pos_embed) L + 1

    A scanned leaf (scan_blocks) stacking n blocks gets an int array [n, 1, ...]."""
    names = [jax.tree_util.keystr((k,), simple=True) for k in path]
    stage = re.fullmatch(r"layers_(\d+)", names[0])
    if names[0] == "patch_embed":
        return np.array(0)
    if stage is None or len(names) < 2:
        return np.array(sum(depths) + 1)  # final norm, head, absolute_pos_embed: official "else"
    i = int(stage.group(1))
    first = sum(depths[:i])  # blocks before stage i
    if block := re.fullmatch(r"blocks_(\d+)", names[1]):
        return np.array(first + int(block.group(1)) + 1)
    # layers.i.downsample (official), or a scanned stage's unpaired last block: the stage's last id
    if names[1] in ("downsample", "blocks_tail"):
        return np.array(first + depths[i])
    if names[1] == "blocks":  # nn.scan layout: the leading axis indexes blocks (or pairs)
        k = np.arange(np.shape(leaf)[0])
        if len(names) > 2 and names[2] in ("regular", "shifted"):
            k = 2 * k + (names[2] == "shifted")
        return (first + k + 1).reshape((-1,) + (1,) * (np.ndim(leaf) - 1))
    raise ValueError(f"no layer id for param {'/'.join(names)}: not a Swin param path.")


def scale_by_layer_decay(layer_decay: float, depths: Sequence[int]) -> optax.GradientTransformation:
    """Scales each update by layer_decay ** (L + 1 - layer id) (official Swin), from the updates'
    own paths and shapes (scanned, pmapped): 1 for the head, the smallest for the patch embedding."""
    depths = tuple(int(d) for d in depths)
    top = sum(depths) + 1

    def scale(path, u):
        s = np.asarray(layer_decay ** (top - _layer_id(path, u, depths)), np.float32)
        return u * s.astype(u.dtype)

    return optax.stateless(lambda updates, params=None: jax.tree.map_with_path(scale, updates))


def create_optimizer(
    *,
    learning_rate_fn: optax.ScalarOrSchedule,
    weight_decay: float,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay_exempt: bool = False,
    grad_clip_norm: float = 0.0,
    layer_decay: float = 1.0,
    depths: Sequence[int] | None = None,
) -> optax.GradientTransformation:
    """AdamW with torch's update rule: param -= lr * (m / (sqrt(v) + eps) + weight_decay * param),
    lr = learning_rate_fn(t - 1), m and v bias-corrected. `weight_decay` has no default on purpose
    (torch's is 0.01, optax's 1e-4); `weight_decay_exempt` applies `weight_decay_mask`. Optionally
    after global-norm gradient clipping (0: off) and before `scale_by_layer_decay`, which scales the
    whole step, decay term included, as torch param groups with an lr scale (1.0: off, exactly)."""
    assert layer_decay == 1.0 or depths, "layer_decay < 1 needs the model's depths"
    mask = weight_decay_mask if weight_decay_exempt else None
    adamw = optax.adamw(
        learning_rate_fn, b1=b1, b2=b2, eps=eps, eps_root=0.0, weight_decay=weight_decay, mask=mask
    )
    parts = [optax.clip_by_global_norm(grad_clip_norm)] if grad_clip_norm > 0 else []
    parts.append(adamw)
    if layer_decay != 1.0:
        parts.append(scale_by_layer_decay(layer_decay, depths))
    return parts[0] if len(parts) == 1 else optax.chain(*parts)
