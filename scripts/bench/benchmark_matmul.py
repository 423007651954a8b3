"""The matmul floor of one training step: how fast could a step be if only its matmuls took time?
(--eval: of one forward pass.)

    python scripts/bench/benchmark_matmul.py --config configs/strong.py --batch 128 --torch

--torch needs torch, which swin-flax does not depend on: install it beside swin-flax (`pip install
torch`), or run this script with the python of an environment that has both (the one with swin-flax,
torch and timm that "Commands" in docs/benchmarks.md sets up for benchmark.py --torch will do).

Lists every matrix product of one training step of the config's model (forward, and the two
products of each in the backward pass: dX = dY W^T and dW = X^T dY) with its shape and how often it
occurs, times each distinct shape alone in XLA (jit of one `a @ b`, or a batched product for the
window attention) and, with --torch, in PyTorch with the same thread count, alternating the two
sides shape by shape so that both see the same machine. It prints the sum: the time of a step made
of nothing but these products, and the images/s that bounds.

It answers one question about the targets of docs/benchmarks.md: if XLA's matmuls alone, at the
model's shapes, need longer than 1/1.5 of timm's whole step, no change to the rest of the step can
make the JAX step 1.5x faster than timm's. Patch embedding (a 4x4 stride-4 conv, i.e. a [B*L, 48] x
[48, C] product) and the head are included as products; elementwise work is not.

The products and their timers are in matmul.py next to this script (benchmark.py uses them too).
"""

from __future__ import annotations

from swin_flax import cli  # standard library and absl only

cli.start()

import json  # noqa: E402
import os  # noqa: E402
from typing import Any  # noqa: E402

from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

import matmul  # noqa: E402 (next to this script; standard library only until called)
import measure  # noqa: E402 (next to this script)

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Path to a config file, e.g. configs/strong.py.")
flags.DEFINE_integer("batch", 128, "Global training batch size.", lower_bound=1)
flags.DEFINE_integer("threads", os.cpu_count() or 1, "CPU threads for both sides.", lower_bound=1)
flags.DEFINE_integer(
    "repeats", 7, "Timed bursts of --calls calls per shape and side (median).", lower_bound=1
)
flags.DEFINE_integer("calls", 8, "Back-to-back calls per timed burst.", lower_bound=1)
flags.DEFINE_bool(
    "torch", False, "Also time the same products in PyTorch (needs torch: pip install torch)."
)
flags.DEFINE_bool("eval", False, "The forward pass's products only (the eval step's floor).")
flags.DEFINE_string("json", None, "Also write the results to this JSON file.")
flags.mark_flags_as_required(["config"])


def main(argv):
    del argv  # parse_flags refused stray arguments
    cli.check_output_file("json", FLAGS.json)
    measure.check_config(FLAGS.config)
    if FLAGS.torch:
        try:
            import torch  # noqa: PLC0415
        except ImportError as e:
            cli.exit_user_error(
                f"--torch needs torch ({e}): install it beside swin-flax (pip install torch), "
                "or run this script with the python of a venv that has swin-flax and torch "
                "(see 'Commands' in docs/benchmarks.md)."
            )
    measure.check_batches([FLAGS.batch])
    measure.limit_threads(FLAGS.threads)
    sides = {"jax": matmul.jax_timer}
    if FLAGS.torch:
        torch.set_num_threads(FLAGS.threads)
        sides["torch"] = matmul.torch_timer

    counts = matmul.step_products(FLAGS.config.model, FLAGS.batch, train=not FLAGS.eval)
    rows = matmul.time_products(counts, sides, FLAGS.repeats, FLAGS.calls)

    total_flops = sum(matmul.flops(r["shape"]) * r["count"] for r in rows)
    header = f"{'batch x [m,k] x [k,n]':>26} {'count':>5} " + " ".join(
        f"{side + ' GFLOP/s':>14}" for side in sides
    )
    print(header)
    for r in rows:
        b, m, k, n, _ = r["shape"]
        rates = " ".join(f"{r['gflop'] / r[f'{side}_s']:14.1f}" for side in sides)
        print(f"{f'{b} x [{m},{k}] x [{k},{n}]':>26} {r['count']:5d} {rates}")
    summary: dict[str, Any] = {
        "batch": FLAGS.batch,
        "gflop_per_image": total_flops / FLAGS.batch / 1e9,
    }
    what = "forward" if FLAGS.eval else "step"
    print(f"\nmatmul GFLOP per image ({what}): {summary['gflop_per_image']:.3f}")
    for side in sides:
        step = matmul.floor_seconds(rows, side)
        summary[side] = {
            "matmul_step_s": step,
            "images_per_sec_ceiling": FLAGS.batch / step,
            "gflop_per_sec": total_flops / step / 1e9,
        }
        print(
            f"{side}: the {what}'s matmuls alone take {step:.3f} s at batch {FLAGS.batch}: at most "
            f"{FLAGS.batch / step:.1f} images/s ({total_flops / step / 1e9:.0f} GFLOP/s)"
        )
    if FLAGS.json:
        with open(FLAGS.json, "w") as f:
            json.dump({"summary": summary, "rows": rows, "threads": FLAGS.threads}, f, indent=2)
        print(f"wrote {FLAGS.json}")


if __name__ == "__main__":
    cli.run(main)
