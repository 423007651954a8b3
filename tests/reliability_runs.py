"""Helpers for the reliability tests: tiny config files and `scripts/main.py` run as a subprocess.

The runs are real processes (signals, exit statuses, stderr), sharing a persistent XLA compilation
cache so that only the first run of a config pays for compiling it.
"""

from __future__ import annotations

import collections
import os
import pathlib
import subprocess
import sys

import numpy as np

from swin_flax import checkpoints

REPO = pathlib.Path(__file__).resolve().parents[1]
MAIN = str(REPO / "scripts" / "main.py")

# Fields of the tiny run (embed 16, depths (2, 1), 16x16 images: a few seconds per epoch on CPU).
TINY = {
    "dataset": "cifar10",
    "model.img_size": 16,
    "model.embed_dim": 16,
    "model.depths": (2, 1),
    "model.num_heads": (2, 4),
    "model.window_size": 4,
    "model.mlp_ratio": 2.0,
    "model.drop_path_rate": 0.1,
    "remat": "none",  # stages this shallow: 'none' compiles faster (test_swin tests each policy)
    "mix.cutmix_alpha": 1.0,
    "mix.switch_prob": 0.0,
    "schedule": "cosine_epoch",
    "warmup_epochs": 1,
    "warmup_lr_init": 1e-4,
    "cosine_epochs": 10,
    "batch_size": 8,
    "eval_batch_size": 8,
    "num_epochs": 3,
    "log_every_steps": 1,
    "prefetch_batches": 1,
}

# Runs scripts/main.py as `python -c DRIVER KILL_AT SIGNAL ARGS...`. With KILL_AT >= 0 the process
# sends itself SIGNAL while the input pipeline hands over training batch number KILL_AT (counted
# from 0 in this process); a SIGNAL that is a path instead renames the --workdir to it then.
# See test_reliability.test_preempt_and_resume_equals_uninterrupted.
DRIVER = """
import os, runpy, sys
from swin_flax.data import pipeline

kill_at, signum = int(sys.argv[1]), sys.argv[2]
workdir = next(a.partition("=")[2] for a in sys.argv if a.startswith("--workdir="))
real_train_dataset = pipeline.train_dataset


class SignalledDataset:
    def __init__(self, ds):
        self.ds = ds

    def as_numpy_iterator(self):
        for i, batch in enumerate(self.ds.as_numpy_iterator()):
            if i == kill_at and signum.isdigit():
                os.kill(os.getpid(), int(signum))
            elif i == kill_at:
                os.rename(workdir, signum)
            yield batch


pipeline.train_dataset = lambda *a, **k: SignalledDataset(real_train_dataset(*a, **k))
sys.argv = [sys.argv[3], *sys.argv[4:]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def write_config(path: pathlib.Path, archive: str | None, **fields) -> pathlib.Path:
    """A config file for --config: default_config() with `fields` ('model.depths': (2, 1), ...)."""
    lines = ["from swin_flax.config import default_config", "", "", "def get_config():"]
    lines.append("    c = default_config()")
    if archive is not None:
        lines.append(f"    c.archive = {str(archive)!r}")
    for k, v in fields.items():
        lines.append(f"    c.{k} = {v!r}")
    lines.append("    return c")
    path.write_text("\n".join(lines) + "\n")
    return path


def env(cache_dir: pathlib.Path | None, devices: int = 2, **extra: str) -> dict[str, str]:
    e = dict(os.environ)
    e.update(
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
        TF_CPP_MIN_LOG_LEVEL="2",
        CUDA_VISIBLE_DEVICES="",
        JAX_PLATFORMS="cpu",
    )
    if cache_dir is not None:
        e.update(
            JAX_COMPILATION_CACHE_DIR=str(cache_dir),
            JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
            JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
        )
    e.update(extra)
    return e


def main_args(config: pathlib.Path, workdir: pathlib.Path, *flags: str) -> list[str]:
    return [MAIN, f"--config={config}", f"--workdir={workdir}", *flags]


def command(args: list[str], kill_at: int = -1, signum: int | str = 15) -> list[str]:
    """`python scripts/main.py ARGS`, through DRIVER when a signal is to be sent (or the workdir
    renamed: `signum` a path)."""
    if kill_at < 0:
        return [sys.executable, *args]
    return [sys.executable, "-c", DRIVER, str(kill_at), str(signum), *args]


def run(args, *, env, kill_at=-1, signum=15, timeout=240, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        command(args, kill_at, signum),
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,
    )


def text(out: subprocess.CompletedProcess) -> str:
    """stderr with whitespace collapsed (messages are wrapped at 100 columns)."""
    return " ".join(out.stderr.split())


def _summary_values(workdir):
    """(step, value) of every summary value in the folder `workdir`'s events files (all
    sessions')."""
    import tensorflow as tf  # noqa: PLC0415

    for path in sorted(pathlib.Path(workdir).glob("events.out.tfevents.*")):  # not tf's glob:
        for event in tf.compat.v1.train.summary_iterator(str(path)):  # the name may hold [ or *
            for v in event.summary.value:
                yield event.step, v


def read_scalars(workdir) -> dict[str, dict[int, float]]:
    """Every scalar TensorBoard event under `workdir` (all sessions' files): {tag: {step: value}}."""
    import tensorflow as tf  # noqa: PLC0415

    out = {}
    for step, v in _summary_values(workdir):
        value = tf.make_ndarray(v.tensor) if v.HasField("tensor") else v.simple_value
        if np.ndim(value) == 0:  # scalars (images and hparams are skipped)
            out.setdefault(v.tag, {})[step] = float(value)
    return out


def read_hparams(workdir) -> dict[str, object] | None:
    """The hyper-parameters of TensorBoard's HParams tab written in the folder `workdir` (its
    session start), or None."""
    data = _hparams_plugin_data(workdir).get("session_start_info")
    if data is None:
        return None
    return {k: getattr(x, x.WhichOneof("kind")) for k, x in data.hparams.items()}


def count_points(workdir) -> collections.Counter:
    """How many times each (tag, step) was written in the folder `workdir`, over all its events
    files: hyper-parameters and images included."""
    return collections.Counter((v.tag, step) for step, v in _summary_values(workdir))


def read_session_status(workdir) -> str | None:
    """The HParams tab's Status of the run written in the folder `workdir` ('STATUS_SUCCESS', ...),
    or None when no session end was written."""
    from tensorboard.plugins.hparams import api_pb2  # noqa: PLC0415

    data = _hparams_plugin_data(workdir).get("session_end_info")
    return None if data is None else api_pb2.Status.Name(data.status)


def _hparams_plugin_data(workdir) -> dict:
    from tensorboard.plugins.hparams import plugin_data_pb2  # noqa: PLC0415

    out = {}
    for _, v in _summary_values(workdir):
        if v.tag.startswith("_hparams_/"):
            data = plugin_data_pb2.HParamsPluginData.FromString(v.metadata.plugin_data.content)
            out[v.tag.removeprefix("_hparams_/")] = getattr(data, data.WhichOneof("data"))
    return out


def restore_latest(workdir: pathlib.Path, which: str = "latest") -> tuple[dict, dict]:
    """The newest complete checkpoint of a workdir: (state as numpy arrays, meta)."""
    ckpts = checkpoints.Checkpoints(workdir, read_only=True)
    try:
        return ckpts.restore(which, None)
    finally:
        ckpts.close()


def assert_trees_equal(a, b) -> None:
    import jax  # noqa: PLC0415

    leaves_a, tree_a = jax.tree.flatten(a)
    leaves_b, tree_b = jax.tree.flatten(b)
    assert tree_a == tree_b
    for x, y in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
