"""Swin Transformer (flax.linen port of the official model) and PyTorch weight conversion.

  plan.py     the official arguments: checks, defaults, the per-stage plan (window rule); no jax
  ops.py      initialisers, window partition/reverse, relative position index, mask, drop path
  swin.py     the linen modules (official names), create_model
  layout.py   scanned <-> unscanned parameter layouts
  summary.py  param shapes, counts and the per-layer table, without compiling
  convert.py  PyTorch state_dicts <-> Flax params (official and timm layouts), checkpoint files

The names below are imported on first use, so `from swin_flax.models import plan` stays free of
jax (config validation runs before jax is imported).
"""

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
