"""Scanned <-> unscanned parameter layouts of a SwinTransformer.

The canonical layout keeps one subtree per block (`layers_i/blocks_j`), as the official names do;
a `scan_blocks=True` model stacks the blocks of each stage that `swin.scans_stage` scans on a
leading axis: `blocks` (no block shifts) or `blocks/{regular,shifted}` over depth // 2 pairs plus
`blocks_tail` (odd depth). Conversion and checkpoints work on the canonical layout.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import traverse_util

from swin_flax.models import swin


def _copy(params: Mapping[str, Any]) -> dict[str, Any]:
    """A nested-dict copy of `params` (its leaves shared), safe to pop from."""
    return traverse_util.unflatten_dict(traverse_util.flatten_dict(dict(params)))


def _stack_trees(trees: Sequence[Any]) -> Any:
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def _unstack_tree(tree: Any, n: int) -> list[Any]:
    return [jax.tree.map(lambda leaf, i=i: leaf[i], tree) for i in range(n)]


def _scanned_stages(model: swin.SwinTransformer):
    """(i, spec) of every stage a scan_blocks=True clone of `model` scans."""
    return [(i, s) for i, s in enumerate(model.stage_specs()) if swin.scans_stage(s.depth, True)]


def stack_block_params(params: Mapping[str, Any], model: swin.SwinTransformer) -> dict[str, Any]:
    """Canonical params (`blocks_j`) -> the layout of `model.clone(scan_blocks=True)` (stages
    shallower than swin.SCAN_MIN_DEPTH stay as they are)."""
    out = _copy(params)
    for i, spec in _scanned_stages(model):
        stage = out[f"layers_{i}"]
        missing = [
            f"layers_{i}/blocks_{j}" for j in range(spec.depth) if f"blocks_{j}" not in stage
        ]
        if missing:
            raise ValueError(f"params are not in the unscanned layout: no {missing[0]}.")
        blocks = [stage.pop(f"blocks_{j}") for j in range(spec.depth)]
        pairs = spec.depth // 2
        if spec.shift_size == 0:
            stage["blocks"] = _stack_trees(blocks)
        elif pairs:
            stage["blocks"] = {
                "regular": _stack_trees(blocks[0 : 2 * pairs : 2]),
                "shifted": _stack_trees(blocks[1 : 2 * pairs : 2]),
            }
        if spec.shift_size and spec.depth % 2:
            stage["blocks_tail"] = blocks[-1]
    return out


def unstack_block_params(params: Mapping[str, Any], model: swin.SwinTransformer) -> dict[str, Any]:
    """Inverse of `stack_block_params`: scanned params -> canonical `blocks_j` layout."""
    out = _copy(params)
    for i, spec in _scanned_stages(model):
        stage = out[f"layers_{i}"]
        if "blocks" not in stage and "blocks_tail" not in stage:
            raise ValueError(f"params are not in the scanned layout: no layers_{i}/blocks.")
        pairs = spec.depth // 2
        if spec.shift_size == 0:
            blocks = _unstack_tree(stage.pop("blocks"), spec.depth)
        else:
            blocks = []
            if pairs:
                pair = stage.pop("blocks")
                regular, shifted = pair["regular"], pair["shifted"]
                for r, s in zip(_unstack_tree(regular, pairs), _unstack_tree(shifted, pairs)):
                    blocks += [r, s]
            if spec.depth % 2:
                blocks.append(stage.pop("blocks_tail"))
        stage.update({f"blocks_{j}": block for j, block in enumerate(blocks)})
    return out
