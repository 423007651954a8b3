"""Forward + backward time of one stage's blocks in isolation: the A/B benchmark behind "What was
changed for the 15:51/16:31 figures and what it did" and "What was changed for the 18:42 figures and
what it did" in docs/benchmarks.md (small, quick to compile, repeatable on a noisy machine).

    python scripts/bench/benchmark_blocks.py --stage 3            # 6 of the recipe's stage-3 blocks, scanned
    python scripts/bench/benchmark_blocks.py --stage 1 --unscanned
    python scripts/bench/benchmark_blocks.py --stage 3 --remat dots

Run variants alternately (A, B, A, B) and compare medians: the machine's speed drifts.
"""

from __future__ import annotations

from swin_flax import cli  # standard library and absl only

cli.start()

import functools  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

from absl import flags  # noqa: E402

# (dim, grid side, heads) of the recipe's stages at 32x32 with patch 4; window 8 clamps to the grid.
STAGES = {1: (96, 8, 3), 2: (192, 4, 6), 3: (384, 2, 12)}

flags.DEFINE_integer("stage", 3, "recipe stage (1, 2 or 3) whose block shape to time")
flags.register_validator("stage", lambda s: s in STAGES, "--stage must be 1, 2 or 3.")
flags.DEFINE_integer(
    "depth", 0, "blocks in the stack (default: the stage's depth, at most 6)", lower_bound=0
)
flags.DEFINE_integer("batch", 128, "images per step", lower_bound=1)
flags.DEFINE_integer("steps", 10, "timed calls (after one compiling call)", lower_bound=1)
flags.DEFINE_bool("unscanned", False, "a Python loop of blocks instead of nn.scan")
flags.DEFINE_string("remat", "none", "config.remat: what each block keeps (none, dots, full)")
FLAGS = flags.FLAGS


def main(argv):
    del argv  # parse_flags refused stray arguments
    import jax  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415
    from flax import linen as nn  # noqa: PLC0415

    from swin_flax.models import plan, swin  # noqa: PLC0415

    try:
        plan.check_remat(FLAGS.remat)
    except ValueError as e:
        cli.exit_user_error(f"--remat {e}")

    dim, side, heads = STAGES[FLAGS.stage]
    depth = FLAGS.depth or min(6, {1: 2, 2: 2, 3: 18}[FLAGS.stage])
    block = functools.partial(
        swin.block_class(FLAGS.remat, scanned=not FLAGS.unscanned),
        dim=dim,
        input_resolution=(side, side),
        num_heads=heads,
        window_size=8,
    )

    class Stack(nn.Module):
        @nn.compact
        def __call__(self, x):
            if FLAGS.unscanned:
                for j in range(depth):
                    x = jax.lax.optimization_barrier(block(name=f"blocks_{j}")(x, False, 0.1))
                return x
            scanned = nn.scan(
                lambda module, x, rate: (module(x, False, rate), None),
                variable_axes={"params": 0},
                split_rngs={"params": True, "dropout": True},
                length=depth,
            )
            return scanned(block(name="blocks"), x, jnp.full((depth,), 0.1))[0]

    model = Stack()
    x = jax.random.normal(jax.random.key(0), (FLAGS.batch, side * side, dim))
    rngs = {"params": jax.random.key(1), "dropout": jax.random.key(2)}
    params = jax.jit(model.init)(rngs, x)

    @jax.jit
    def grads(params, x):
        loss = lambda p: jnp.sum(model.apply(p, x, rngs={"dropout": jax.random.key(3)}) ** 2)  # noqa: E731
        return jax.grad(loss)(params)

    t = time.perf_counter()
    jax.block_until_ready(grads(params, x))
    first = time.perf_counter() - t
    times = []
    for _ in range(FLAGS.steps):
        t = time.perf_counter()
        jax.block_until_ready(grads(params, x))
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    dense = 3 * 2 * FLAGS.batch * side * side * 12 * dim * dim * depth  # qkv+proj+fc1+fc2, fwd+bwd
    print(
        f"stage {FLAGS.stage} (dim {dim}, {side}x{side} tokens, {heads} heads), {depth} blocks, "
        f"batch {FLAGS.batch}, {'unscanned' if FLAGS.unscanned else 'scanned'}"
        f"{'' if FLAGS.remat == 'none' else ', remat ' + FLAGS.remat}: fwd+bwd {med * 1e3:.1f} ms median "
        f"({med / depth * 1e3:.1f} ms/block, dense layers at {dense / med / 1e9:.0f} GFLOP/s); "
        f"first call {first:.1f} s"
    )


if __name__ == "__main__":
    cli.run(main)
