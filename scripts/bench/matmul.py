"""The matmul floor: every matrix product of one training step (or forward pass) of the official
Swin at a batch, and the time each distinct shape takes alone, in XLA or PyTorch, in a compute dtype
(float32 or bfloat16 operands) on the device that side runs on (JAX: the default backend; torch: CUDA
when it sees a GPU). Used by bench/benchmark_matmul.py (the command; float32) and by benchmark.py
(its matmul-floor rows, in the config's dtype).

No side effects on import: JAX and torch are imported inside the functions that need them.
"""

from __future__ import annotations

import collections
import functools
import statistics
import time
from typing import Any

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
    from swin_flax.models import plan  # noqa: PLC0415

    m = model_cfg
    specs = plan.stage_specs(
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


def jax_timer(shape: Shape, dtype: str = "float32"):
    """Times the product in `dtype` on all local devices at once, each with its share of the images
    (as the pmapped step splits them); one device: a plain jit. Each burst blocks until its last
    product is done and returns it."""
    import jax  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415

    devices = jax.local_devices()
    dims = list(shape[:4])
    dims[shape[4]] //= len(devices)  # a multiple of the batch: check_batches made it divide
    b, m, k, n = dims
    lhs = jnp.ones((b, m, k) if b > 1 else (m, k), dtype)
    rhs = jnp.ones((b, k, n) if b > 1 else (k, n), dtype)
    if len(devices) == 1:
        f = jax.jit(jnp.matmul)
    else:
        f = jax.pmap(jnp.matmul)
        place = jax.pmap(lambda x: x)  # one copy per device, laid out as pmap's outputs
        lhs, rhs = place(jnp.stack([lhs] * len(devices))), place(jnp.stack([rhs] * len(devices)))
    jax.block_until_ready(f(lhs, rhs))

    def burst(calls: int):
        for _ in range(calls):
            out = f(lhs, rhs)
        return jax.block_until_ready(out)

    return burst


def torch_device() -> str:
    """Where the PyTorch side runs: 'cuda' when torch sees a GPU, else 'cpu'."""
    import torch  # noqa: PLC0415

    return "cuda" if torch.cuda.is_available() else "cpu"


def torch_timer(shape: Shape, dtype: str = "float32", device: str | None = None):
    """Times the product in `dtype` on `device` (default: torch_device()). Each burst ends with
    torch.cuda.synchronize() on a GPU (kernels run asynchronously there) and returns its last
    product."""
    import torch  # noqa: PLC0415

    device = device or torch_device()
    b, m, k, n, _ = shape
    lhs = torch.ones((b, m, k) if b > 1 else (m, k), dtype=getattr(torch, dtype), device=device)
    rhs = torch.ones((b, k, n) if b > 1 else (k, n), dtype=getattr(torch, dtype), device=device)
    on_gpu = torch.device(device).type == "cuda"

    def burst(calls: int):
        for _ in range(calls):
            out = torch.matmul(lhs, rhs)
        if on_gpu:
            torch.cuda.synchronize(device)
        return out

    burst(1)  # warm-up: cuBLAS picks its kernel, CPU threads wake
    return burst


def timer(side: str, dtype: str = "float32"):
    """The timer factory of `side` ('jax' or 'torch') for products in `dtype` (a step's compute
    dtype: 'float32' or 'bfloat16'), for time_products."""
    return functools.partial(jax_timer if side == "jax" else torch_timer, dtype=dtype)


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
