"""Every entry point in scripts/: a bad argument ends with one paragraph saying what to do and exit
status 2, no traceback and nothing written; Ctrl-C during start-up ends with one line and exit
status 130. Also the cases of summary.py and show_augmentations.py (docs/errors.md, "Other entry
points"); those of the other scripts are in test_evaluate.py, test_predict.py and test_benchmark.py.

Every script runs as a subprocess in an empty folder, which must still be empty afterwards.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

# Every test here starts scripts as subprocesses: all are left out of `make test-fast`.
pytestmark = pytest.mark.slow

REPO = pathlib.Path(__file__).resolve().parents[1]
DEMO = str(REPO / "configs" / "demo.py")

# A bad argument for each entry point: scripts/*.py and the commands in scripts/bench/ (the fixture
# generators in scripts/fixtures/ need torch and are not entry points of the package).
BAD_ARGUMENT = {
    "main.py": ["--config", DEMO, "--workdir", "run", "--config.num_epochs=zero"],
    "evaluate.py": ["--workdir", "no_such_run", "--json", "scores.json"],
    "predict.py": ["--workdir", "no_such_run"],  # no image
    "summary.py": ["--config", DEMO, "--config.model.embed_dimm=3"],
    "show_augmentations.py": ["--config", DEMO, "--count=0", "--out", "grid.png"],
    "benchmark.py": ["--config", DEMO, "--batch=0", "--json", "results.json"],
    "benchmark_input.py": ["--config", DEMO, "--devices=0", "--json", "results.json"],
    "bench/benchmark_blocks.py": ["--stage=4"],
    "bench/benchmark_matmul.py": ["--config", DEMO, "--batch=0", "--json", "results.json"],
    "bench/benchmark_variants.py": ["--config", DEMO, "--variant", "remat=sometimes"],
    "export.py": ["--workdir", "no_such_run", "--layout=keras", "--out", "swin.npz"],
}

# Good arguments, with which each script imports JAX or TensorFlow for a few seconds.
BUSY = {
    "main.py": ["--config", DEMO, "--workdir", "run"],
    "evaluate.py": ["--workdir", "run"],
    "predict.py": ["--workdir", "run", "cat.png"],
    "summary.py": ["--config", DEMO],
    "show_augmentations.py": ["--config", DEMO, "--out", "grid.png"],
    "benchmark.py": ["--config", DEMO, "--json", "results.json"],
    "benchmark_input.py": ["--config", DEMO],
    "bench/benchmark_blocks.py": [],
    "bench/benchmark_matmul.py": ["--config", DEMO],
    "bench/benchmark_variants.py": ["--config", DEMO, "--variant", "remat=none"],
    "export.py": ["--workdir", "run", "--out", "swin.npz"],
}


def entry_points() -> list[str]:
    """Paths under scripts/: every script there and the benchmark_*.py commands of scripts/bench/
    (its other modules are the commands' helpers)."""
    scripts = REPO / "scripts"
    found = [*scripts.glob("*.py"), *scripts.glob("bench/benchmark_*.py")]
    return sorted(str(p.relative_to(scripts)) for p in found)


def script_env() -> dict[str, str]:
    return {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "CUDA_VISIBLE_DEVICES": "",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
    }


def run_script(name: str, *args: str, cwd: pathlib.Path, timeout: float = 180):
    """`python scripts/NAME ARGS` in `cwd` (NAME: a path under scripts/, e.g. bench/benchmark_blocks.py)."""
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / name), *args],
        cwd=cwd,
        env=script_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def snapshot(path: pathlib.Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under `path` with its size and mtime."""
    return {
        str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(path.rglob("*"))
    }


def clean_failure(out: subprocess.CompletedProcess) -> str:
    """Asserts exit status 2 and one paragraph ("Error: ...") on stderr, no traceback; returns the
    paragraph on one line."""
    err = out.stderr.strip()
    assert out.returncode == 2, (out.returncode, err[-3000:])
    assert "Traceback" not in err and err.startswith("Error: ") and "\n\n" not in err, err
    return " ".join(err.split())


def fails_cleanly(name: str, *args: str, cwd: pathlib.Path) -> str:
    """Runs the script, asserts a clean failure that leaves `cwd` as it was; returns the message."""
    before = snapshot(cwd)
    message = clean_failure(run_script(name, *args, cwd=cwd))
    assert snapshot(cwd) == before
    return message


@pytest.mark.parametrize("name", entry_points())
def test_every_entry_point_refuses_a_bad_argument(name, tmp_path):
    """The guard: a script added to scripts/ without a case here fails this test."""
    assert name in BAD_ARGUMENT, f"add a bad argument for scripts/{name} to BAD_ARGUMENT"
    fails_cleanly(name, *BAD_ARGUMENT[name], cwd=tmp_path)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("name", entry_points())
def test_every_entry_point_answers_help_with_its_usage_and_status_0(name, tmp_path):
    """--helpshort prints the script's docstring and flags on stdout and exits 0 (absl's own
    status is 1, which a shell or a make target takes for a failure)."""
    out = run_script(name, "--helpshort", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "--" in out.stdout and "Traceback" not in out.stderr
    # Every flag of this project (--helpfull groups flags by the module that defined them) is
    # listed by --helpshort, the help every error message points to.
    full = run_script(name, "--helpfull", cwd=tmp_path).stdout
    ours = [s for s in full.split("\n\n") if re.match(rf"((\S*/)?scripts/{name}|swin_flax\S*):", s)]
    own = set(re.findall(r"^  --(?:\[no\])?(\w+)", "\n".join(ours), re.M))
    assert own and own <= set(re.findall(r"^  --(?:\[no\])?(\w+)", out.stdout, re.M))
    assert not any(tmp_path.iterdir())


def test_main_refuses_an_empty_workdir_a_config_argument_and_a_cache_file(tmp_path):
    """--workdir= (an unset shell variable) would train into the current folder: refused."""
    message = fails_cleanly("main.py", "--config", DEMO, "--workdir=", cwd=tmp_path)
    assert "--workdir is empty" in message
    # A config file given an argument its get_config does not take: the cause, not its traceback.
    message = fails_cleanly("main.py", "--config", DEMO + ":64", "--workdir", "run", cwd=tmp_path)
    assert "TypeError: get_config() takes 0 positional arguments but 1 was given" in message
    (tmp_path / "cache").write_text("a file")
    message = fails_cleanly(
        "main.py", "--config", DEMO, "--workdir", "run", "--compilation_cache=cache", cwd=tmp_path
    )
    assert "--compilation_cache names a file: give a folder" in message


def _has_loaded_numpy(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/maps") as f:
            return "numpy" in f.read()
    except OSError:
        return False


def default_sigint() -> None:
    """In the child: SIGINT's default action, as in a terminal. A shell without job control
    starts background jobs with SIGINT ignored, and Python then never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/PID/maps")
@pytest.mark.parametrize("name", entry_points())
def test_ctrl_c_during_start_up(name, tmp_path):
    """SIGINT while the script imports its libraries (numpy, which only JAX and TensorFlow bring,
    is loaded: cli.start() has run) -> "Interrupted (Ctrl-C)." alone, exit status 130."""
    status, err = _signalled_during_start_up(name, signal.SIGINT, tmp_path)
    assert status == 130 and err.strip() == "Interrupted (Ctrl-C).", (status, err[-3000:])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/PID/maps")
def test_sigterm_during_start_up(tmp_path):
    """SIGTERM while main.py imports its libraries -> "Interrupted (SIGTERM)." alone and exit
    status 143 (128 + 15, a shell's figure for a process SIGTERM ended), nothing written."""
    status, err = _signalled_during_start_up("main.py", signal.SIGTERM, tmp_path)
    assert status == 143 and err.strip() == "Interrupted (SIGTERM).", (status, err[-3000:])


def _signalled_during_start_up(name: str, signum: int, cwd: pathlib.Path) -> tuple[int, str]:
    """(exit status, stderr) of scripts/NAME sent `signum` once it has loaded numpy; asserts it
    wrote nothing."""
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "scripts" / name), *BUSY[name]],
        cwd=cwd,
        env=script_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    )
    deadline = time.monotonic() + 60
    while proc.poll() is None and not _has_loaded_numpy(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert not any(cwd.iterdir())
    return proc.returncode, err


def test_a_second_signal_while_stopping_says_which(tmp_path):
    """A second SIGTERM while the loop stops after the first (it saves): one line that names it
    (not Ctrl-C) and says what is kept (here: no checkpoint yet), exit 130, no traceback."""
    code = (
        "from swin_flax import cli\ncli.start()\nimport os, signal\nfrom etils import epath\n"
        "from swin_flax import stop\nwith stop.StopFlag(epath.Path('latest').absolute()):\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n    os.kill(os.getpid(), signal.SIGTERM)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=script_env(), capture_output=True, text=True
    )
    assert out.returncode == 130, out.stderr[-3000:]
    assert out.stderr.strip().splitlines()[-1] == (
        "Interrupted (a second SIGTERM while stopping: no checkpoint was written yet; run the "
        "same command again to start it afresh)."
    ), out.stderr[-3000:]
    assert "Traceback" not in out.stderr


# --------------------------------------------------------------------------------------------------
# summary.py and show_augmentations.py
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def typo_config(tmp_path_factory) -> str:
    """A config file with a misspelt field."""
    path = tmp_path_factory.mktemp("configs") / "typo.py"
    path.write_text(
        "from swin_flax.config import default_config\n\n\ndef get_config():\n"
        "    c = default_config()\n    c.model.embed_dimm = 3\n    return c\n"
    )
    return str(path)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--config.model.embed_dimm=3"], "no such field 'embed_dimm'"),
        (
            ["--config.learning_rte=1"],
            "no such field 'learning_rte' (did you mean \"learning_rate\"",
        ),
        (["--config.sweep.embed_dim=(96,128)"], "--config.sweep.embed_dim: only learning_rate, "),
        (["--config.sweep.seed=(0,1)"], "seeds are not swept: --config.num_runs=N trains N runs"),
        (["--config.sweep.learningrate=(1,2)"], "in one process (did you mean learning_rate?): "),
        (["-config.sweep.seed=(0,1)"], "-config.sweep.seed: seeds are not swept"),  # absl: one dash
        (["--config.sweep.model.drop_path_rate=(0,0.1)"], "sweep.model.drop_path_rate: only"),
        (
            ["--config.learning_rate=4e-3", "--config.sweep.learning_rate=(1e-3,)"],
            "--config.learning_rate is given, but config.sweep.learning_rate (0.001,) sets every",
        ),
        (["--config.sweep.lr_min=(0.0,)", "--config.sweep.lr=(1e-3,)"], "--config.sweep.lr: only"),
        (["--config", "TYPO"], "unknown config field(s) config.model.embed_dimm"),
        (["--config", "missing.py"], "--config missing.py: no such config file"),
        (["--config", "."], "--config .: is a folder, not a config file."),
        (["--config", DEMO[:-3]], f"no such config file. Did you mean --config {DEMO}?"),
        (["--config.model.window_size=3"], "window_size=3 does not divide"),
        (["--depth=0"], "flag --depth=0: 0 is not a positive integer"),
        (["--batch_size=-1"], "flag --batch_size=-1: -1 is not a positive integer"),
        (["--config.randaugment=foo"], "'foo': must start with 'rand' (timm's RandAugment), e.g."),
        (["--config.randaugment=None"], "an empty string ('--config.randaugment=') turns it off."),
        (["--flagfile=no.txt"], "--flagfile cannot be read ([Errno 2] No such file or directory:"),
    ],
    ids=[
        "typo_flag",
        "typo_guess",
        "sweep_field",
        "sweep_seed",
        "sweep_typo",
        "sweep_seed_one_dash",
        "sweep_nested_field",
        "swept_field_also_given",
        "sweep_typo_after_a_valid_one",
        "typo_in_file",
        "missing_file",
        "a_folder",
        "without_py",
        "bad_model",
        "depth",
        "batch_size",
        "randaugment",
        "randaugment_none",
        "missing_flagfile",  # read by ml_collections as the script defines --config: no traceback
    ],  # fmt: skip
)
def test_summary_refuses(args, expected, typo_config, tmp_path):
    args = [typo_config if a == "TYPO" else a for a in args]
    config = [] if args[0] == "--config" else ["--config", DEMO]  # one config file: once
    message = fails_cleanly("summary.py", *config, *args, cwd=tmp_path)
    assert expected in message


def test_show_augmentations_draws_with_the_data_seed(tmp_path):
    """The picture follows config.data_seed (else config.seed), as training's data order and
    augmentation draws do: seed 1 with data_seed 0 draws what seed 0 alone draws; data_seed 1
    draws other pictures. On CIFAR files, whose images do not depend on a seed."""
    from tests import cifar_files  # noqa: PLC0415

    split = cifar_files.random_split(256)
    archive = cifar_files.cifar10_python_tarball(tmp_path / "c.tar.gz", split, split)
    pictures = {}
    for name, seeds in (
        ("a", ["--config.seed=0"]),
        ("b", ["--config.seed=1", "--config.data_seed=0"]),
        ("c", ["--config.data_seed=1"]),
    ):
        out = run_script(
            "show_augmentations.py", "--config", DEMO, f"--config.archive={archive}",
            "--config.dataset=cifar10", *seeds, "--count=8", f"--out={name}.png", cwd=tmp_path,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr[-3000:]
        assert out.stdout.startswith("data: ") and "wrote " + f"{name}.png: 8 images" in out.stdout
        pictures[name] = (tmp_path / f"{name}.png").read_bytes()
    assert pictures["a"] == pictures["b"] != pictures["c"]


def test_show_augmentations_of_a_run(tmp_path):
    """--workdir RUN draws with the run's config.json (its RandAugment, not a default), as
    summary.py shows a run's model; both --config and --workdir, neither, or a folder that is no
    run: one paragraph, nothing written."""
    import runpy  # noqa: PLC0415

    from etils import epath  # noqa: PLC0415

    from swin_flax import rundir  # noqa: PLC0415

    c = runpy.run_path(DEMO)["get_config"]()
    c.update(randaugment="rand-m7-n1", synthetic_train_examples=64, batch_size=16)
    rundir.write_config(c, epath.Path(tmp_path / "run"))
    out = run_script(
        "show_augmentations.py", "--workdir", "run", "--count=4", "--out=g.png", cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "wrote g.png: 4 images" in out.stdout and "RandAugment 'rand-m7-n1'" in out.stdout
    # --out is checked as every tool's output: not among the run's files; a replaced file is said.
    (tmp_path / "run" / "checkpoints").mkdir()
    inside = fails_cleanly(
        "show_augmentations.py", "--workdir", "run", "--out=run/checkpoints/g.png", cwd=tmp_path
    )
    assert "--out run/checkpoints/g.png is among the files of run" in inside
    out = run_script(
        "show_augmentations.py", "--workdir", "run", "--count=4", "--out=g.png", cwd=tmp_path
    )
    assert "wrote g.png (replacing the file there): 4 images" in out.stdout, out.stderr[-3000:]
    # A run whose archive moved since: --archive gives the new place.
    from tests import cifar_files  # noqa: PLC0415

    split = cifar_files.random_split(32)
    moved = cifar_files.cifar10_python_tarball(tmp_path / "moved.tar.gz", split, split)
    c.update(dataset="cifar10", archive=str(tmp_path / "gone.tar.gz"))
    rundir.write_config(c, epath.Path(tmp_path / "crun"))
    out = run_script(
        "show_augmentations.py", "--workdir", "crun", "--archive", "moved.tar.gz", "--count=4",
        "--out=m.png", cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith(f"data: CIFAR-10 from the archive {moved}"), out.stdout
    gone = fails_cleanly("show_augmentations.py", "--workdir", "crun", "--out=n.png", cwd=tmp_path)
    assert "gone.tar.gz does not exist (--archive)" in gone  # this tool's flag, not --config's
    (tmp_path / "notrun").mkdir()
    both_or_neither = "give --config FILE (a config's augmentation, e.g. configs/strong.py, with"
    for args, expected in (
        ([], both_or_neither),
        (["--workdir", "run", "--config", DEMO], both_or_neither),
        (
            ["--workdir", "notrun"],
            "--workdir notrun holds no config.json: give the folder of a run",
        ),
        (["--workdir", "nope"], "--workdir nope does not exist: give the folder of a run"),
    ):
        assert expected in fails_cleanly(
            "show_augmentations.py", *args, "--out=h.png", cwd=tmp_path
        )


def test_a_config_file_imports_another_from_its_folder(tmp_path):
    """As in flax's examples (`from configs import default`): a config file's folder is importable
    as a package, from any working directory."""
    folder = tmp_path / "myconfigs"
    folder.mkdir()
    shutil.copy(DEMO, folder / "base.py")
    (folder / "wide.py").write_text(
        "from myconfigs import base\n\n\ndef get_config():\n    c = base.get_config()\n"
        "    c.model.embed_dim = 48\n    return c\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = run_script("summary.py", "--config", str(folder / "wide.py"), cwd=elsewhere)
    assert out.returncode == 0, out.stderr[-3000:]
    assert re.search(r"patch_embed \(PatchEmbed\) +\[1, 64, 48\]", out.stdout), out.stdout[:2000]


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--count=0"], "flag --count=0: 0 is not a positive integer"),
        (["--cols=0"], "flag --cols=0: 0 is not a positive integer"),
        (["--scale=0"], "flag --scale=0: 0 is not an integer in the range [1, 32]"),
        (["--epoch=-1"], "flag --epoch=-1: -1 is not a non-negative integer"),
        (["--out=no_such_folder/grid.png"], "is not a file path in a folder that exists"),
        (["--out=grid.jpg"], "--out grid.jpg is not a .png file path"),
        (["--config.batch_size=0"], "config.batch_size: must be a positive integer, got 0."),
        (["--config", "TYPO"], "unknown config field(s) config.model.embed_dimm"),
        (
            ["--config.dataset=cifar10", "--config.archive=nope.tar.gz"],
            "archive nope.tar.gz does not exist",
        ),
        (["--archive=a.tar.gz"], "--archive gives a trained run's data (--workdir) a new place"),
    ],
    ids=[
        "count",
        "cols",
        "scale",
        "epoch",
        "out_folder",
        "out_not_png",
        "config",
        "typo_in_file",
        "missing_archive",
        "archive_without_workdir",
    ],
)
def test_show_augmentations_refuses(args, expected, typo_config, tmp_path):
    args = [typo_config if a == "TYPO" else a for a in args]
    config = [] if args[0] == "--config" else ["--config", DEMO]  # one config file: once
    message = fails_cleanly("show_augmentations.py", *config, *args, cwd=tmp_path)
    assert expected in message
