"""What benchmark.py, bench/benchmark_matmul.py and bench/benchmark_variants.py share: the checks of
their arguments (before anything is measured), timing and memory of a step and its spread, what a
result must name to be compared (commit, time, load), the CPU and malloc settings of a measuring
process, and the JAX step exactly as train.py builds it with XLA's FLOP count of it.

No side effects on import: JAX is imported inside the functions that need it.
"""

from __future__ import annotations

import datetime
import os
import statistics
import subprocess
import sys
import time
from typing import Any

from swin_flax import cli

_IMPORTED = time.time()
GIB = 2**30


# --------------------------------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------------------------------


def define_phase_flags() -> None:
    """benchmark.py's internal flags, with which it starts each measurement in a process of its
    own. Defined here, so that its --helpshort lists only the user's flags."""
    from absl import flags  # noqa: PLC0415

    flags.DEFINE_enum(
        "phase",
        None,
        ["jax-train", "jax-eval", "torch-train", "torch-eval"],
        "Internal: run one measurement in this process and write it to --phase_out.",
    )
    flags.DEFINE_integer("phase_batch", None, "Internal: the batch of --phase.")
    flags.DEFINE_integer(
        "phase_runs", 1, "Internal: the runs of --phase (JAX only).", lower_bound=1
    )
    flags.DEFINE_string("phase_out", None, "Internal: where --phase writes its JSON.")


def check_config(config) -> None:
    """swin_flax.config.validate as scripts/main.py runs it (any device count), and the run-length
    rules at the benchmark's steps per epoch: a ConfigError is one paragraph and exit 2 (cli.run).
    Imports no TensorFlow, which the GPU machine lacks."""
    from swin_flax import build  # noqa: PLC0415
    from swin_flax.config import validate  # noqa: PLC0415

    validate(config)
    build.check_run_length(config, steps_per_epoch(config))


def steps_per_epoch(config) -> int:
    """The benchmark's epoch: CIFAR's 50,000 training images at the config's batch."""
    return max(1, 50_000 // config.batch_size)


def with_overrides(config, overrides: str):
    """A copy of `config` with `overrides` ('field=value,...'; nested fields dotted) applied, each
    value read as the field's current type (strings as written, the rest as Python literals, so
    `model.depths=(2, 2, 6)` is a tuple).
    Exit 2 with one paragraph for a field the config lacks or an item that is not field=value."""
    import ast  # noqa: PLC0415
    import functools  # noqa: PLC0415

    items, depth, start = [], 0, 0
    for i, ch in enumerate(overrides + ","):  # commas inside (...) or [...] belong to a value
        depth += (ch in "([") - (ch in ")]")
        if depth < 0:
            break
        if ch == "," and depth == 0:
            items.append(overrides[start:i].strip())
            start = i + 1
    if depth:
        cli.exit_user_error(f"--variant {overrides!r}: its brackets do not balance.")
    config = config.copy_and_resolve_references()
    for item in filter(None, items):
        field, sep, text = item.partition("=")
        if not sep:
            cli.exit_user_error(f"--variant {overrides!r}: {item!r} is not field=value.")
        try:
            current = functools.reduce(lambda c, k: c[k], field.split("."), config)
        except (KeyError, AttributeError, TypeError):
            cli.exit_user_error(f"--variant {overrides!r}: the config has no field {field!r}.")
        try:
            value = text if isinstance(current, str) else ast.literal_eval(text)
            config.update_from_flattened_dict({field: value})
        except (ValueError, SyntaxError, TypeError) as e:
            cli.exit_user_error(f"--variant {overrides!r}: {field}={text} does not parse: {e}")
    return config


def check_batches(batches: list[int]) -> None:
    """Exit 2 unless every batch splits evenly over the local devices (each gets its share)."""
    import jax  # noqa: PLC0415

    n_dev = jax.local_device_count()
    if any(b % n_dev for b in batches):
        cli.exit_user_error(
            f"batch sizes {batches} must be multiples of the {n_dev} local devices JAX sees "
            f"(each device takes an equal share); choose multiples of {n_dev}."
        )


# --------------------------------------------------------------------------------------------------
# Timing, memory and the measuring process
# --------------------------------------------------------------------------------------------------


def process_start_time() -> float:
    """Wall-clock time at which this process started (Linux /proc), else when this module was
    imported."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        start_ticks = int(fields[19])  # field 22 of stat(5): starttime in clock ticks after boot
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return time.time() - uptime + start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return _IMPORTED


def peak_rss_bytes() -> int:
    """Peak resident memory of this process (ru_maxrss: KiB on Linux, bytes on macOS)."""
    import resource  # noqa: PLC0415

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def time_steps(step, num_steps: int) -> tuple[float, float, list[float]]:
    """Runs `step()` (which must block until done) 2 + num_steps times; returns the first call's
    end time, the second call's duration (a warm-up; a step that compiles again shows here) and
    the last num_steps durations."""
    step()
    first_done = time.time()
    t = time.perf_counter()
    step()
    second = time.perf_counter() - t
    durations = []
    for _ in range(num_steps):
        t = time.perf_counter()
        step()
        durations.append(time.perf_counter() - t)
    return first_done, second, durations


def summarise(
    batch: int, first_done: float, second: float, durations: list[float], num_runs: int = 1
) -> dict[str, Any]:
    """The figures of one measurement; a step of `num_runs` runs (a shared batch) processes
    num_runs x batch images. The images/s range is that of the slowest and the fastest timed step:
    a median is comparable only where the ranges say the noise is smaller than the difference."""
    med = statistics.median(durations)
    images = num_runs * batch
    return {
        "batch": batch,
        "num_runs": num_runs,
        "images_per_sec": images / med,
        "images_per_sec_range": [images / max(durations), images / min(durations)],
        "images_per_sec_per_run": batch / med,
        "step_seconds_median": med,
        "step_seconds": durations,
        "second_step_s": second,
        "start_to_first_step_s": first_done - process_start_time(),
        "peak_rss_gib": peak_rss_bytes() / GIB,
    }


def ratio_range(base: list[float], other: list[float]) -> tuple[float, float]:
    """The smallest and largest per-round ratio other[i] / base[i] of two variants' step times
    taken in alternated rounds: how far the noise moves the ratio of their medians."""
    ratios = [o / b for b, o in zip(base, other, strict=True)]
    return min(ratios), max(ratios)


def device_peak_gib() -> float | None:
    """Peak memory in use on the busiest local device (an accelerator's allocator statistics); None
    where JAX does not report it (CPU: use peak_rss_bytes)."""
    import jax  # noqa: PLC0415

    peaks = [(d.memory_stats() or {}).get("peak_bytes_in_use") for d in jax.local_devices()]
    return None if None in peaks else max(peaks) / GIB


def jax_device() -> str:
    """The local devices JAX runs on, in words: platform, kind and count (e.g. 'gpu: NVIDIA H200 x1')."""
    import jax  # noqa: PLC0415

    devices = jax.local_devices()
    return f"{devices[0].platform}: {devices[0].device_kind} x{len(devices)}"


def git_state(folder: str) -> dict[str, Any]:
    """The commit checked out in `folder`'s git work tree and whether its tracked files differ from
    it (untracked files, such as results, do not count); where git cannot say (not installed, not
    a repository), commit and dirty are None and `unknown_because` says why."""

    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, timeout=30)
        if out.returncode:
            lines = out.stderr.strip().splitlines() or [f"git exited with {out.returncode}"]
            raise RuntimeError(lines[-1])
        return out.stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        dirty = bool(git("status", "--porcelain", "--untracked-files=no").strip())
    except FileNotFoundError:
        return {"commit": None, "dirty": None, "unknown_because": "git is not installed"}
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        return {"commit": None, "dirty": None, "unknown_because": str(e)}
    return {"commit": commit, "dirty": dirty}


def git_text(state: dict[str, Any]) -> str:
    """`git_state` in words: 'commit 0123abcd (uncommitted changes)', or why it is unknown."""
    if state["commit"] is None:
        return f"commit unknown ({state['unknown_because']})"
    return f"commit {state['commit'][:10]}" + (" (uncommitted changes)" if state["dirty"] else "")


def utc_now() -> str:
    """The current time, UTC, to the second (ISO 8601, e.g. 2026-12-02T06:20:39Z)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def load_warning(load_1min: float | None, cpus: int) -> str | None:
    """One line when the 1-minute load average exceeds the CPUs: other work then takes CPU time
    from the timed steps, so the figures do not compare with another run's; None otherwise."""
    if load_1min is None or load_1min <= cpus:
        return None
    return (
        f"warning: the 1-minute load average is {load_1min:.2f} on {cpus} CPUs: other work "
        "competes with the timed steps, so these figures do not compare with another run's; "
        "compare variants in one process (scripts/bench/benchmark_variants.py) or on a quiet machine."
    )


def limit_threads(threads: int) -> None:
    """Pins this process to `threads` CPUs when fewer than the machine has (XLA sizes its pools
    from the CPUs it may use)."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if cpus and threads < len(cpus):
        os.sched_setaffinity(0, cpus[:threads])


HUGETLB_TUNABLE = "glibc.malloc.hugetlb=1"


def hugepage_env(env: dict[str, str]) -> dict[str, str]:
    """`env` with glibc's malloc told to use transparent huge pages (glibc >= 2.35, Linux).

    XLA:CPU mallocs a fresh buffer of about 1 GB for every training step's temporaries, and glibc
    maps such blocks with mmap: ~200,000 page faults of 4 KiB per step, and TLB misses (costly in a
    VM). With the tunable, malloc madvises its blocks to use 2 MiB pages when the kernel's THP mode
    is `madvise` (as here) or `always`. Must be in the environment when the process starts; older
    glibc ignores it. Applied to the JAX and the PyTorch children alike.
    """
    tunables = [t for t in env.get("GLIBC_TUNABLES", "").split(":") if t]
    tunables = [t for t in tunables if not t.startswith("glibc.malloc.hugetlb=")]
    return {**env, "GLIBC_TUNABLES": ":".join([*tunables, HUGETLB_TUNABLE])}


def transparent_hugepage_mode() -> str | None:
    """The kernel's THP mode (`always`, `madvise` or `never`), None where it cannot be read."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return next((w.strip("[]") for w in f.read().split() if w.startswith("[")), None)
    except OSError:
        return None


# --------------------------------------------------------------------------------------------------
# The JAX step as train.py builds it, and XLA's FLOP count of it
# --------------------------------------------------------------------------------------------------


def with_runs(config, num_runs: int):
    """A copy of `config` that trains `num_runs` seeds of one run in one process (no sweep)."""
    from swin_flax.config import SWEEPABLE  # noqa: PLC0415

    config = config.copy_and_resolve_references()
    config.num_runs = num_runs
    for f in SWEEPABLE:
        config.sweep[f] = ()
    return config


def build_jax(config, batch: int, abstract: bool = False):
    """The model, replicated state and pmapped steps as train.py builds them, plus a device batch.
    For config.num_runs > 1 the state stacks the runs and the steps are vmapped over them, the batch
    shared (the per_run_data and sweep variants are not built here).

    abstract=True: the state and batch as shapes only (jax.eval_shape), enough to lower and compile
    the steps without initialising anything."""
    import jax  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415
    from flax import jax_utils  # noqa: PLC0415

    from swin_flax import build, runs, steps  # noqa: PLC0415

    n_dev = jax.local_device_count()  # divides `batch`: run_phase checked it
    model = build.model_from_config(config)
    run_set = runs.run_set(config)
    tx = build.create_optimizer(run_set.configs[0], steps_per_epoch(config))
    init_keys, dropout_keys = run_set.keys()
    img = config.model.img_size
    shape = (img, img, config.model.in_chans)
    if abstract:
        state = jax.eval_shape(lambda k: steps.create_train_state(k, model, tx, shape), init_keys)
        state = jax.tree.map(lambda x: jax.ShapeDtypeStruct((n_dev, *x.shape), x.dtype), state)
    else:
        state = steps.replicate(steps.create_train_state(init_keys, model, tx, shape))
    p_train_step = build.pmap_train_step(run_set.count)
    p_eval_step = build.pmap_eval_step(model.apply, run_set.count)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, config.model.num_classes, batch).astype(np.int32)
    host = {
        "image": rng.random((batch, *shape), np.float32),
        "label": labels,
        "target": np.eye(config.model.num_classes, dtype=np.float32)[labels],
        "mask": np.ones(batch, np.float32),
    }
    host = {k: v.reshape(n_dev, batch // n_dev, *v.shape[1:]) for k, v in host.items()}
    if abstract:
        device_batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in host.items()}
    else:
        device_batch = next(jax_utils.prefetch_to_device(iter([host]), 1))
    return model, state, p_train_step, p_eval_step, device_batch, dropout_keys


def cost_flops(compiled) -> float:
    """Total 'flops' of a compiled executable's XLA cost analysis (a dict or a list of dicts)."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, list | tuple):
        return float(sum(a.get("flops", 0.0) for a in analysis))
    return float(analysis.get("flops", 0.0))


def jax_flops_per_image(config, batch: int, train: bool) -> float:
    """XLA's FLOPs per image of the pmapped train (or eval) step, from the UNSCANNED model.

    XLA's cost analysis counts a while loop's body once, so a scanned model would under-count; the
    unscanned model computes the same thing. Only lowered and compiled from shapes, never run.
    """
    import jax  # noqa: PLC0415

    cfg = config.copy_and_resolve_references()
    cfg.scan_blocks = False
    cfg.remat = "none"  # recomputation is overhead, not model FLOPs
    _, state, p_train_step, p_eval_step, device_batch, dropout_keys = build_jax(
        cfg, batch, abstract=True
    )
    if train:
        compiled = p_train_step.lower(state, device_batch, dropout_keys).compile()
    else:
        compiled = p_eval_step.lower(state.params, device_batch).compile()
    return cost_flops(compiled) / (batch / jax.local_device_count())
