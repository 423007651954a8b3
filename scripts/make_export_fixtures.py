"""Writes tests/fixtures/export_keys.json: the state_dict keys, shapes and dtypes of the official
SwinTransformer and of timm's, at tiny configs, for the export test.

Run with the reference environment (needs torch and timm, which swin-flax does not depend on) and a
checkout of https://github.com/microsoft/Swin-Transformer (its models/swin_transformer.py is imported
from there, never copied):

    /work/refvenv/bin/python scripts/make_export_fixtures.py /path/to/Swin-Transformer

The official config has an absolute position embedding (ape) and three stages on grids 16/8/4 with
window 4: stages 0 and 1 shift (attn_mask buffers), stage 2 clamps the window to the grid (no
shift, no mask). timm's SwinTransformer has no ape, so its config turns it off.

The JSON holds, for the layouts "official" and "timm", {"config": the official constructor
arguments, "state_dict": {key: [shape, dtype]}}, and "versions" (timm, torch, and the commit of the
official checkout).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import timm
import torch
from timm.models.swin_transformer import SwinTransformer as TimmSwin

OUT = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "export_keys.json"
)

CONFIG = dict(
    img_size=32,
    patch_size=2,
    in_chans=3,
    num_classes=5,
    embed_dim=8,
    depths=(2, 2, 2),
    num_heads=(1, 1, 2),
    window_size=4,
    mlp_ratio=2.0,
    qkv_bias=True,
    qk_scale=None,
    drop_rate=0.0,
    attn_drop_rate=0.0,
    drop_path_rate=0.1,
    ape=True,
    patch_norm=True,
)


def official_model(repo: str, cfg: dict) -> torch.nn.Module:
    sys.path.insert(0, repo)
    from models.swin_transformer import SwinTransformer  # noqa: PLC0415 (the official code)

    return SwinTransformer(**cfg)


def timm_model(cfg: dict) -> torch.nn.Module:
    return TimmSwin(
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
        always_partition=False,  # the official window rule
        strict_img_size=True,
    )


def keys(model: torch.nn.Module) -> dict[str, list]:
    return {
        k: [list(v.shape), str(v.dtype).removeprefix("torch.")]
        for k, v in model.state_dict().items()
    }


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        sys.exit(f"usage: {argv[0]} PATH/TO/Swin-Transformer")
    timm_cfg = {**CONFIG, "ape": False}
    out = {
        "versions": {
            "timm": timm.__version__,
            "torch": torch.__version__,
            "official": subprocess.run(
                ["git", "-C", argv[1], "rev-parse", "HEAD"], capture_output=True, text=True
            ).stdout.strip(),
        },
        "official": {"config": CONFIG, "state_dict": keys(official_model(argv[1], CONFIG))},
        "timm": {"config": timm_cfg, "state_dict": keys(timm_model(timm_cfg))},
    }
    text = json.dumps(out, indent=1)
    text = re.sub(
        r"\[\s+([^\[\]{}]*?)\s+\]", lambda m: " ".join(m.group(1).split()).join("[]"), text
    )
    text = re.sub(r"\[\s+(\[.*?\]),\s+(\S+)\s+\]", r"[\1, \2]", text)  # one key per line
    with open(OUT, "w") as f:
        f.write(text + "\n")
    print(
        f"{OUT}: {len(out['official']['state_dict'])} official, {len(out['timm']['state_dict'])} timm keys"
    )


if __name__ == "__main__":
    main(sys.argv)
