"""Model speed against the PyTorch reference: `python scripts/benchmark.py --config configs/strong.py`.

Options: --batch N (repeatable; default 128 and 1024), --eval_batch N (default 256), --steps N (timed
steps after the warm-up), --threads N (CPU threads of both sides), --torch (also timm's Swin), --json
PATH (write the results; rewritten after every measurement, so a run cut short keeps what it measured),
--num_runs N (repeatable; default 1: many runs in one process, below), --nofloor (no matmul floor and
FLOP count: the steps only), --notorch_tf32 (torch's float32 matmuls in full float32 on a GPU).

What a result must name to be compared with another is printed first and heads the table (the
commit and whether the tracked files differ from it, the start time in UTC, the load average, the
config's dtype, remat and scan_blocks, the timed steps) and goes to --json (`git`, `started_utc`,
`machine`, `config`, `steps`); a load above the CPU count is warned of at the start. Each images/s
is the median step's, with the slowest and fastest step's beside it (min-max).

For the config's model at its image size this measures, on the default JAX backend:
  * training images/s of the FULL step: `steps.train_step` pmapped over the local devices exactly as
    `train.py` builds it (forward, backward, AdamW from `optim.create_optimizer` with the config's
    schedule, metrics), per global batch;
  * eval images/s: the pmapped `steps.eval_step` (forward and metrics) at --eval_batch;
  * seconds from process start to the first finished training step (imports, init, compile, step);
  * peak host memory (`ru_maxrss`) of the process;
  * peak device memory where JAX reports one (an accelerator's allocator; none on the CPU);
  * the matmul floor: the seconds the step's matrix products alone take on that side, each shape
    timed on its own in the config's compute dtype on the step's device (scripts/bench/matmul.py),
    and their share of the measured step;
  * FLOPs per image from XLA's cost analysis of the compiled step (for a scanned model the cost
    analysis counts a loop body once, so the FLOPs are taken from the unscanned model) and the
    achieved FLOP/s.
With --torch it measures timm's SwinTransformer built with the same official arguments (official
window rule: always_partition=False, strict_img_size=True), torch.set_num_threads(--threads): a full
training step (forward, backward, torch.optim.AdamW with the config's lr / betas / eps / weight decay,
timm's SoftTargetCrossEntropy) and eval (inference_mode forward), then prints the ratios. It runs on
CUDA when torch sees a GPU (model, batch and optimiser there, every timed step or product burst ending
in torch.cuda.synchronize(), peak memory from torch.cuda.max_memory_allocated), else on the CPU. With
--config.dtype=bfloat16 the forward and loss run under torch.autocast(bfloat16) (params and AdamW
stay float32, as JAX keeps its params float32), on either device. On a GPU, float32 matmuls use TF32
(--torch_tf32, default) as JAX's default precision does there; torch's own default would not.

With --num_runs N > 1 (repeatable: --num_runs 2 --num_runs 4 ...) it also times the JAX train and
eval steps of N runs in one process, as train.py builds them for config.num_runs = N (N seeds, no
sweep): the state stacked on a leading run axis, the steps vmapped over it, the batch shared. For
each N: step seconds, images/s in total (N x batch per step) and per run, step(N) / step(1),
step(N) / (N x step(1)) and peak memory (host; the device's too where JAX reports it). One run
(N = 1) is the plain phase above; for N > 1 the matmul floor and FLOPs are not measured.

Every (side, phase, batch, runs) runs in its own child process of this script, one after the other,
so the start-to-first-step time is a real cold start and the peak memory is that phase's own (not
the maximum over everything run before it). torch and timm are imported only in the torch children.
"""

from __future__ import annotations

from swin_flax import cli  # standard library and absl only

cli.start()

import contextlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from bench import matmul, measure  # noqa: E402 (scripts/bench/; standard library only until called)

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
    "torch_tf32",
    True,
    "On a GPU, let torch's float32 matmuls use TF32 tensor cores "
    "(torch.set_float32_matmul_precision('high')), as JAX's default precision does on GPUs that "
    "have them; off: torch's default, full float32. No effect on the CPU or under bfloat16.",
)
flags.DEFINE_bool(
    "floor",
    True,
    "Time the matmul floor and count XLA's FLOPs in the one-run phases. Off: the steps only "
    "(minutes less on a GPU, where each product shape and the FLOP-count step are compiled).",
)
flags.DEFINE_bool(
    "malloc_hugepages",
    True,
    "Run both sides' measurements with GLIBC_TUNABLES=glibc.malloc.hugetlb=1: glibc's malloc "
    "then asks for transparent huge pages (fewer page faults per step). Off: the system default.",
)
flags.DEFINE_string("json", None, "Also write the results to this JSON file.")
flags.DEFINE_multi_integer(
    "num_runs",
    [1],
    "Runs in one process to time (the JAX steps vmapped over N seeds, the batch shared); "
    "repeatable. One run is always measured: the base of the ratios.",
    lower_bound=1,
)
measure.define_phase_flags()  # how the parent starts each measurement: --helpfull lists them
flags.mark_flags_as_required(["config"])


# --------------------------------------------------------------------------------------------------
# Helpers shared by both sides
# --------------------------------------------------------------------------------------------------


def matmul_floor_s(side: str, config, batch: int, train: bool) -> float:
    """Seconds that the step's (train) or forward's (eval) matrix products alone take on `side`,
    each shape timed on its own in the config's compute dtype on the step's device
    (scripts/bench/matmul.py); measured in the same process as the step, so step and floor see the
    same machine."""
    sides = {side: matmul.timer(side, config.dtype)}
    products = matmul.step_products(config.model, batch, train)
    rows = matmul.time_products(products, sides, repeats=3, calls=8)
    return matmul.floor_seconds(rows, side)


def add_floor(out: dict[str, Any], side: str, config, batch: int, train: bool) -> dict[str, Any]:
    out["matmul_floor_s"] = matmul_floor_s(side, config, batch, train)
    out["matmul_share"] = out["matmul_floor_s"] / out["step_seconds_median"]
    return out


# --------------------------------------------------------------------------------------------------
# JAX side
# --------------------------------------------------------------------------------------------------


def run_jax_train(
    config, batch: int, num_steps: int, num_runs: int = 1, floor: bool = True
) -> dict[str, Any]:
    import jax  # noqa: PLC0415

    config = measure.with_runs(config, num_runs)
    _, state, p_train_step, _, device_batch, dropout_keys = measure.build_jax(config, batch)
    holder = {"state": state}

    def step():
        holder["state"], metrics = p_train_step(holder["state"], device_batch, dropout_keys)
        jax.block_until_ready((holder["state"].params, metrics))

    out = measure.summarise(batch, *measure.time_steps(step, num_steps), num_runs=num_runs)
    out["peak_device_gib"] = measure.device_peak_gib()
    out["device"] = measure.jax_device()
    if num_runs > 1 or not floor:
        return out
    holder.clear()  # frees the trained state before the FLOP-count compile
    add_floor(out, "jax", config, batch, train=True)
    out["flops_per_image"] = measure.jax_flops_per_image(config, batch, train=True)
    out["flops_per_sec"] = out["flops_per_image"] * out["images_per_sec"]
    return out


def run_jax_eval(
    config, batch: int, num_steps: int, num_runs: int = 1, floor: bool = True
) -> dict[str, Any]:
    import jax  # noqa: PLC0415

    config = measure.with_runs(config, num_runs)
    _, state, _, p_eval_step, device_batch, _ = measure.build_jax(config, batch)

    def step():
        jax.block_until_ready(p_eval_step(state.params, device_batch))

    out = measure.summarise(batch, *measure.time_steps(step, num_steps), num_runs=num_runs)
    out["peak_device_gib"] = measure.device_peak_gib()
    out["device"] = measure.jax_device()
    if num_runs > 1 or not floor:
        return out
    add_floor(out, "jax", config, batch, train=False)
    out["flops_per_image"] = measure.jax_flops_per_image(config, batch, train=False)
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
            f"--torch needs torch and timm, which swin-flax does not depend on ({e}). Install them "
            "into this environment (pip install torch timm), or into a separate venv together with "
            "swin-flax (pip install -e . torch timm) and run this script with that venv's python."
        )
    return torch, timm


class TorchSide:
    """timm's Swin, its batch and settings for one torch phase: on CUDA when torch sees a GPU, else
    on the CPU; `autocast()` is the forward's context (bfloat16 under --config.dtype=bfloat16),
    `sync()` waits for the device's queued work (a no-op on the CPU)."""

    def __init__(self, config, batch: int, threads: int, tf32: bool):
        self.torch, _ = import_torch()
        from timm.models.swin_transformer import SwinTransformer  # noqa: PLC0415

        torch = self.torch
        torch.set_num_threads(threads)
        torch.manual_seed(config.seed)
        self.device = matmul.torch_device()
        self.cuda = self.device == "cuda"
        if self.cuda:
            torch.backends.cudnn.benchmark = True  # as timm's train.py (the patch embedding conv)
            torch.set_float32_matmul_precision("high" if tf32 else "highest")
            torch.cuda.reset_peak_memory_stats()
        self.bf16 = config.dtype == "bfloat16"
        m = config.model
        self.model = SwinTransformer(
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
        ).to(self.device)  # parameters stay float32; autocast casts them for the products
        gen = torch.Generator().manual_seed(0)
        img, c = m.img_size, m.in_chans
        self.images = torch.rand(batch, c, img, img, generator=gen).to(self.device)
        labels = torch.randint(0, m.num_classes, (batch,), generator=gen)
        targets = torch.nn.functional.one_hot(labels, m.num_classes).float()
        self.targets = targets.to(self.device)

    def autocast(self):
        return self.torch.autocast(self.device, dtype=self.torch.bfloat16, enabled=self.bf16)

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()

    def figures(self) -> dict[str, Any]:
        """Where this phase ran, in what precision, and its peak device memory (None on the CPU)."""
        torch = self.torch
        return {
            "device": torch.cuda.get_device_name() if self.cuda else "cpu",
            "autocast": "bfloat16" if self.bf16 else None,
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "peak_device_gib": torch.cuda.max_memory_allocated() / measure.GIB
            if self.cuda
            else None,
        }


def run_torch_train(
    config, batch: int, num_steps: int, threads: int, tf32: bool = True, floor: bool = True
) -> dict[str, Any]:
    side = TorchSide(config, batch, threads, tf32)
    torch, model = side.torch, side.model
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

    def step():
        opt.zero_grad(set_to_none=True)
        with side.autocast():
            loss = loss_fn(model(side.images), side.targets)
        loss.backward()  # outside autocast, as torch's AMP recipe has it
        opt.step()
        loss.item()
        side.sync()  # the optimiser's kernels too, not only the loss's

    out = measure.summarise(batch, *measure.time_steps(step, num_steps))
    out.update(side.figures())  # peak memory before the floor's operands
    return add_floor(out, "torch", config, batch, train=True) if floor else out


def run_torch_eval(
    config, batch: int, num_steps: int, threads: int, tf32: bool = True, floor: bool = True
) -> dict[str, Any]:
    side = TorchSide(config, batch, threads, tf32)
    torch, model = side.torch, side.model
    model.eval()

    def step():
        with torch.inference_mode(), side.autocast():
            model(side.images).sum().item()

    out = measure.summarise(batch, *measure.time_steps(step, num_steps))
    out.update(side.figures())
    return add_floor(out, "torch", config, batch, train=False) if floor else out


# --------------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------------


def run_phase(phase: str, config, batch: int, num_runs: int) -> dict[str, Any]:
    """One measurement, in this (fresh) process. The first child (always a JAX one) checks every
    batch against the local devices before anything is compiled; the torch children never
    import JAX."""
    measure.limit_threads(FLAGS.threads)
    if phase.startswith("jax"):
        measure.check_batches([*FLAGS.batch, *([FLAGS.eval_batch] if FLAGS.eval_batch else [])])
    if phase == "jax-train":
        return run_jax_train(config, batch, FLAGS.steps, num_runs, FLAGS.floor)
    if phase == "jax-eval":
        return run_jax_eval(config, batch, FLAGS.steps, num_runs, FLAGS.floor)
    torch_args = (config, batch, FLAGS.steps, FLAGS.threads, FLAGS.torch_tf32, FLAGS.floor)
    if phase == "torch-train":
        return run_torch_train(*torch_args)
    return run_torch_eval(*torch_args)


def spawn(phase: str, batch: int, argv: list[str], num_runs: int = 1) -> dict[str, Any]:
    """Runs one phase (of `num_runs` runs) in a child process of this script; returns its JSON,
    with the child's wall seconds (start to exit: what a device command's time limit counts)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "phase.json")
        cmd = [
            sys.executable,
            os.path.abspath(__file__),
            *argv,
            f"--phase={phase}",
            f"--phase_batch={batch}",
            f"--phase_out={out}",
            f"--phase_runs={num_runs}",
        ]
        runs = f", {num_runs} runs" if num_runs > 1 else ""
        print(f"[benchmark] {phase} batch {batch}{runs} ...", flush=True)
        env = measure.hugepage_env(dict(os.environ)) if FLAGS.malloc_hugepages else None
        start = time.perf_counter()
        proc = subprocess.run(cmd, check=False, env=env)
        seconds = time.perf_counter() - start
        if proc.returncode == cli.EXIT_USER_ERROR:  # the child said why, in one paragraph
            sys.exit(cli.EXIT_USER_ERROR)
        if proc.returncode:
            raise SystemExit(
                f"phase {phase} (batch {batch}{runs}) failed with exit code {proc.returncode}."
            )
        with open(out) as f:
            result = json.load(f)
        result["child_seconds"] = seconds
        print(f"[benchmark] {phase} batch {batch}{runs}: {seconds:.0f} s", flush=True)
        return result


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
    """The two sides' figures side by side, after a line saying where each ran and in what dtype
    (without --torch, swin-flax's alone). The device-memory rows only where a side reports one; the
    floor and FLOP rows only where they were measured (not with --nofloor)."""
    rows = [("measurement", "swin-flax (JAX)", "timm (PyTorch)", "ratio")]

    def fmt(v, spec):
        return "-" if v is None else format(v, spec)

    def spread(result, spec):
        """' (min-max)' of a result's images/s over its timed steps, '' for one step."""
        if not result or len(result.get("step_seconds", ())) < 2:
            return ""
        lo, hi = result["images_per_sec_range"]
        return f" ({lo:{spec}}-{hi:{spec}})"

    def add(label, jax_r, torch_r, key, spec, ratio=True):
        j = jax_r.get(key) if jax_r else None
        t = torch_r.get(key) if torch_r else None
        r = (j / t) if (ratio and j is not None and t) else None
        cells = [fmt(j, spec), fmt(t, spec)]
        if key == "images_per_sec":  # the median, and the range beside it
            cells = [c + spread(side, spec) for c, side in zip(cells, (jax_r, torch_r))]
        rows.append((label, *cells, fmt(r, ".2f") + ("x" if r else "")))

    def giga(r, key):
        return {"v": r[key] / 1e9} if r and key in r else None

    def reported(key, *sides):
        return any(r and r.get(key) is not None for r in sides)

    def step_rows(j, t, labels):
        """Device memory, the matmul floor and its share, XLA's FLOPs (`labels`: their names)."""
        memory, floor, share, flops, rate = labels
        if reported("peak_device_gib", j, t):
            add(memory, j, t, "peak_device_gib", ".2f", False)
        if reported("matmul_floor_s", j, t):
            add(floor, j, t, "matmul_floor_s", ".3f", False)
            add(share, j, t, "matmul_share", ".0%", False)
        if reported("flops_per_image", j):
            add(flops, giga(j, "flops_per_image"), None, "v", ".3f", False)
            add(rate, giga(j, "flops_per_sec"), None, "v", ",.1f", False)

    spread_label = " (min-max)" if results["steps"] > 1 else ""  # one timed step has no range
    for b in results["batches"]:
        j, t = results["jax"].get(f"train_{b}"), results["torch"].get(f"train_{b}")
        add(f"train images/s{spread_label}, batch {b}", j, t, "images_per_sec", ",.1f")
        add(f"  start -> first step (s), batch {b}", j, t, "start_to_first_step_s", ".1f", False)
        add(f"  second step (s), batch {b}", j, t, "second_step_s", ".2f", False)
        add(f"  peak host memory (GiB), batch {b}", j, t, "peak_rss_gib", ".2f", False)
        labels = (
            f"  peak device memory (GiB), batch {b}",
            f"  its matmuls alone (s per step), batch {b}",
            f"  matmul share of the step, batch {b}",
            f"  XLA GFLOP per training image, batch {b}",
            f"  achieved GFLOP/s, batch {b}",
        )
        step_rows(j, t, labels)
    if "eval" in results["jax"]:
        b = results["eval_batch"]
        j, t = results["jax"]["eval"], results["torch"].get("eval")
        add(f"eval images/s{spread_label}, batch {b}", j, t, "images_per_sec", ",.1f")
        labels = (
            "  peak device memory (GiB), eval",
            "  its matmuls alone (s per batch)",
            "  matmul share of the eval step",
            "  XLA GFLOP per eval image",
            "  achieved GFLOP/s (eval)",
        )
        step_rows(j, t, labels)
    columns = 4 if results["torch"] else 2  # no timm columns of '-' without --torch
    rows = [r[:columns] for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(columns)]
    lines = [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
        for r in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join([provenance(results), where(results), *lines])


def provenance(results: dict[str, Any]) -> str:
    """One line: the code (commit, uncommitted changes), when it started (UTC) and the load then."""
    load, cores = results["machine"]["loadavg_at_start"], results["machine"]["cores"]
    load_text = "" if load is None else f", load {load[0]:.2f} on {cores} CPUs"
    return (
        f"swin-flax {measure.git_text(results['git'])}, started {results['started_utc']}{load_text}"
    )


def where(results: dict[str, Any]) -> str:
    """One line: what was timed (the config's compute dtype, remat and scan_blocks, the timed steps
    after the two warm-ups, of which the median and the min-max are shown) and the devices each
    side ran on."""
    first = {
        side: next((r for r in results[side].values() if "device" in r), None)
        for side in ("jax", "torch")
    }
    c = results["config"]
    text = (
        f"compute dtype {c['dtype']}, remat {c['remat']}, scan_blocks {c['scan_blocks']}, "
        f"{results['steps']} timed step{'s' if results['steps'] > 1 else ''} after 2 warm-ups; "
        f"JAX on {first['jax']['device']}"
    )
    if first["torch"]:
        t = first["torch"]
        amp = ", autocast bfloat16" if t["autocast"] else ""
        text += f"; torch on {t['device']}{amp}, float32 matmuls '{t['float32_matmul_precision']}'"
    return text


def runs_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (step, N) of the many-runs measurements: N = 1 is the plain phase's result."""
    rows = []
    steps = [(f"train_{b}", "train", b) for b in results["batches"]]
    if "eval" in results["jax"]:
        steps.append(("eval", "eval", results["eval_batch"]))
    for key, step, batch in steps:
        one = results["jax"][key]["step_seconds_median"]
        for n in results["num_runs"]:
            r = results["jax"][key if n == 1 else f"{key}_runs_{n}"]
            sec = r["step_seconds_median"]
            rows.append(
                {
                    "step": step,
                    "batch": batch,
                    "num_runs": n,
                    "step_seconds_median": sec,
                    "images_per_sec": r["images_per_sec"],
                    "images_per_sec_per_run": r["images_per_sec_per_run"],
                    "step_over_one_run": sec / one,
                    "step_over_n_single_runs": sec / (n * one),
                    "peak_rss_gib": r["peak_rss_gib"],
                    "peak_device_gib": r.get("peak_device_gib"),
                }
            )
    return rows


def runs_table(rows: list[dict[str, Any]]) -> str:
    """The many-runs rows as text; the device memory column only where JAX reports it."""
    device = any(r["peak_device_gib"] is not None for r in rows)
    cols = [
        ("step, runs", lambda r: f"{r['step']} {r['batch']}, N={r['num_runs']}"),
        ("step (s)", lambda r: f"{r['step_seconds_median']:.3f}"),
        ("images/s", lambda r: f"{r['images_per_sec']:,.1f}"),
        ("images/s per run", lambda r: f"{r['images_per_sec_per_run']:,.1f}"),
        ("step(N) / step(1)", lambda r: f"{r['step_over_one_run']:.2f}x"),
        ("step(N) / (N x step(1))", lambda r: f"{r['step_over_n_single_runs']:.2f}x"),
        ("peak host GiB", lambda r: f"{r['peak_rss_gib']:.2f}"),
    ]
    if device:
        cols.append(("peak device GiB", lambda r: f"{r['peak_device_gib']:.2f}"))
    cells = [[c[0] for c in cols]] + [[f(r) for _, f in cols] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
    lines = [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
        for row in cells
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(["many runs in one process (JAX, N seeds, the batch shared):", *lines])


def main(argv):
    del argv  # parse_flags refused stray arguments
    config = FLAGS.config
    if FLAGS.phase:  # a child: the parent checked the config and the flags
        if FLAGS.phase_batch is None or FLAGS.phase_out is None:
            cli.exit_user_error("--phase is internal: it needs --phase_batch and --phase_out.")
        result = run_phase(FLAGS.phase, config, FLAGS.phase_batch, FLAGS.phase_runs)
        with open(FLAGS.phase_out, "w") as f:
            json.dump(result, f)
        return
    cli.check_output_file("json", FLAGS.json)
    run_counts = sorted({1, *FLAGS.num_runs})
    for n in run_counts:
        measure.check_config(measure.with_runs(config, n))
    if config.num_runs != 1 or any(config.sweep.values()):
        print(
            f"[benchmark] config.num_runs={config.num_runs} and config.sweep are not used: "
            f"it times {' and '.join(map(str, run_counts))} seed(s) of one run in one process "
            "(--num_runs).",
            flush=True,
        )
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
        "transparent_hugepage": measure.transparent_hugepage_mode(),
        "torch_tf32": FLAGS.torch_tf32,
        "floor": FLAGS.floor,
        "git": measure.git_state(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
        "started_utc": measure.utc_now(),
        "machine": machine(),
        "versions": versions(FLAGS.torch),
        "jax": {},
        "torch": {},
        "complete": False,
    }
    print(f"[benchmark] {provenance(results)}", flush=True)
    load = results["machine"]["loadavg_at_start"]
    warning = measure.load_warning(load and load[0], os.cpu_count() or 1)
    if warning:
        print(f"[benchmark] {warning}", flush=True)

    def measure_phase(side: str, key: str, phase: str, batch: int, num_runs: int = 1) -> None:
        """One child's figures into results[side][key]; --json rewritten, so a run stopped
        part-way (a device command's time limit) keeps what it measured."""
        results[side][key] = spawn(phase, batch, child_argv, num_runs)
        if FLAGS.json:
            save(results, FLAGS.json)

    for b in batches:
        measure_phase("jax", f"train_{b}", "jax-train", b)
        if FLAGS.torch:
            measure_phase("torch", f"train_{b}", "torch-train", b)
        for n in run_counts[1:]:
            measure_phase("jax", f"train_{b}_runs_{n}", "jax-train", b, n)
    if FLAGS.eval_batch:
        measure_phase("jax", "eval", "jax-eval", FLAGS.eval_batch)
        if FLAGS.torch:
            measure_phase("torch", "eval", "torch-eval", FLAGS.eval_batch)
        for n in run_counts[1:]:
            measure_phase("jax", f"eval_runs_{n}", "jax-eval", FLAGS.eval_batch, n)
    results["machine"]["loadavg_at_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    results["complete"] = True
    text = table(results)
    if len(run_counts) > 1:
        results["num_runs"] = run_counts
        results["runs"] = runs_rows(results)
        text += "\n\n" + runs_table(results["runs"])
    print(text)
    if FLAGS.json:
        save(results, FLAGS.json)
        print(f"wrote {FLAGS.json}")


def save(results: dict[str, Any], path: str) -> None:
    """Writes `results` to `path` whole or not at all (a temporary file renamed over it)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(results, f, indent=2)
    os.replace(tmp, path)


if __name__ == "__main__":
    cli.run(main)
