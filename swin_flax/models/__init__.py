"""Swin Transformer (flax.linen port of the official model) and PyTorch weight conversion."""

from swin_flax.models.convert import flax_to_torch, load_torch_file, torch_to_flax
from swin_flax.models.swin import (
    SwinTransformer,
    check_arguments,
    create_model,
    stack_block_params,
    unstack_block_params,
)

__all__ = [
    "SwinTransformer",
    "check_arguments",
    "create_model",
    "flax_to_torch",
    "load_torch_file",
    "stack_block_params",
    "torch_to_flax",
    "unstack_block_params",
]
