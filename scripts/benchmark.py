"""Model speed against the PyTorch reference: `python scripts/benchmark.py --config configs/strong.py`.

Options: --batch N (repeatable; default 128 and 1024), --eval_batch N (default 256), --steps N (timed
steps after the warm-up), --threads N (CPU threads of both sides), --torch (also timm's Swin), --json
PATH (write the results).

For the config's model at its image size this measures, on the default JAX backend:
  * training images/s of the FULL step: `steps.train_step` pmapped over the local devices exactly as
    `train.py` builds it (forward, backward, AdamW from `optim.create_optimizer` with the config's
    schedule, metrics), per global batch;
  * eval images/s: the pmapped `steps.eval_step` (forward and metrics) at --eval_batch;
  * seconds from process start to the first finished training step (imports, init, compile, step);
  * peak host memory (`ru_maxrss`) of the process;
  * the matmul floor: the seconds the step's matrix products alone take on that side, each shape
    timed on its own (scripts/benchmark_matmul.py), and their share of the measured step;
  * FLOPs per image from XLA's cost analysis of the compiled step (for a scanned model the cost
    analysis counts a loop body once, so the FLOPs are taken from the unscanned model) and the
    achieved FLOP/s.
With --torch it measures timm's SwinTransformer built with the same official arguments (official
window rule: always_partition=False, strict_img_size=True), torch.set_num_threads(--threads): a full
training step (forward, backward, torch.optim.AdamW with the config's lr / betas / eps / weight decay,
timm's SoftTargetCrossEntropy) and eval (inference_mode forward), then prints the ratios.

Every (side, phase, batch) runs in its own child process of this script, one after the other, so
the start-to-first-step time is a real cold start and the peak memory is that phase's own (not the
maximum over everything run before it). torch and timm are imported only in the torch children.
"""

from __future__ import annotations

import time

_SCRIPT_START = time.time()

from swin_flax import cli  # noqa: E402 (standard library and absl only)

cli.start()

import contextlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from typing import Any  # noqa: E402

from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Path to a config file, e.g. configs/strong.py.")
flags.DEFINE_multi_integer(
    "batch", [128, 1024], "Global training batch size(s) to time.", lower_bound=1
)
flags.DEFINE_integer("eval_batch", 256, "Global eval batch size (0 skips eval).", lower_bound=0)
flags.DEFINE_integer(
    "steps", 5, "Timed steps per measurement, after two warm-up steps.", lower_bound=1
)
flags.DEFINE_integer("threads", os.cpu_count() or 1, "CPU threads for both sides.", lower_bound=1)
flags.DEFINE_bool("torch", False, "Also measure timm's SwinTransformer (needs torch and timm).")
flags.DEFINE_bool(
    "malloc_hugepages",
    True,
    "Run both sides' measurements with GLIBC_TUNABLES=glibc.malloc.hugetlb=1 (see "
    "hugepage_env): glibc's malloc then asks for transparent huge pages. Off: the system default.",
)
flags.DEFINE_string("json", None, "Also write the results to this JSON file.")
flags.DEFINE_enum(
    "phase",
    None,
    ["jax-train", "jax-eval", "torch-train", "torch-eval"],
    "Internal: run one measurement in this process and write it to --phase_out.",
)
flags.DEFINE_integer("phase_batch", None, "Internal: the batch of --phase.")
flags.DEFINE_string("phase_out", None, "Internal: where --phase writes its JSON.")
flags.mark_flags_as_required(["config"])

GIB = 2**30


# --------------------------------------------------------------------------------------------------
# Helpers shared by both sides
# --------------------------------------------------------------------------------------------------


def process_start_time() -> float:
    """Wall-clock time at which this process started (Linux /proc), else when the script began."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        start_ticks = int(fields[19])  # field 22 of stat(5): starttime in clock ticks after boot
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return time.time() - uptime + start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return _SCRIPT_START


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
    batch: int, first_done: float, second: float, durations: list[float]
) -> dict[str, Any]:
    med = statistics.median(durations)
    return {
        "batch": batch,
        "images_per_sec": batch / med,
        "step_seconds_median": med,
        "step_seconds": durations,
        "second_step_s": second,
        "start_to_first_step_s": first_done - process_start_time(),
        "peak_rss_gib": peak_rss_bytes() / GIB,
    }


def matmul_floor_s(side: str, config, batch: int, train: bool) -> float:
    """Seconds that the step's (train) or forward's (eval) matrix products alone take on `side`,
    each shape timed on its own (scripts/benchmark_matmul.py); measured in the same process as the
    step, so step and floor see the same machine."""
    import benchmark_matmul as mm  # noqa: PLC0415 (next to this script)

    sides = {side: mm.jax_timer if side == "jax" else mm.torch_timer}
    rows = mm.time_products(mm.step_products(config.model, batch, train), sides, repeats=3, calls=8)
    return mm.floor_seconds(rows, side)


def add_floor(out: dict[str, Any], side: str, config, batch: int, train: bool) -> dict[str, Any]:
    out["matmul_floor_s"] = matmul_floor_s(side, config, batch, train)
    out["matmul_share"] = out["matmul_floor_s"] / out["step_seconds_median"]
    return out


def limit_threads(threads: int) -> None:
    """Pins this process to `threads` CPUs when fewer than the machine has (XLA sizes its pools
    from the CPUs it may use)."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if cpus and threads < len(cpus):
        os.sched_setaffinity(0, cpus[:threads])


# --------------------------------------------------------------------------------------------------
# JAX side
# --------------------------------------------------------------------------------------------------


def build_jax(config, batch: int, abstract: bool = False):
    """The model, replicated state and pmapped steps as train.py builds them, plus a device batch.

    abstract=True: the state and batch as shapes only (jax.eval_shape), enough to lower and compile
    the steps without initialising anything."""
    import functools  # noqa: PLC0415

    import jax  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415
    from flax import jax_utils  # noqa: PLC0415

    from swin_flax import build, steps  # noqa: PLC0415

    n_dev = jax.local_device_count()  # divides `batch`: run_phase checked it
    steps_per_epoch = max(1, 50_000 // config.batch_size)
    model = build.create_model(config)
    learning_rate_fn = build.create_learning_rate_fn(config, steps_per_epoch)
    tx = build.create_optimizer(config, learning_rate_fn)
    init_key, dropout_key = jax.random.split(jax.random.key(config.seed))
    img = config.model.img_size
    shape = (img, img, config.model.in_chans)
    if abstract:
        state = jax.eval_shape(lambda k: steps.create_train_state(k, model, tx, shape), init_key)
        state = jax.tree.map(lambda x: jax.ShapeDtypeStruct((n_dev, *x.shape), x.dtype), state)
    else:
        state = steps.replicate(steps.create_train_state(init_key, model, tx, shape))
    p_train_step = build.pmap_train_step(dropout_key, learning_rate_fn)
    p_eval_step = jax.pmap(
        functools.partial(steps.eval_step, apply_fn=model.apply), axis_name=steps.AXIS
    )
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
    return model, state, p_train_step, p_eval_step, device_batch


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
    cfg.remat = False  # recomputation is overhead, not model FLOPs
    _, state, p_train_step, p_eval_step, device_batch = build_jax(cfg, batch, abstract=True)
    if train:
        compiled = p_train_step.lower(state, device_batch).compile()
    else:
        compiled = p_eval_step.lower(state.params, device_batch).compile()
    return cost_flops(compiled) / (batch / jax.local_device_count())


def run_jax_train(config, batch: int, num_steps: int) -> dict[str, Any]:
    import jax  # noqa: PLC0415

    _, state, p_train_step, _, device_batch = build_jax(config, batch)
    holder = {"state": state}

    def step():
        holder["state"], metrics, _ = p_train_step(holder["state"], device_batch)
        jax.block_until_ready((holder["state"].params, metrics))

    out = summarise(batch, *time_steps(step, num_steps))
    holder.clear()  # frees the trained state before the FLOP-count compile
    add_floor(out, "jax", config, batch, train=True)
    out["flops_per_image"] = jax_flops_per_image(config, batch, train=True)
    out["flops_per_sec"] = out["flops_per_image"] * out["images_per_sec"]
    return out


def run_jax_eval(config, batch: int, num_steps: int) -> dict[str, Any]:
    import jax  # noqa: PLC0415

    _, state, _, p_eval_step, device_batch = build_jax(config, batch)

    def step():
        jax.block_until_ready(p_eval_step(state.params, device_batch))

    out = summarise(batch, *time_steps(step, num_steps))
    add_floor(out, "jax", config, batch, train=False)
    out["flops_per_image"] = jax_flops_per_image(config, batch, train=False)
    out["flops_per_sec"] = out["flops_per_image"] * out["images_per_sec"]
    return out


# --------------------------------------------------------------------------------------------------
# PyTorch side (timm)
# --------------------------------------------------------------------------------------------------


def import_torch():
    try:
        import timm  # noqa: PLC0415
        import torch  # noqa: PLC0415
    except ImportError as e:
        cli.exit_user_error(
            f"--torch needs torch and timm, which swin-flax does not depend on ({e}). Install them, "
            "or run with the reference venv: /work/refvenv/bin/pip install -e . && "
            "/work/refvenv/bin/python scripts/benchmark.py ... --torch"
        )
    return torch, timm


def build_torch(config, threads: int):
    torch, _ = import_torch()
    from timm.models.swin_transformer import SwinTransformer  # noqa: PLC0415

    torch.set_num_threads(threads)
    torch.manual_seed(config.seed)
    m = config.model
    model = SwinTransformer(
        img_size=m.img_size,
        patch_size=m.patch_size,
        in_chans=m.in_chans,
        num_classes=m.num_classes,
        embed_dim=m.embed_dim,
        depths=tuple(m.depths),
        num_heads=tuple(m.num_heads),
        window_size=m.window_size,
        mlp_ratio=m.mlp_ratio,
        qkv_bias=m.qkv_bias,
        drop_rate=m.drop_rate,
        attn_drop_rate=m.attn_drop_rate,
        drop_path_rate=m.drop_path_rate,
        always_partition=False,  # the official window rule (clamp to the grid, no shift then)
        strict_img_size=True,
    )
    return torch, model


def torch_batch(torch, config, batch: int):
    gen = torch.Generator().manual_seed(0)
    img, c = config.model.img_size, config.model.in_chans
    images = torch.rand(batch, c, img, img, generator=gen)
    labels = torch.randint(0, config.model.num_classes, (batch,), generator=gen)
    targets = torch.nn.functional.one_hot(labels, config.model.num_classes).float()
    return images, targets


def run_torch_train(config, batch: int, num_steps: int, threads: int) -> dict[str, Any]:
    torch, model = build_torch(config, threads)
    from timm.loss import SoftTargetCrossEntropy  # noqa: PLC0415

    model.train()
    opt = torch.optim.AdamW(
        model.parameters(),
        lr=config.learning_rate,
        betas=(config.b1, config.b2),
        eps=config.eps,
        weight_decay=config.weight_decay,
    )
    loss_fn = SoftTargetCrossEntropy()
    images, targets = torch_batch(torch, config, batch)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(images), targets)
        loss.backward()
        opt.step()
        loss.item()

    out = summarise(batch, *time_steps(step, num_steps))
    return add_floor(out, "torch", config, batch, train=True)


def run_torch_eval(config, batch: int, num_steps: int, threads: int) -> dict[str, Any]:
    torch, model = build_torch(config, threads)
    model.eval()
    images, _ = torch_batch(torch, config, batch)

    def step():
        with torch.inference_mode():
            model(images).sum().item()

    out = summarise(batch, *time_steps(step, num_steps))
    return add_floor(out, "torch", config, batch, train=False)


# --------------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------------


def run_phase(phase: str, config, batch: int) -> dict[str, Any]:
    """One measurement, in this (fresh) process. The first child (always a JAX one) checks every
    batch against the local devices before anything is compiled; the torch children never
    import JAX."""
    limit_threads(FLAGS.threads)
    if phase.startswith("jax"):
        import benchmark_matmul as mm  # noqa: PLC0415 (next to this script)

        mm.check_batches([*FLAGS.batch, *([FLAGS.eval_batch] if FLAGS.eval_batch else [])])
    if phase == "jax-train":
        return run_jax_train(config, batch, FLAGS.steps)
    if phase == "jax-eval":
        return run_jax_eval(config, batch, FLAGS.steps)
    if phase == "torch-train":
        return run_torch_train(config, batch, FLAGS.steps, FLAGS.threads)
    return run_torch_eval(config, batch, FLAGS.steps, FLAGS.threads)


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


def spawn(phase: str, batch: int, argv: list[str]) -> dict[str, Any]:
    """Runs one phase in a child process of this script and returns its JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "phase.json")
        cmd = [
            sys.executable,
            os.path.abspath(__file__),
            *argv,
            f"--phase={phase}",
            f"--phase_batch={batch}",
            f"--phase_out={out}",
        ]
        print(f"[benchmark] {phase} batch {batch} ...", flush=True)
        env = hugepage_env(dict(os.environ)) if FLAGS.malloc_hugepages else None
        proc = subprocess.run(cmd, check=False, env=env)
        if proc.returncode == cli.EXIT_USER_ERROR:  # the child said why, in one paragraph
            sys.exit(cli.EXIT_USER_ERROR)
        if proc.returncode:
            raise SystemExit(
                f"phase {phase} (batch {batch}) failed with exit code {proc.returncode}."
            )
        with open(out) as f:
            return json.load(f)


def versions(with_torch: bool) -> dict[str, str]:
    import importlib.metadata as md  # noqa: PLC0415

    names = ["jax", "jaxlib", "flax", "optax", "tensorflow-cpu", "tensorflow"]
    if with_torch:
        names += ["torch", "timm"]
    out = {}
    for n in names:
        with contextlib.suppress(md.PackageNotFoundError):
            out[n] = md.version(n)
    return out


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"cpu": cpu, "cores": os.cpu_count(), "loadavg_at_start": load}


def table(results: dict[str, Any]) -> str:
    rows = [("measurement", "swin-flax (JAX)", "timm (PyTorch)", "ratio")]

    def fmt(v, spec):
        return "-" if v is None else format(v, spec)

    def add(label, jax_r, torch_r, key, spec, ratio=True):
        j = jax_r.get(key) if jax_r else None
        t = torch_r.get(key) if torch_r else None
        r = (j / t) if (ratio and j is not None and t) else None
        rows.append((label, fmt(j, spec), fmt(t, spec), fmt(r, ".2f") + ("x" if r else "")))

    for b in results["batches"]:
        j, t = results["jax"].get(f"train_{b}"), results["torch"].get(f"train_{b}")
        add(f"train images/s, batch {b}", j, t, "images_per_sec", ",.1f")
        add(f"  start -> first step (s), batch {b}", j, t, "start_to_first_step_s", ".1f", False)
        add(f"  second step (s), batch {b}", j, t, "second_step_s", ".2f", False)
        add(f"  peak host memory (GiB), batch {b}", j, t, "peak_rss_gib", ".2f", False)
        add(f"  its matmuls alone (s per step), batch {b}", j, t, "matmul_floor_s", ".3f", False)
        add(f"  matmul share of the step, batch {b}", j, t, "matmul_share", ".0%", False)
        add(
            f"  XLA GFLOP per training image, batch {b}",
            {"v": j["flops_per_image"] / 1e9} if j else None,
            None,
            "v",
            ".3f",
            False,
        )
        add(
            f"  achieved GFLOP/s, batch {b}",
            {"v": j["flops_per_sec"] / 1e9} if j else None,
            None,
            "v",
            ",.1f",
            False,
        )
    if "eval" in results["jax"]:
        b = results["eval_batch"]
        j, t = results["jax"]["eval"], results["torch"].get("eval")
        add(f"eval images/s, batch {b}", j, t, "images_per_sec", ",.1f")
        add("  its matmuls alone (s per batch)", j, t, "matmul_floor_s", ".3f", False)
        add("  matmul share of the eval step", j, t, "matmul_share", ".0%", False)
        add(
            "  XLA GFLOP per eval image", {"v": j["flops_per_image"] / 1e9}, None, "v", ".3f", False
        )
        add("  achieved GFLOP/s (eval)", {"v": j["flops_per_sec"] / 1e9}, None, "v", ",.1f", False)
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
        for r in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def main(argv):
    del argv  # parse_flags refused stray arguments
    import benchmark_matmul as mm  # noqa: PLC0415 (next to this script)

    config = FLAGS.config
    if FLAGS.phase:  # a child: the parent checked the config and the flags
        if FLAGS.phase_batch is None or FLAGS.phase_out is None:
            cli.exit_user_error("--phase is internal: it needs --phase_batch and --phase_out.")
        result = run_phase(FLAGS.phase, config, FLAGS.phase_batch)
        with open(FLAGS.phase_out, "w") as f:
            json.dump(result, f)
        return
    mm.check_json(FLAGS.json)
    mm.check_config(config)
    if FLAGS.torch:
        import_torch()  # fail early, before minutes of JAX measurements

    # Children get the same command line (config file, overrides, options; --phase makes them
    # ignore --json and --torch), plus their phase.
    child_argv = sys.argv[1:]
    batches = list(dict.fromkeys(FLAGS.batch))
    results: dict[str, Any] = {
        "config": {k: config[k] for k in ("dtype", "scan_blocks", "remat")},
        "model": config.model.to_dict(),
        "batches": batches,
        "eval_batch": FLAGS.eval_batch,
        "threads": FLAGS.threads,
        "steps": FLAGS.steps,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "malloc_hugepages": FLAGS.malloc_hugepages,
        "transparent_hugepage": transparent_hugepage_mode(),
        "machine": machine(),
        "versions": versions(FLAGS.torch),
        "jax": {},
        "torch": {},
    }
    for b in batches:
        results["jax"][f"train_{b}"] = spawn("jax-train", b, child_argv)
        if FLAGS.torch:
            results["torch"][f"train_{b}"] = spawn("torch-train", b, child_argv)
    if FLAGS.eval_batch:
        results["jax"]["eval"] = spawn("jax-eval", FLAGS.eval_batch, child_argv)
        if FLAGS.torch:
            results["torch"]["eval"] = spawn("torch-eval", FLAGS.eval_batch, child_argv)
    results["machine"]["loadavg_at_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    text = table(results)
    print(text)
    if FLAGS.json:
        with open(FLAGS.json, "w") as f:
            json.dump(results, f, indent=2)
        print(f"wrote {FLAGS.json}")


if __name__ == "__main__":
    cli.run(main)
