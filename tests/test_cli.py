"""swin_flax.cli: where the entry point puts JAX's persistent compilation cache, which log lines the
console shows, and Ctrl-C."""

import logging
import os
import subprocess
import sys

from swin_flax import cli


def test_compilation_cache_flag_wins_then_jax_environment_then_workdir():
    env = {"JAX_COMPILATION_CACHE_DIR": "/shared/xla"}
    assert cli.compilation_cache_dir("/mine", "runs/a", env) == "/mine"
    assert cli.compilation_cache_dir("", "runs/a", env) == ""  # '' turns the cache off
    assert cli.compilation_cache_dir(None, "runs/a", env) is None  # JAX reads its variable itself
    assert cli.compilation_cache_dir(None, "runs/a/", {}) == "runs/a/compilation_cache"
    assert cli.compilation_cache_dir(None, "gs://b/run", {}) == "gs://b/run/compilation_cache"


def _record(pathname: str, level: int) -> logging.LogRecord:
    return logging.LogRecord("absl", level, pathname, 1, "a line", None, None)


def test_console_keeps_the_project_lines_and_every_warning_but_not_other_libraries_info():
    keep = cli._ProjectLines()
    ours = os.path.join(os.path.dirname(cli.__file__), "train.py")
    orbax = "/venv/lib/python3.11/site-packages/orbax/checkpoint/future.py"
    assert keep.filter(_record(ours, logging.INFO))
    assert not keep.filter(_record(orbax, logging.INFO))
    assert keep.filter(_record(orbax, logging.WARNING)) and keep.filter(
        _record(orbax, logging.ERROR)
    )


def test_ctrl_c_during_imports_is_one_line_and_exit_130(tmp_path):
    """cli.start() first: a KeyboardInterrupt anywhere later (here: an import) ends quietly."""
    script = tmp_path / "script.py"
    script.write_text(
        "from swin_flax import cli\ncli.start()\nimport os, signal\n"
        "os.kill(os.getpid(), signal.SIGINT)\nimport json\n"
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 130
    assert out.stderr.strip() == "Interrupted (Ctrl-C)." and "Traceback" not in out.stderr
