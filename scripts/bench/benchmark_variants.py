r"""The recipe's train step under config variants, alternated in one process: the A/B benchmark
behind "What was changed on 2026-11-30 and what it did (paired A/B)" and "Later on 2026-11-30" in
docs/benchmarks.md (compile time, XLA's temporary memory of the step, step time).

    GLIBC_TUNABLES=glibc.malloc.hugetlb=1 python scripts/bench/benchmark_variants.py \
        --config configs/strong.py --variant remat=none --variant remat=dots \
        [--batch 128] [--rounds 6] [--memory_batch 1024]

Each variant is a comma-separated list of config overrides (`field=value`, e.g.
`remat=none,scan_blocks=False`). The steps run in variant order, then in reverse, round after round,
so every variant sees the machine's drift alike; medians and their ratio to the first variant are
printed as a markdown table, beside the smallest and largest ratio of single rounds (each round's
step against the first variant's of that round): a ratio whose range straddles 1 is within the
noise. `--memory_batch` also compiles (never runs) each step at that batch for
its temporary memory: what a batch too large to hold once per variant would need.
"""

from __future__ import annotations

from swin_flax import cli  # standard library and absl only

cli.start()

import statistics  # noqa: E402
import time  # noqa: E402

from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

import measure  # noqa: E402 (next to this script; standard library only until called)

config_flags.DEFINE_config_file("config", None, "Path to a config file, e.g. configs/strong.py.")
flags.DEFINE_multi_string("variant", None, "config overrides field=value[,field=value] (repeat)")
flags.DEFINE_integer("batch", 128, "global batch of the timed steps", lower_bound=1)
flags.DEFINE_integer(
    "rounds", 6, "timed steps per variant (after one compiling step)", lower_bound=1
)
flags.DEFINE_integer(
    "memory_batch", 0, "also compile at this batch for memory (0: no)", lower_bound=0
)
flags.mark_flags_as_required(["config", "variant"])
FLAGS = flags.FLAGS


def main(argv):
    del argv  # parse_flags refused stray arguments
    configs = [measure.with_overrides(FLAGS.config, v) for v in FLAGS.variant]
    for c in configs:
        measure.check_config(c)

    import jax  # noqa: PLC0415

    measure.check_batches([FLAGS.batch] + ([FLAGS.memory_batch] if FLAGS.memory_batch else []))
    rows = []  # one per variant: its compiled step, state and inputs, and what was measured
    for name, cfg in zip(FLAGS.variant, configs, strict=True):
        v = {"variant": name, "times": []}
        if FLAGS.memory_batch:
            _, state, step, _, batch, keys = measure.build_jax(cfg, FLAGS.memory_batch, True)
            compiled = step.lower(state, batch, keys).compile()
            v["memory_temp"] = compiled.memory_analysis().temp_size_in_bytes / 2**30
        _, v["state"], step, _, v["batch"], v["keys"] = measure.build_jax(cfg, FLAGS.batch)
        t = time.perf_counter()
        v["step"] = step.lower(v["state"], v["batch"], v["keys"]).compile()
        v["compile"] = time.perf_counter() - t
        v["temp"] = v["step"].memory_analysis().temp_size_in_bytes / 2**30
        v["state"], _ = v["step"](v["state"], v["batch"], v["keys"])
        jax.block_until_ready(v["state"])
        rows.append(v)
        print(f"compiled {name}: {v['compile']:.1f} s", flush=True)

    for r in range(FLAGS.rounds):
        for v in rows if r % 2 == 0 else rows[::-1]:
            t = time.perf_counter()
            v["state"], _ = v["step"](v["state"], v["batch"], v["keys"])
            jax.block_until_ready(v["state"])
            v["times"].append(time.perf_counter() - t)

    first = statistics.median(rows[0]["times"])
    mem = f" | temp GiB, batch {FLAGS.memory_batch}" if FLAGS.memory_batch else ""
    head = f"| variant | step s, batch {FLAGS.batch} (median) | ratio | ratio per round (min-max)"
    print(f"\n{head} | compile s | temp GiB, batch {FLAGS.batch}{mem} |")
    print("|---|---:|---:|---:|---:|---:|" + ("---:|" if FLAGS.memory_batch else ""))
    for v in rows:
        med = statistics.median(v["times"])
        lo, hi = measure.ratio_range(rows[0]["times"], v["times"])
        extra = f" | {v['memory_temp']:.2f}" if FLAGS.memory_batch else ""
        print(
            f"| {v['variant']} | {med:.4g} | {med / first:.3f} | {lo:.3f}-{hi:.3f} | "
            f"{v['compile']:.1f} | {v['temp']:.2f}{extra} |"
        )
    for v in rows:
        print(f"{v['variant']}: " + " ".join(f"{t:.4g}" for t in v["times"]))  # s, each round


if __name__ == "__main__":
    cli.run(main)
