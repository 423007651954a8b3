"""Writes tests/fixtures/finetune_source.npz: a small Swin-T-shaped timm model as a "pretrained" source.

Run with the reference environment (needs torch and timm, which swin-flax does not depend on):

    /work/refvenv/bin/python scripts/make_finetune_fixtures.py

The source has Swin-T's geometry (img 224, patch 4, window 7, four stages, grids 56/28/14/7) at a
tiny width (embed_dim 8, mlp_ratio 2), so the file stays small. Weights are perturbed off their init
and rounded to float16 (stored as float16; the features were computed with the rounded weights in
float32), which halves the file without changing what the test sees.

The .npz holds:
  config             JSON of the source's official constructor arguments
  versions           JSON {"timm": ..., "torch": ...}
  image_codes        uint8 [2, 224, 224, 3] NHWC in 0..15; the input is (code - 7.5) / 4
  features           float32 [2, 64]: timm's pooled features (eval mode)
  state/<key>        timm's state_dict (timm layout), float16
  official_keys      JSON {timm key: official key}: the same tensors named as in the official
                     microsoft/Swin-Transformer checkpoints (PatchMerging at the end of stage i,
                     classifier `head.*`), as timm's checkpoint_filter_fn maps them
  resize/<method>/<window>/<key>  a bias table resized to `window` by
                     geometric: timm.layers.resize_rel_pos_bias_table (what timm's
                                swin checkpoint_filter_fn applies)
                     bicubic:   the official Swin's load_pretrained (F.interpolate bicubic)
  ape_source         float16 [1, 56*56, 8]: an absolute position embedding for the source grid
  ape_index, ape_value  samples of it resized to 64x64 with the official load_pretrained's
                     F.interpolate(mode='bicubic'), at flat indices of [1, 64*64, 8]
"""

from __future__ import annotations

import json
import os
import re
import sys

import numpy as np
import timm
import torch
import torch.nn.functional as F
from timm.layers import resize_rel_pos_bias_table
from timm.models.swin_transformer import SwinTransformer

OUT = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "finetune_source.npz"
)

CONFIG = dict(
    img_size=224,
    patch_size=4,
    in_chans=3,
    num_classes=5,
    embed_dim=8,
    depths=(2, 2, 2, 2),
    num_heads=(1, 1, 2, 2),
    window_size=7,
    mlp_ratio=2.0,
    qkv_bias=True,
    qk_scale=None,
    drop_rate=0.0,
    attn_drop_rate=0.0,
    drop_path_rate=0.1,
    ape=False,
    patch_norm=True,
)
RESIZE_KEYS = (
    "layers.0.blocks.0.attn.relative_position_bias_table",
    "layers.2.blocks.1.attn.relative_position_bias_table",
)
RESIZE_WINDOWS = (8, 4)


def official_key(key: str) -> str:
    """timm name -> official name (the inverse of timm's checkpoint_filter_fn renaming)."""
    key = re.sub(
        r"layers\.(\d+)\.downsample", lambda m: f"layers.{int(m.group(1)) - 1}.downsample", key
    )
    return key.replace("head.fc.", "head.")


def official_bicubic(table: torch.Tensor, window: int) -> torch.Tensor:
    """The official load_pretrained's resize of a [L1, nH] table to window `window`."""
    n, heads = table.shape
    s1, s2 = int(n**0.5), 2 * window - 1
    x = table.permute(1, 0).reshape(1, heads, s1, s1)
    x = F.interpolate(x, size=(s2, s2), mode="bicubic")
    return x.reshape(heads, s2 * s2).permute(1, 0)


def image_from_codes(codes: torch.Tensor) -> torch.Tensor:
    """uint8 codes 0..15 -> float32 pixels (code - 7.5) / 4: a 4-bit input that compresses well."""
    return (codes.float() - 7.5) / 4.0


def main() -> None:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(7)
    cfg = CONFIG
    model = SwinTransformer(
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
        drop_rate=0.0,
        attn_drop_rate=0.0,
        drop_path_rate=cfg["drop_path_rate"],
        always_partition=False,
        strict_img_size=True,
    )
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if name.endswith("relative_position_bias_table"):
                p.copy_(noise)
            elif p.ndim == 1:
                p.add_(0.1 * noise)
            else:
                p.add_(0.02 * noise)
            p.copy_(p.half().float())  # float16-exact: stored as float16 losslessly
    model.eval()
    codes = torch.randint(0, 16, (2, 224, 224, 3), generator=gen, dtype=torch.uint8)
    images = image_from_codes(codes).permute(0, 3, 1, 2)
    with torch.no_grad():
        features = model.forward_head(model.forward_features(images), pre_logits=True)
    state = model.state_dict()
    arrays = {
        "config": np.array(json.dumps(cfg)),
        "versions": np.array(json.dumps({"timm": timm.__version__, "torch": torch.__version__})),
        "image_codes": codes.numpy(),
        "features": features.numpy().astype(np.float32),
    }
    keys = {}
    for key, value in state.items():
        if key.endswith(("relative_position_index", "attn_mask")):
            continue
        arrays[f"state/{key}"] = value.numpy().astype(np.float16)
        keys[key] = official_key(key)
    arrays["official_keys"] = np.array(json.dumps(keys))
    for key in RESIZE_KEYS:
        table = state[key]
        for w in RESIZE_WINDOWS:
            shape = ((2 * w - 1) ** 2, table.shape[1])
            geo = resize_rel_pos_bias_table(table, new_window_size=(w, w), new_bias_shape=shape)
            arrays[f"resize/geometric/{w}/{key}"] = geo.numpy().astype(np.float32)
            arrays[f"resize/bicubic/{w}/{key}"] = official_bicubic(table, w).numpy()
    ape = (0.02 * torch.randn(1, 56 * 56, 8, generator=gen)).half().float()
    grid = ape.reshape(1, 56, 56, 8).permute(0, 3, 1, 2)
    resized = F.interpolate(grid, size=(64, 64), mode="bicubic").permute(0, 2, 3, 1).flatten(1, 2)
    index = torch.randperm(resized.numel(), generator=gen)[:512].sort().values
    arrays["ape_source"] = ape.numpy().astype(np.float16)
    arrays["ape_index"] = index.numpy().astype(np.int64)
    arrays["ape_value"] = resized.flatten()[index].numpy().astype(np.float32)
    np.savez_compressed(OUT, **arrays)
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"{OUT}: {os.path.getsize(OUT) / 1e6:.2f} MB, {n_params} params, "
        f"features {features[0, :3].tolist()}"
    )


if __name__ == "__main__":
    sys.exit(main())
