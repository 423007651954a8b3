"""What a model holds, under `jax.eval_shape` (nothing compiled or allocated): its params as
shapes, their count, a per-layer table."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util

from swin_flax.models.plan import to_2tuple

if TYPE_CHECKING:
    from swin_flax.models.swin import SwinTransformer


def param_shapes(model: SwinTransformer, batch_size: int = 1) -> Any:
    """The params tree of `model` (in its own layout) as ShapeDtypeStructs."""
    x = jax.ShapeDtypeStruct((batch_size, *to_2tuple(model.img_size), model.in_chans), jnp.float32)
    return jax.eval_shape(lambda x: model.init({"params": jax.random.key(0)}, x), x)["params"]


def count_params(tree: Any) -> int:
    """Number of scalars in a tree of arrays or ShapeDtypeStructs."""
    return int(sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree)))


def summary_table(model: SwinTransformer, depth: int = 2, batch_size: int = 1) -> str:
    """A torchinfo-like table: each module to `depth` levels, its output shape and its subtree's
    param count, then the total. Not `nn.tabulate`, which has a row per method call and counts a
    module's own params only."""
    model = model.clone(scan_blocks=False, remat="none")
    rows: dict[tuple[str, ...], list[Any]] = {}  # module path -> [type name, output shape]

    def record(next_fun, args, kwargs, context):
        path = tuple(context.module.path)
        if context.method_name != "__call__" or path in rows or len(path) > depth:
            return next_fun(*args, **kwargs)
        rows[path] = [type(context.module).__name__, None]
        out = next_fun(*args, **kwargs)
        rows[path][1] = tuple(out.shape)
        return out

    with nn.intercept_methods(record):
        params = param_shapes(model, batch_size)
    sizes = {p: math.prod(s.shape) for p, s in traverse_util.flatten_dict(params).items()}

    lines = []
    for path, (type_name, shape) in rows.items():
        count = sum(n for p, n in sizes.items() if p[: len(path)] == path)
        label = type_name if not path else f"{'  ' * len(path)}{path[-1]} ({type_name})"
        lines.append((label, str(list(shape or ())), f"{count:,}"))
    total = count_params(params)
    width = max(40, *(len(a) for a, _, _ in lines)) + 2
    header = f"{'Layer (type)':<{width}}{'Output shape':<22}{'Param #':>14}"
    rule = "=" * len(header)
    body = [f"{a:<{width}}{b:<22}{c:>14}" for a, b, c in lines]
    footer = [f"Total params: {total:,}", f"Params size (MB, float32): {total * 4 / 1e6:.2f}"]
    return "\n".join([rule, header, rule, *body, rule, *footer, rule])
