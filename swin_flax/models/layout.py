"""Scanned <-> canonical parameter layouts. The canonical one (checkpoints, conversion) has one
subtree per block, `layers_i/blocks_j`. A stage that `swin.scans_stage` scans stacks its blocks on a
leading axis: under `blocks` when no block shifts, else under `blocks/{regular,shifted}` over the
depth // 2 pairs, plus `blocks_tail` (the last, regular block) when depth is odd."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
from flax import traverse_util

from swin_flax.models import plan, swin


def _slots(spec: plan.StageSpec) -> list[tuple[tuple[str, ...], int | None]]:
    """Each block's (keys under `layers_i`, index on the stacked axis or None) in a scanned stage."""
    if spec.shift_size == 0:
        return [(("blocks",), j) for j in range(spec.depth)]
    pairs = [
        (("blocks", ("regular", "shifted")[j % 2]), j // 2) for j in range(spec.depth // 2 * 2)
    ]
    return pairs + [(("blocks_tail",), None)] * (spec.depth % 2)


def _scanned_stages(model: swin.SwinTransformer) -> list[tuple[str, plan.StageSpec]]:
    """('layers_i', spec) of every stage a scan_blocks=True clone of `model` scans."""
    specs = enumerate(model.stage_specs())
    return [(f"layers_{i}", s) for i, s in specs if swin.scans_stage(s.depth, True)]


def stack_block_params(params: Mapping[str, Any], model: swin.SwinTransformer) -> dict[str, Any]:
    """Canonical params (`blocks_j`) -> the layout of `model.clone(scan_blocks=True)`."""
    flat = traverse_util.flatten_dict(dict(params))
    for stage, spec in _scanned_stages(model):
        stacks: dict[tuple[str, ...], list[Any]] = {}
        for j, (keys, index) in enumerate(_slots(spec)):
            for path in [p for p in flat if p[:2] == (stage, f"blocks_{j}")]:
                new_path = (stage, *keys, *path[2:])
                if index is None:
                    flat[new_path] = flat.pop(path)
                else:
                    stacks.setdefault(new_path, []).append(flat.pop(path))
        flat.update({path: jnp.stack(leaves) for path, leaves in stacks.items()})
    return traverse_util.unflatten_dict(flat)


def unstack_block_params(params: Mapping[str, Any], model: swin.SwinTransformer) -> dict[str, Any]:
    """Inverse of `stack_block_params`: scanned params -> canonical `blocks_j` layout."""
    flat = traverse_util.flatten_dict(dict(params))
    for stage, spec in _scanned_stages(model):
        scanned = [p for p in flat if p[0] == stage and p[1] in ("blocks", "blocks_tail")]
        for j, (keys, index) in enumerate(_slots(spec)):
            prefix = (stage, *keys)
            for path in [p for p in scanned if p[: len(prefix)] == prefix]:
                leaf = flat[path] if index is None else flat[path][index]
                flat[(stage, f"blocks_{j}", *path[len(prefix) :])] = leaf
        for path in scanned:
            del flat[path]
    return traverse_util.unflatten_dict(flat)
