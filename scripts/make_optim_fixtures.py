"""Write tests/fixtures/optim.npz: timm learning-rate schedules and torch.optim.AdamW steps.

Reference values for tests/test_optim.py, produced by the libraries the recipe used (timm's
CosineLRScheduler driven exactly as the recipe's loop drives it, and torch.optim.AdamW). Needs
torch and timm, so it runs in the reference venv, never in the package or the tests:

    /work/refvenv/bin/python scripts/make_optim_fixtures.py [--out tests/fixtures/optim.npz]

Layout (flat npz, '.'-separated keys; `meta` is a JSON string describing every case):
  sched.<case>   float64 [num_epochs] or [num_epochs * steps_per_epoch]: the lr of each epoch/step
  adamw.<case>.p0.<name>, .g<k>.<name>, .p<k>.<name>   float32 params, grads of step k, params after
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import timm
import torch
from timm.scheduler.cosine_lr import CosineLRScheduler

BASE_LR = 1e-3

# Per-epoch cases: scheduler.step(epoch + 1) at the end of every epoch, as the recipe's loop does.
EPOCH_CASES = {
    # The strong recipe, number for number.
    "strong": dict(
        t_initial=300, lr_min=1e-4, warmup_t=20, warmup_lr_init=1e-4, warmup_prefix=True, epochs=300
    ),
    # Same with timm's default warmup_prefix=False (the cosine clock counts the warmup epochs too).
    "strong_noprefix": dict(
        t_initial=300,
        lr_min=1e-4,
        warmup_t=20,
        warmup_lr_init=1e-4,
        warmup_prefix=False,
        epochs=300,
    ),
    # Runs past the end of the cycle, into timm's lr_min tail.
    "tail": dict(
        t_initial=100, lr_min=1e-5, warmup_t=10, warmup_lr_init=0.0, warmup_prefix=True, epochs=120
    ),
    "tail_noprefix": dict(
        t_initial=100, lr_min=1e-5, warmup_t=10, warmup_lr_init=0.0, warmup_prefix=False, epochs=120
    ),
    # No warmup, decay to zero.
    "nowarmup": dict(
        t_initial=50, lr_min=0.0, warmup_t=0, warmup_lr_init=0.0, warmup_prefix=True, epochs=60
    ),
}

# Per-step cases: the same curve in update counts (t_in_epochs=False, t_initial and warmup_t
# multiplied by steps_per_epoch), driven as timm's train loop does: step_update(num_updates) after
# every update.
STEP_CASES = {
    "step_prefix": dict(
        t_initial=30,
        lr_min=1e-5,
        warmup_t=5,
        warmup_lr_init=1e-5,
        warmup_prefix=True,
        epochs=40,
        steps_per_epoch=7,
    ),
    "step_noprefix": dict(
        t_initial=30,
        lr_min=1e-5,
        warmup_t=5,
        warmup_lr_init=1e-5,
        warmup_prefix=False,
        epochs=40,
        steps_per_epoch=7,
    ),
}


def _optimizer() -> torch.optim.Optimizer:
    return torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=BASE_LR)


def epoch_lrs(case: dict) -> np.ndarray:
    """The lr the optimiser holds during each epoch of the recipe's loop."""
    opt = _optimizer()
    sched = CosineLRScheduler(
        opt,
        t_initial=case["t_initial"],
        lr_min=case["lr_min"],
        warmup_t=case["warmup_t"],
        warmup_lr_init=case["warmup_lr_init"],
        warmup_prefix=case["warmup_prefix"],
    )
    lrs = []
    for epoch in range(case["epochs"]):
        lrs.append(opt.param_groups[0]["lr"])  # the lr every step of this epoch trains with
        sched.step(epoch + 1)
    return np.asarray(lrs, np.float64)


def step_lrs(case: dict) -> np.ndarray:
    """The lr the optimiser holds at each update of a per-update (t_in_epochs=False) scheduler."""
    spe = case["steps_per_epoch"]
    opt = _optimizer()
    sched = CosineLRScheduler(
        opt,
        t_initial=case["t_initial"] * spe,
        lr_min=case["lr_min"],
        warmup_t=case["warmup_t"] * spe,
        warmup_lr_init=case["warmup_lr_init"],
        warmup_prefix=case["warmup_prefix"],
        t_in_epochs=False,
    )
    lrs, num_updates = [], 0
    for epoch in range(case["epochs"]):
        for _ in range(spe):
            lrs.append(opt.param_groups[0]["lr"])
            num_updates += 1
            sched.step_update(num_updates=num_updates)
        sched.step(epoch + 1)  # a no-op for t_in_epochs=False, as in timm's loop
    return np.asarray(lrs, np.float64)


# Parameters with Swin-like names ('.'-joined Flax paths) and shapes; the update is elementwise, so
# the torch side only needs the shapes. The no-decay group follows the official Swin's
# set_weight_decay: 1-D params, '.bias', 'relative_position_bias_table' and 'absolute_pos_embed'.
PARAM_SHAPES = {
    "absolute_pos_embed": (1, 4, 8),
    "patch_embed.proj.kernel": (2, 2, 3, 8),
    "patch_embed.proj.bias": (8,),
    "patch_embed.norm.scale": (8,),
    "patch_embed.norm.bias": (8,),
    "layers_0.blocks_0.attn.relative_position_bias_table": (9, 2),
    "layers_0.blocks_0.attn.qkv.kernel": (8, 24),
    "layers_0.blocks_0.attn.qkv.bias": (24,),
    "head.kernel": (8, 10),
    "head.bias": (10,),
}
NO_DECAY_KEYWORDS = ("relative_position_bias_table", "absolute_pos_embed")
# Grad scale per parameter: 'head.kernel' gets grads near 1e-8 so that eps (outside the square root
# in torch) matters; the others span a few orders of magnitude.
GRAD_SCALE = {
    "head.kernel": 1e-8,
    "patch_embed.norm.scale": 1e-3,
    "layers_0.blocks_0.attn.qkv.kernel": 10.0,
}

ADAMW_CASES = {
    # name: (lr per step, weight decay, exempt no-decay params)
    "wd005": ([1e-3] * 4, 0.05, False),
    "wd001": ([1e-3] * 4, 0.01, False),
    "lr_changes": ([1e-3, 5e-4, 2e-4, 3e-3], 0.05, False),
    "exempt": ([1e-3, 5e-4, 2e-4, 3e-3], 0.05, True),
}


def _no_decay(name: str, shape: tuple) -> bool:
    return len(shape) == 1 or name.endswith(".bias") or any(k in name for k in NO_DECAY_KEYWORDS)


def adamw_case(lrs: list, weight_decay: float, exempt: bool, rng: np.random.Generator) -> dict:
    """Params before and after each torch.optim.AdamW step, with the grads fed to it."""
    out = {}
    params = {}
    for name, shape in PARAM_SHAPES.items():
        p0 = rng.normal(size=shape).astype(np.float32)
        out[f"p0.{name}"] = p0
        params[name] = torch.nn.Parameter(torch.from_numpy(p0.copy()))
    if exempt:
        decay = [p for n, p in params.items() if not _no_decay(n, tuple(p.shape))]
        no_decay = [p for n, p in params.items() if _no_decay(n, tuple(p.shape))]
        groups = [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]
    else:
        groups = [{"params": list(params.values())}]
    opt = torch.optim.AdamW(
        groups, lr=lrs[0], betas=(0.9, 0.999), eps=1e-8, weight_decay=weight_decay, foreach=False
    )
    for k, lr in enumerate(lrs, start=1):
        for group in opt.param_groups:
            group["lr"] = lr
        for name, p in params.items():
            g = (rng.normal(size=p.shape) * GRAD_SCALE.get(name, 1.0)).astype(np.float32)
            out[f"g{k}.{name}"] = g
            p.grad = torch.from_numpy(g.copy())
        opt.step()
        for name, p in params.items():
            out[f"p{k}.{name}"] = p.detach().numpy().copy()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", default=str(Path(__file__).resolve().parents[1] / "tests/fixtures/optim.npz")
    )
    args = parser.parse_args()

    arrays: dict[str, np.ndarray] = {}
    for name, case in EPOCH_CASES.items():
        arrays[f"sched.{name}"] = epoch_lrs(case)
    for name, case in STEP_CASES.items():
        arrays[f"sched.{name}"] = step_lrs(case)
    rng = np.random.default_rng(0)
    for name, (lrs, wd, exempt) in ADAMW_CASES.items():
        for key, value in adamw_case(lrs, wd, exempt, rng).items():
            arrays[f"adamw.{name}.{key}"] = value

    torch_defaults = _optimizer().defaults
    meta = {
        "torch": torch.__version__,
        "timm": timm.__version__,
        "numpy": np.__version__,
        "base_lr": BASE_LR,
        "epoch_cases": EPOCH_CASES,
        "step_cases": STEP_CASES,
        "adamw_cases": {
            n: {"lrs": lrs, "weight_decay": wd, "exempt": ex, "steps": len(lrs)}
            for n, (lrs, wd, ex) in ADAMW_CASES.items()
        },
        "param_shapes": PARAM_SHAPES,
        "torch_adamw_defaults": {
            "lr": torch_defaults["lr"],
            "betas": list(torch_defaults["betas"]),
            "eps": torch_defaults["eps"],
            "weight_decay": torch_defaults["weight_decay"],
        },
    }
    arrays["meta"] = np.asarray(json.dumps(meta, sort_keys=True))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    print(f"wrote {out} ({out.stat().st_size} bytes, {len(arrays)} arrays)")


if __name__ == "__main__":
    main()
