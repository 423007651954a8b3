"""The matmul floor of one training step: how fast could a step be if only its matmuls took time?
(--eval: of one forward pass.)

    ../refvenv/bin/python scripts/benchmark_matmul.py --config configs/strong.py --batch 128 --torch

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
"""

from __future__ import annotations

from swin_flax import cli  # standard library and absl only

cli.start()

import collections  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defined only when run as a script, so tests can import this next to benchmark.py."""
    config_flags.DEFINE_config_file(
        "config", None, "Path to a config file, e.g. configs/strong.py."
    )
    flags.DEFINE_integer("batch", 128, "Global training batch size.", lower_bound=1)
    flags.DEFINE_integer(
        "threads", os.cpu_count() or 1, "CPU threads for both sides.", lower_bound=1
    )
    flags.DEFINE_integer(
        "repeats", 7, "Timed bursts of --calls calls per shape and side (median).", lower_bound=1
    )
    flags.DEFINE_integer("calls", 8, "Back-to-back calls per timed burst.", lower_bound=1)
    flags.DEFINE_bool("torch", False, "Also time the same products in PyTorch (needs torch).")
    flags.DEFINE_bool("eval", False, "The forward pass's products only (the eval step's floor).")
    flags.DEFINE_string("json", None, "Also write the results to this JSON file.")
    flags.mark_flags_as_required(["config"])


def check_config(config) -> None:
    """Exit 2 with one paragraph unless `config` passes swin_flax.config.validate (as scripts/main.py
    runs it, any device count), all but the RandAugment string: parsing that imports TensorFlow,
    which the benchmarks never use (random tensors stand in for images) and the GPU machine lacks.
    A config file that failed to load raises OSError at its first access, here."""
    from swin_flax.config import validate  # noqa: PLC0415

    with cli.friendly_errors():
        config = config.copy_and_resolve_references()
        with config.unlocked():
            config.randaugment = ""
        validate(config)


def check_json(path: str | None) -> None:
    """Exit 2 unless --json is unset or a file path in a folder that exists: checked before the
    measurements, not after them."""
    if path and (os.path.isdir(path) or not os.path.isdir(os.path.dirname(os.path.abspath(path)))):
        cli.exit_user_error(
            f"--json {path} is not a file path in a folder that exists: create the folder, or "
            "give another path."
        )


def check_batches(batches: list[int]) -> None:
    """Exit 2 unless every batch splits evenly over the local devices (each gets its share)."""
    import jax  # noqa: PLC0415

    n_dev = jax.local_device_count()
    if any(b % n_dev for b in batches):
        cli.exit_user_error(
            f"batch sizes {batches} must be multiples of the {n_dev} local devices JAX sees "
            f"(each device takes an equal share); choose multiples of {n_dev}."
        )


# (batch, m, k, n, split): `batch` independent [m, k] x [k, n] products (batch 1: a plain matmul);
# `split` is the index (0: batch, 1: m, 2: k) of the dimension that grows with the images, the one
# that data parallelism over several devices divides.
Shape = tuple[int, int, int, int, int]


def dense_products(m: int, k: int, n: int, train: bool = True) -> list[Shape]:
    """A dense layer [m, k] x [k, n] (m grows with the images): forward and, in training,
    dX = dY W^T and dW = X^T dY (where m is the reduction)."""
    return [(1, m, k, n, 1)] + ([(1, m, n, k, 1), (1, k, m, n, 2)] if train else [])


def batched_products(b: int, m: int, k: int, n: int, train: bool = True) -> list[Shape]:
    """A batched product [b, m, k] x [b, k, n] (b grows with the images): forward and, in
    training, its two gradient products."""
    return [(b, m, k, n, 0)] + ([(b, m, n, k, 0), (b, k, m, n, 0)] if train else [])


def step_products(model_cfg, batch: int, train: bool = True) -> collections.Counter[Shape]:
    """Every matrix product of one training step (or, train=False, one forward pass) of the
    official Swin at `batch` images."""
    from swin_flax.models import swin  # noqa: PLC0415

    m = model_cfg
    specs = swin.stage_specs(
        m.img_size, m.patch_size, m.embed_dim, m.depths, m.num_heads, m.window_size, 0.0
    )
    counts: collections.Counter[Shape] = collections.Counter()
    grid = specs[0].input_resolution
    tokens0 = batch * grid[0] * grid[1]
    # The patch embedding's conv is a [B*L, p*p*3] x [p*p*3, C] product; its input needs no grad.
    patch = m.patch_size**2 * m.in_chans
    counts.update(
        [(1, tokens0, patch, m.embed_dim, 1)] + [(1, patch, tokens0, m.embed_dim, 2)] * train
    )
    for s in specs:
        rows = batch * s.input_resolution[0] * s.input_resolution[1]
        n = s.window_size**2
        windows = rows // n
        head_dim = s.dim // s.num_heads
        hidden = int(s.dim * m.mlp_ratio)
        block: list[Shape] = []
        block += dense_products(rows, s.dim, 3 * s.dim, train)  # qkv
        block += batched_products(windows * s.num_heads, n, head_dim, n, train)  # q k^T
        block += batched_products(windows * s.num_heads, n, n, head_dim, train)  # attn v
        block += dense_products(rows, s.dim, s.dim, train)  # proj
        block += dense_products(rows, s.dim, hidden, train)  # fc1
        block += dense_products(rows, hidden, s.dim, train)  # fc2
        counts.update(block * s.depth)
        if s.downsample:  # PatchMerging: [B*L/4, 4C] x [4C, 2C]
            counts.update(dense_products(rows // 4, 4 * s.dim, 2 * s.dim, train))
    last = specs[-1].dim
    if m.num_classes:
        counts.update(dense_products(batch, last, m.num_classes, train))
    return counts


def flops(shape: Shape) -> float:
    b, m, k, n, _ = shape
    return 2.0 * b * m * k * n


def jax_timer(shape: Shape):
    """Times the product on all local devices at once, each with its share of the images (as the
    pmapped step splits them); one device: a plain jit."""
    import jax  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415

    devices = jax.local_devices()
    dims = list(shape[:4])
    dims[shape[4]] //= len(devices)  # a multiple of the batch: check_batches made it divide
    b, m, k, n = dims
    lhs = jnp.ones((b, m, k) if b > 1 else (m, k), jnp.float32)
    rhs = jnp.ones((b, k, n) if b > 1 else (k, n), jnp.float32)
    if len(devices) == 1:
        f = jax.jit(jnp.matmul)
    else:
        f = jax.pmap(jnp.matmul)
        place = jax.pmap(lambda x: x)  # one copy per device, laid out as pmap's outputs
        lhs, rhs = place(jnp.stack([lhs] * len(devices))), place(jnp.stack([rhs] * len(devices)))
    jax.block_until_ready(f(lhs, rhs))

    def burst(calls: int) -> None:
        for _ in range(calls):
            out = f(lhs, rhs)
        jax.block_until_ready(out)

    return burst


def torch_timer(shape: Shape):
    import torch  # noqa: PLC0415

    b, m, k, n, _ = shape
    lhs = torch.ones((b, m, k) if b > 1 else (m, k))
    rhs = torch.ones((b, k, n) if b > 1 else (k, n))
    torch.matmul(lhs, rhs)

    def burst(calls: int) -> None:
        for _ in range(calls):
            torch.matmul(lhs, rhs)

    return burst


def time_per_call(burst, calls: int) -> float:
    """Seconds per call of `calls` back-to-back calls: products follow one another as in a step,
    without the thread pool falling asleep in between."""
    t = time.perf_counter()
    burst(calls)
    return (time.perf_counter() - t) / calls


def time_products(
    counts: collections.Counter[Shape], sides: dict[str, Any], repeats: int, calls: int
) -> list[dict[str, Any]]:
    """Per distinct product (largest total first): its count, GFLOP and, for each side (a name and
    its timer factory), the median seconds per call over `repeats` bursts of `calls` calls. The
    sides alternate burst by burst, so they see the same machine."""
    rows = []
    for shape, count in sorted(counts.items(), key=lambda kv: -flops(kv[0]) * kv[1]):
        timers = {side: make(shape) for side, make in sides.items()}
        samples: dict[str, list[float]] = {side: [] for side in sides}
        for _ in range(repeats):
            for side, burst in timers.items():
                samples[side].append(time_per_call(burst, calls))
        row = {"shape": shape, "count": count, "gflop": flops(shape) / 1e9}
        for side, ts in samples.items():
            row[f"{side}_s"] = statistics.median(ts)
        rows.append(row)
    return rows


def floor_seconds(rows: list[dict[str, Any]], side: str) -> float:
    """The time of a step made of nothing but the timed products, on `side`."""
    return sum(r[f"{side}_s"] * r["count"] for r in rows)


def main(argv):
    del argv  # parse_flags refused stray arguments
    check_json(FLAGS.json)
    check_config(FLAGS.config)
    if FLAGS.torch:
        try:
            import torch  # noqa: PLC0415
        except ImportError as e:
            cli.exit_user_error(f"--torch needs torch ({e}); use the reference venv.")
    check_batches([FLAGS.batch])
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if cpus and FLAGS.threads < len(cpus):
        os.sched_setaffinity(0, cpus[: FLAGS.threads])
    sides = {"jax": jax_timer}
    if FLAGS.torch:
        torch.set_num_threads(FLAGS.threads)
        sides["torch"] = torch_timer

    counts = step_products(FLAGS.config.model, FLAGS.batch, train=not FLAGS.eval)
    rows = time_products(counts, sides, FLAGS.repeats, FLAGS.calls)

    total_flops = sum(flops(r["shape"]) * r["count"] for r in rows)
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
        step = floor_seconds(rows, side)
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
    define_flags()
    cli.run(main)
