"""The benchmarks: the FLOP count benchmark.py reads from XLA and the arithmetic of its figures
(scripts/bench/measure.py), the matmul floor's products and their dtype (scripts/bench/matmul.py),
benchmark.py's many-runs table and --nofloor (tiny runs), and every benchmark script's refusal of bad
arguments (the scripts themselves, as subprocesses). The torch side needs torch and timm, which the
project's venv lacks: it is not run here."""

import datetime
import importlib.util
import json
import os
import pathlib
import platform
import shutil
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import pytest

from configs import demo, strong
from scripts.bench import matmul, measure
from tests.test_entry_points import fails_cleanly, run_script

_REPO = pathlib.Path(__file__).resolve().parents[1]


def test_cost_flops_counts_a_matmul_as_2mnk():
    m, k, n = 64, 48, 16
    compiled = jax.jit(lambda a, b: a @ b).lower(jnp.ones((m, k)), jnp.ones((k, n))).compile()
    assert measure.cost_flops(compiled) == pytest.approx(2 * m * k * n, rel=0.01)


def test_time_steps_warms_up_twice_then_times_each_step():
    calls = []
    first_done, second, durations = measure.time_steps(lambda: calls.append(1), 3)
    assert len(calls) == 5 and len(durations) == 3 and second >= 0
    assert first_done > measure.process_start_time()


def test_summary_uses_the_median_step():
    out = measure.summarise(100, measure.process_start_time() + 1.0, 9.0, [1.0, 4.0, 2.0])
    assert out["images_per_sec"] == pytest.approx(50.0)
    assert out["start_to_first_step_s"] == pytest.approx(1.0, abs=0.05)
    assert out["peak_rss_gib"] > 0
    assert out["second_step_s"] == 9.0
    runs = measure.summarise(100, 0.0, 9.0, [1.0, 4.0, 2.0], num_runs=4)
    assert runs["images_per_sec"] == pytest.approx(200.0)  # 4 runs x 100 images per 2 s step
    assert runs["images_per_sec_per_run"] == pytest.approx(50.0)


def test_summary_gives_the_rate_of_the_slowest_and_the_fastest_step():
    """Beside the median: 100 images in 4 s (slowest) and in 1 s (fastest)."""
    out = measure.summarise(100, 0.0, 9.0, [1.0, 4.0, 2.0])
    assert out["images_per_sec_range"] == pytest.approx([25.0, 100.0])
    runs = measure.summarise(100, 0.0, 9.0, [1.0, 4.0, 2.0], num_runs=2)
    assert runs["images_per_sec_range"] == pytest.approx([50.0, 200.0])


def test_ratio_range_is_that_of_single_rounds():
    """B/A per round: 1.1/1.0, 1.8/2.0, 1.3/1.0; the medians' ratio (1.3/1.0) hides the 0.9."""
    lo, hi = measure.ratio_range([1.0, 2.0, 1.0], [1.1, 1.8, 1.3])
    assert (lo, hi) == pytest.approx((0.9, 1.3))


def test_load_warning_only_above_the_cpu_count():
    assert measure.load_warning(None, 2) is None  # no load average on this platform
    assert measure.load_warning(2.0, 2) is None
    warning = measure.load_warning(3.25, 2)
    assert "load average is 3.25 on 2 CPUs" in warning and "\n" not in warning


def _git(*args, cwd):
    cmd = ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=True).stdout


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_state_names_the_commit_and_uncommitted_changes(tmp_path, monkeypatch):
    _git("init", "-q", cwd=tmp_path)
    (tmp_path / "a.py").write_text("x = 1\n")
    _git("add", "a.py", cwd=tmp_path)
    _git("commit", "-q", "-m", "a", cwd=tmp_path)
    head = _git("rev-parse", "HEAD", cwd=tmp_path).strip()
    (tmp_path / "results.json").write_text("{}")  # untracked: not a change of the code
    assert measure.git_state(str(tmp_path)) == {"commit": head, "dirty": False}
    assert measure.git_text({"commit": head, "dirty": False}) == f"commit {head[:10]}"
    (tmp_path / "a.py").write_text("x = 2\n")
    assert measure.git_state(str(tmp_path)) == {"commit": head, "dirty": True}
    # Not a repository, and no git at all: unknown, and why (no exception).
    (tmp_path / "sub").mkdir()
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    state = measure.git_state(str(tmp_path / "sub"))
    assert state["commit"] is None and "not a git repository" in state["unknown_because"]
    assert measure.git_text(state).startswith("commit unknown (fatal: not a git repository")
    monkeypatch.setenv("PATH", str(tmp_path / "sub"))
    assert measure.git_state(str(tmp_path)) == {
        "commit": None,
        "dirty": None,
        "unknown_because": "git is not installed",
    }


def test_with_runs_trains_n_seeds_of_one_run():
    config = demo.get_config()
    config.sweep.learning_rate = (1e-3, 2e-3)
    runs = measure.with_runs(config, 3)
    assert runs.num_runs == 3 and not any(runs.sweep.values())
    assert config.num_runs == 1 and config.sweep.learning_rate  # the caller's config is left alone


def test_hugepage_env_sets_the_tunable_and_keeps_the_others():
    env = {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=0", "OTHER": "1"}
    out = measure.hugepage_env(env)
    assert out == {
        "GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1",
        "OTHER": "1",
    }
    assert env["GLIBC_TUNABLES"].endswith("hugetlb=0")  # the caller's dict is left alone
    assert measure.hugepage_env({})["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=1"


_MALLOC_PROBE = """
import ctypes
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
block = libc.malloc(64 << 20)
ctypes.memset(block, 1, 64 << 20)
with open("/proc/self/smaps_rollup") as f:
    print(next(int(line.split()[1]) for line in f if line.startswith("AnonHugePages")))
"""


def _huge_kib(env):
    out = subprocess.run([sys.executable, "-c", _MALLOC_PROBE], env=env, capture_output=True)
    return int(out.stdout)


@pytest.mark.skipif(
    not sys.platform.startswith("linux")
    or platform.libc_ver()[0] != "glibc"
    or tuple(int(v) for v in platform.libc_ver()[1].split(".")[:2]) < (2, 35)
    or measure.transparent_hugepage_mode() not in ("madvise", "always"),
    reason="needs glibc >= 2.35 and transparent huge pages in madvise or always mode",
)
def test_hugepage_env_gives_mallocs_huge_pages():
    """A plain malloc of 64 MiB in a child started with hugepage_env lands on 2 MiB pages; under
    THP `madvise` mode (where the tunable matters) it does not without."""
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    assert _huge_kib(measure.hugepage_env(env)) >= 32 << 10
    if measure.transparent_hugepage_mode() == "madvise":
        assert _huge_kib(env) == 0


def test_matmul_floor_counts_the_recipes_matmul_flops():
    """The products listed for one training step of the recipe's model come to the 0.96 GFLOP per
    training image counted for timm's Swin (3x the forward's ~0.32 GFLOP), and stage
    3's qkv appears 18 times in each of its three forms."""
    model = strong.get_config().model
    counts = matmul.step_products(model, 2)
    gflop = sum(matmul.flops(s) * n for s, n in counts.items()) / 2 / 1e9
    assert gflop == pytest.approx(0.96, abs=0.01)
    rows = 2 * 2 * 2  # images x the 2x2 token grid of stage 3
    assert counts[(1, rows, 384, 3 * 384, 1)] == 18  # qkv forward
    assert counts[(1, rows, 3 * 384, 384, 1)] == 18  # its input gradient
    assert counts[(1, 384, rows, 3 * 384, 2)] == 18  # its weight gradient


def test_matmul_floor_of_the_forward_is_a_third_of_the_step():
    model = strong.get_config().model
    train = matmul.step_products(model, 2)
    forward = matmul.step_products(model, 2, train=False)
    total = {
        k: sum(matmul.flops(s) * n for s, n in c.items()) for k, c in (("t", train), ("f", forward))
    }
    # every product but the patch embedding's (no input gradient) appears three times in training
    patch = 2 * (2 * 64) * 48 * 96
    assert total["t"] == pytest.approx(3 * total["f"] - patch)
    assert set(forward) <= set(train)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_the_floors_products_use_the_configs_dtype(dtype):
    """benchmark.py times the floor with matmul.timer(side, config.dtype): the JAX side's products
    are computed in that dtype (bfloat16 operands under --config.dtype=bfloat16), a plain and a
    batched one, each device with its share of the images (two CPU devices here: pmapped)."""
    n_dev = jax.local_device_count()
    for shape, per_device in (
        ((1, 8, 16, 4, 1), (8 // n_dev, 4)),  # m grows with the images
        ((4, 8, 16, 4, 0), (4 // n_dev, 8, 4)),  # batch grows with the images
    ):
        out = matmul.timer("jax", dtype)(shape)(2)  # a burst of two products returns the last
        assert out.dtype == jnp.dtype(dtype)
        assert out.shape == ((n_dev,) if n_dev > 1 else ()) + per_device
    torch_timer = matmul.timer("torch", dtype)  # torch is not imported until a timer is made
    assert torch_timer.func is matmul.torch_timer and torch_timer.keywords == {"dtype": dtype}


@pytest.mark.parametrize("train", [True, False])
def test_xla_flops_per_image_cover_the_models_matmuls(train):
    """The FLOPs the benchmark reads from XLA (step lowered from shapes only) cover the matmul FLOPs
    counted by hand (matmul.step_products), plus a share for the element-wise work; the
    demo model is small enough for that share to be about a quarter."""
    config = demo.get_config()
    xla = measure.jax_flops_per_image(config, 16, train=train)
    by_hand = sum(
        matmul.flops(s) * n for s, n in matmul.step_products(config.model, 16, train).items()
    )
    assert by_hand / 16 < xla < 1.35 * by_hand / 16


@pytest.mark.slow  # a subprocess that imports benchmark.py, JAX and the model
def test_the_benchmarked_step_is_built_without_tensorflow():
    """benchmark.py's JAX side (swin_flax.build, steps, the model, the configs) never imports
    TensorFlow, so it runs on accelerator machines that have JAX but no TensorFlow."""
    probe = (
        "import sys; sys.path.insert(0, 'scripts'); import benchmark; "
        "from swin_flax import build, steps; import configs.strong; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tensorflow_datasets')))"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=_REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


# The smallest Swin the config allows: one stage of one block, a 4x4 token grid.
_TINY = [
    "--config.model.img_size=16",
    "--config.model.embed_dim=16",
    "--config.model.depths=(1,)",
    "--config.model.num_heads=(2,)",
    "--config.model.mlp_ratio=2.0",
]


@pytest.mark.slow  # benchmark.py and its two measuring children (one run, two runs)
def test_many_runs_table_and_json(tmp_path):
    """--num_runs 1 2: a child process per N; the JSON's rows and the printed table agree with the
    phases' own step times (images/s in total = N x batch / step, per run = batch / step, the
    ratios to one run's step), each N with its own peak memory; N > 1 skips the floor and FLOPs."""
    args = ["--config", str(_REPO / "configs" / "demo.py"), *_TINY, "--batch=2", "--eval_batch=0"]
    args += ["--steps=1", "--num_runs=1", "--num_runs=2", "--json=r.json"]
    out = run_script("benchmark.py", *args, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads((tmp_path / "r.json").read_text())
    assert results["num_runs"] == [1, 2]
    one, two = results["jax"]["train_2"], results["jax"]["train_2_runs_2"]
    assert (one["num_runs"], two["num_runs"]) == (1, 2)
    assert "flops_per_image" in one and "matmul_floor_s" not in two
    rows = results["runs"]
    assert [(r["step"], r["batch"], r["num_runs"]) for r in rows] == [
        ("train", 2, 1),
        ("train", 2, 2),
    ]
    for row, phase in zip(rows, (one, two)):
        sec, n = phase["step_seconds_median"], row["num_runs"]
        assert row["step_seconds_median"] == sec
        assert row["images_per_sec"] == pytest.approx(n * 2 / sec)
        assert row["images_per_sec_per_run"] == pytest.approx(2 / sec)
        assert row["step_over_one_run"] == pytest.approx(sec / one["step_seconds_median"])
        assert row["step_over_n_single_runs"] == pytest.approx(row["step_over_one_run"] / n)
        assert row["peak_rss_gib"] == phase["peak_rss_gib"] > 0
        assert row["peak_device_gib"] is None  # CPU: host memory only
    assert "train images/s, batch 2 " in out.stdout  # one timed step: no min-max to give
    table = out.stdout[out.stdout.index("many runs in one process") :].splitlines()
    assert "step(N) / (N x step(1))" in table[1] and "peak host GiB" in table[1]
    for line, row in zip(table[3:5], rows):
        cells = line.split()
        assert cells[:3] == ["train", "2,", f"N={row['num_runs']}"]
        assert cells[3:] == [
            f"{row['step_seconds_median']:.3f}",
            f"{row['images_per_sec']:,.1f}",
            f"{row['images_per_sec_per_run']:,.1f}",
            f"{row['step_over_one_run']:.2f}x",
            f"{row['step_over_n_single_runs']:.2f}x",
            f"{row['peak_rss_gib']:.2f}",
        ]


@pytest.mark.slow  # benchmark.py and its two measuring children (train, eval)
def test_nofloor_measures_the_steps_only(tmp_path):
    """--nofloor: the steps' figures without the matmul floor and FLOP count (in the JSON and the
    table); the table says where each side ran and in what dtype, no device-memory row on the CPU;
    the JSON is marked complete and gives each child's seconds. What tells two results apart: the
    JSON and the header name the commit and the start time (UTC), the header the load, remat,
    scan_blocks and the timed steps; each images/s has its steps' min-max beside it."""
    args = ["--config", str(_REPO / "configs" / "demo.py"), *_TINY, "--batch=2", "--eval_batch=2"]
    args += ["--steps=3", "--nofloor", "--config.dtype=bfloat16", "--config.remat=full"]
    before = time.time()
    out = run_script("benchmark.py", *args, "--json=r.json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads((tmp_path / "r.json").read_text())
    assert results["complete"] and results["floor"] is False
    for phase in (results["jax"]["train_2"], results["jax"]["eval"]):
        assert phase["images_per_sec"] > 0 and phase["child_seconds"] > 0
        assert phase["device"].startswith("cpu: ") and phase["peak_device_gib"] is None
        assert not {"matmul_floor_s", "matmul_share", "flops_per_image"} & set(phase)
    started = datetime.datetime.strptime(results["started_utc"], "%Y-%m-%dT%H:%M:%SZ")
    assert before - 1 <= started.replace(tzinfo=datetime.UTC).timestamp() <= time.time()
    head = _git("rev-parse", "HEAD", cwd=_REPO).strip()
    assert results["git"]["commit"] == head and isinstance(results["git"]["dirty"], bool)
    lines = out.stdout.splitlines()
    assert lines[0].startswith(f"[benchmark] swin-flax commit {head[:10]}")
    table = lines[lines.index(lines[0].removeprefix("[benchmark] ")) :]  # the table's header
    assert f"started {results['started_utc']}, load " in table[0]
    assert table[1].startswith(
        "compute dtype bfloat16, remat full, scan_blocks True, 3 timed steps after 2 warm-ups; "
        "JAX on cpu: "
    )
    for row, phase in (("train", "train_2"), ("eval", "eval")):
        seconds = results["jax"][phase]["step_seconds"]
        median, lo, hi = (2 / statistics.median(seconds), 2 / max(seconds), 2 / min(seconds))
        cells = next(x for x in table if x.startswith(f"{row} images/s (min-max), batch 2"))
        assert cells.endswith(f"{median:,.1f} ({lo:,.1f}-{hi:,.1f})")
    for absent in ("its matmuls alone", "XLA GFLOP", "peak device memory"):
        assert absent not in out.stdout
    assert "timm" not in out.stdout  # without --torch no timm columns of '-'
    assert not (tmp_path / "r.json.tmp").exists()


_HAS_TORCH = all(importlib.util.find_spec(m) for m in ("torch", "timm"))
_CONFIGURED = (
    "benchmark.py",
    "benchmark_input.py",
    "bench/benchmark_matmul.py",
)  # they take --config


# Bad arguments of the benchmark scripts: (script, arguments, the message says).
BAD_ARGUMENTS = {
    "benchmark-batch": (
        "benchmark.py",
        ["--batch=0"],
        "flag --batch=0: 0 is not a positive integer",
    ),
    "benchmark-eval_batch": ("benchmark.py", ["--eval_batch=-1"], "-1 is not a non-negative"),
    "benchmark-steps": ("benchmark.py", ["--steps=0"], "flag --steps=0: 0 is not a positive"),
    "benchmark-num_runs": (
        "benchmark.py",
        ["--num_runs=1", "--num_runs=0"],
        "flag --num_runs=0: 0 is not a positive integer",
    ),
    "benchmark-threads": ("benchmark.py", ["--threads=0"], "flag --threads=0: 0 is not a positive"),
    "benchmark-json": ("benchmark.py", ["--json=no/r.json"], "not a file path in a folder that"),
    "benchmark-config_typo": ("benchmark.py", ["--config.model.embed_dimm=3"], "no such field"),
    "benchmark-config_model": (
        "benchmark.py",
        ["--config.model.window_size=3"],
        "config.model: window_size=3 does not divide",
    ),
    "benchmark-batch_devices": (
        "benchmark.py",
        ["--batch=4", "--batch=3"],
        "batch sizes [4, 3, 256] must be multiples of the 2 local devices",
    ),
    "benchmark-torch": ("benchmark.py", ["--torch"], "--torch needs torch and timm"),
    "input-devices": ("benchmark_input.py", ["--devices=0"], "flag --devices=0: 0 is not a"),
    "input-epochs_worth": ("benchmark_input.py", ["--epochs-worth=0"], "must be > 0"),
    "input-epochs_worth_inf": ("benchmark_input.py", ["--epochs-worth=inf"], "> 0 and finite"),
    "input-batch_devices": (
        "benchmark_input.py",
        ["--devices=3"],
        "config.batch_size: 128 is not divisible by the 3",
    ),
    "input-json": ("benchmark_input.py", ["--json=no/r.json"], "not a file path in a folder"),
    "input-archive": (
        "benchmark_input.py",
        ["--config.dataset=cifar10", "--config.archive=nope.tar.gz"],
        "archive nope.tar.gz does not exist",
    ),
    "blocks-stage": ("bench/benchmark_blocks.py", ["--stage=4"], "--stage must be 1, 2 or 3."),
    "blocks-batch": (
        "bench/benchmark_blocks.py",
        ["--batch=0"],
        "flag --batch=0: 0 is not a positive",
    ),
    "blocks-depth": (
        "bench/benchmark_blocks.py",
        ["--depth=-1"],
        "-1 is not a non-negative integer",
    ),
    "matmul-batch": (
        "bench/benchmark_matmul.py",
        ["--batch=0"],
        "flag --batch=0: 0 is not a positive",
    ),
    "matmul-batch_devices": (
        "bench/benchmark_matmul.py",
        ["--batch=3"],
        "batch sizes [3] must be multiples of the 2 local devices",
    ),
    "matmul-json": (
        "bench/benchmark_matmul.py",
        ["--json=."],
        "--json . is a folder: give a file path in it",
    ),
    "matmul-torch": ("bench/benchmark_matmul.py", ["--torch"], "--torch needs torch"),
}


@pytest.mark.slow  # each case runs a benchmark script as a subprocess
@pytest.mark.parametrize("case", BAD_ARGUMENTS)
def test_benchmarks_refuse_bad_arguments(case, tmp_path):
    """Each bad argument of the benchmark scripts: one paragraph, exit status 2, before anything
    is measured or compiled (benchmark.py's first child checks the batches against the devices,
    which only a process that initialises JAX can count), and no --json written."""
    script, args, expected = BAD_ARGUMENTS[case]
    if "--torch" in args and _HAS_TORCH:
        pytest.skip("torch and timm are installed here")
    config = ["--config", str(_REPO / "configs" / "demo.py")] if script in _CONFIGURED else []
    json_out = ["--json=results.json"] if script != "bench/benchmark_blocks.py" else []
    message = fails_cleanly(script, *config, *json_out, *args, cwd=tmp_path)
    assert expected in message
    assert not any(tmp_path.iterdir())


def test_variant_overrides_take_each_fields_type():
    """benchmark_variants.py's --variant: field=value items, nested fields dotted, values read as
    the field's type (a tuple's commas stay in its value); the base config is left unchanged."""
    base = strong.get_config()
    c = measure.with_overrides(
        base, "remat=none,scan_blocks=False,model.depths=(2, 2, 6),learning_rate=2e-3"
    )
    assert (c.remat, c.scan_blocks, c.model.depths, c.learning_rate) == (
        "none",
        False,
        (2, 2, 6),
        2e-3,
    )
    assert (base.remat, base.model.depths) == ("dots", (2, 2, 18))


@pytest.mark.parametrize("bad", ["remat", "no_such_field=1", "model.depths=(2,"])
def test_variant_overrides_refuse_with_one_paragraph(bad, capsys):
    with pytest.raises(SystemExit) as e:
        measure.with_overrides(strong.get_config(), bad)
    assert e.value.code == 2
    assert "--variant" in capsys.readouterr().err


@pytest.mark.slow  # benchmark_input.py as a subprocess
@pytest.mark.parametrize(
    "epochs_worth, per_epoch", [("0.25", [64]), ("1.5", [256, 128]), ("2", [256, 256])]
)
def test_benchmark_input_times_the_same_batches_in_both_parts(tmp_path, epochs_worth, per_epoch):
    """--epochs-worth of the demo config's own synthetic set (256 images, batch 64: 4 steps an
    epoch): the datasets per epoch (the last cut short where the value is not whole) and the
    joined dataset time the same images, so 'train overall' compares like with like. The eval
    rate counts the 100 test images, not the 28 blank ones padding its last batch of 64."""
    args = ["--config", str(_REPO / "configs" / "demo.py"), f"--epochs-worth={epochs_worth}"]
    args += ["--config.synthetic_train_examples=256", "--config.synthetic_test_examples=100"]
    args += ["--config.batch_size=64", "--config.eval_batch_size=64", "--json=r.json"]
    out = run_script("benchmark_input.py", *args, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads((tmp_path / "r.json").read_text())
    train = results["train"]
    assert [r["images"] for r in train["dataset_per_epoch"]] == per_epoch
    assert train["one_dataset"]["images"] == sum(per_epoch)
    line = next(x for x in out.stdout.splitlines() if x.startswith("train, one dataset for"))
    assert line.startswith(f"train, one dataset for {epochs_worth} epoch")
    assert ("then" in line) == (sum(per_epoch) > 64)  # no rate after a lone first batch
    assert results["eval"]["images"] == 100 and results["eval"]["batches"] == 2
    line = next(x for x in out.stdout.splitlines() if x.startswith("eval: "))
    assert line.startswith("eval: 100 images in ") and "28 padding images" in line


@pytest.mark.slow  # benchmark_variants.py as a subprocess: two tiny steps compiled and alternated
def test_benchmark_variants_gives_the_range_of_the_per_round_ratios(tmp_path):
    """Beside the ratio of the medians, the smallest and largest ratio of single rounds, read
    from the steps each variant printed (the first variant's is 1 in every round)."""
    args = ["--config", str(_REPO / "configs" / "demo.py"), *_TINY, "--batch=2", "--rounds=3"]
    out = run_script(
        "bench/benchmark_variants.py", *args, "--variant=remat=none", "--variant=remat=full",
        cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    head = next(x for x in lines if x.startswith("| variant"))
    assert head.split(" | ")[2:4] == ["ratio", "ratio per round (min-max)"]
    times = {}
    for x in lines:
        name, _, steps = x.partition(": ")
        if name in ("remat=none", "remat=full"):
            times[name] = [float(t) for t in steps.split()]
    rows = {
        x.split(" | ")[0].strip("| "): x.split(" | ") for x in lines if x.startswith("| remat=")
    }
    assert rows["remat=none"][3] == "1.000-1.000"
    ratios = [b / a for a, b in zip(times["remat=none"], times["remat=full"], strict=True)]
    lo, hi = (float(v) for v in rows["remat=full"][3].split("-"))
    assert len(ratios) == 3  # the printed steps have 4 digits, the range 3 decimals
    assert (lo, hi) == pytest.approx((min(ratios), max(ratios)), rel=0.01, abs=0.002)
