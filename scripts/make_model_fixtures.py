"""Writes the Swin parity fixtures tests/fixtures/swin_*.npz from timm's SwinTransformer.

Run with the reference environment (needs torch and timm, which swin-flax does not depend on):

    /work/refvenv/bin/python scripts/make_model_fixtures.py

Each .npz holds:
  config            JSON of the official constructor arguments of the model
  versions          JSON {"timm": ..., "torch": ...}
  images            float32 [4, H, W, C], NHWC (the torch model received them as NCHW)
  logits            float32 [4, num_classes], eval mode
  features          float32 [4, num_features], pooled features before the head (eval mode)
  drop_path_rates   float32 [sum(depths)], timm's per-block stochastic depth rates
  state/<key>       timm's state_dict (timm layout: PatchMerging at the start of stage i+1,
                    classifier `head.fc.*`); weights perturbed away from their init so every
                    tensor (LayerNorm scales, zero biases, bias tables) matters for the logits
  buffer/<key>      timm's non-persistent buffers: relative_position_index, attn_mask

The timm model is built with always_partition=False and strict_img_size=True, so it follows the
official window rule (window = grid and no shift where the grid is no larger than the window).
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import timm
import torch
from timm.models.swin_transformer import SwinTransformer

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")

CONFIGS = {
    # Grids 16 then 8 with window 4: both stages shift, so the cyclic roll and -100 masks run.
    "swin_shifted": dict(
        img_size=32,
        patch_size=2,
        in_chans=3,
        num_classes=10,
        embed_dim=32,
        depths=(2, 2),
        num_heads=(2, 4),
        window_size=4,
        mlp_ratio=4.0,
        qkv_bias=True,
        qk_scale=None,
        drop_rate=0.0,
        attn_drop_rate=0.0,
        drop_path_rate=0.1,
        ape=False,
        patch_norm=True,
    ),
    # Grids 8 then 4 with window 8: the window-clamp rule (window 8 then 4, never a shift).
    "swin_clamped": dict(
        img_size=32,
        patch_size=4,
        in_chans=3,
        num_classes=10,
        embed_dim=32,
        depths=(2, 2),
        num_heads=(2, 4),
        window_size=8,
        mlp_ratio=4.0,
        qkv_bias=True,
        qk_scale=None,
        drop_rate=0.0,
        attn_drop_rate=0.0,
        drop_path_rate=0.1,
        ape=False,
        patch_norm=True,
    ),
}


def build(cfg: dict) -> SwinTransformer:
    return SwinTransformer(
        img_size=cfg["img_size"],
        patch_size=cfg["patch_size"],
        in_chans=cfg["in_chans"],
        num_classes=cfg["num_classes"],
        embed_dim=cfg["embed_dim"],
        depths=cfg["depths"],
        num_heads=cfg["num_heads"],
        window_size=cfg["window_size"],
        mlp_ratio=cfg["mlp_ratio"],
        qkv_bias=cfg["qkv_bias"],
        drop_rate=cfg["drop_rate"],
        attn_drop_rate=cfg["attn_drop_rate"],
        drop_path_rate=cfg["drop_path_rate"],
        always_partition=False,  # official rule: clamp the window to the grid, no shift then
        strict_img_size=True,  # masks built once for img_size, as the official code
    )


def perturb(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Move every parameter off its init, so a mis-mapped tensor cannot go unnoticed."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if name.endswith("relative_position_bias_table"):
                p.copy_(noise)  # std 1: index errors change the logits a lot
            elif p.ndim == 1:  # LayerNorm scales and biases, Linear / conv biases
                p.add_(0.1 * noise)
            else:
                p.add_(0.01 * noise)


def main() -> None:
    os.makedirs(OUT_DIR, exist_ok=True)
    versions = json.dumps({"timm": timm.__version__, "torch": torch.__version__})
    for seed, (name, cfg) in enumerate(CONFIGS.items()):
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(1000 + seed)
        model = build(cfg)
        perturb(model, gen)
        model.eval()
        images = torch.randn(4, cfg["in_chans"], cfg["img_size"], cfg["img_size"], generator=gen)
        with torch.no_grad():
            features = model.forward_head(model.forward_features(images), pre_logits=True)
            logits = model(images)
        rates = [
            float(getattr(block.drop_path1, "drop_prob", 0.0))
            for stage in model.layers
            for block in stage.blocks
        ]
        arrays = {
            "config": np.array(json.dumps(cfg)),
            "versions": np.array(versions),
            "images": images.permute(0, 2, 3, 1).numpy().astype(np.float32),
            "logits": logits.numpy().astype(np.float32),
            "features": features.numpy().astype(np.float32),
            "drop_path_rates": np.array(rates, np.float32),
        }
        for key, value in model.state_dict().items():
            arrays[f"state/{key}"] = value.numpy()
        for key, value in model.named_buffers():
            if key.endswith(("relative_position_index", "attn_mask")):
                arrays[f"buffer/{key}"] = value.numpy()
        path = os.path.join(OUT_DIR, f"{name}.npz")
        np.savez_compressed(path, **arrays)
        print(f"{path}: {os.path.getsize(path) / 1e6:.2f} MB, logits {logits[0, :3].tolist()}")


if __name__ == "__main__":
    sys.exit(main())
