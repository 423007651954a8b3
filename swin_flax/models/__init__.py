"""The Swin Transformer (flax.linen port of the official model) and PyTorch weight conversion:
plan.py (arguments, stage plan; no jax), ops.py, swin.py (modules), layout.py (scanned params),
summary.py (shapes, counts, table), convert.py (PyTorch state_dicts). The names below load on first
use, so importing plan.py stays free of jax."""

import importlib

_HOMES = {
    "SwinTransformer": "swin",
    "create_model": "swin",
    "check_arguments": "plan",
    "stack_block_params": "layout",
    "unstack_block_params": "layout",
    "flax_to_torch": "convert",
    "load_torch_file": "convert",
    "torch_to_flax": "convert",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
