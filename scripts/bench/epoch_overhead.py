"""What train.py's loop blocks the host for once per epoch, outside the train steps: checkpointing
(`latest` and `best`), the evaluation, the metric read-back and the epoch's report, with
synchronous and asynchronous checkpoint writes.

    python scripts/bench/epoch_overhead.py --config configs/strong.py
    python scripts/bench/epoch_overhead.py --config configs/strong.py --mode async --epochs 8

Each epoch runs the loop's own pieces (swin_flax.train) on the config's real train state (the
recipe's: 383 MiB of params and AdamW moments, the moments filled with noise as after training):
the train metrics' read-back and NaN check, the evaluation of a small synthetic test set through
the real eval pipeline, the TensorBoard report, the host copy of the state with its finiteness
check, then the two saves of an epoch with a new best test accuracy (the costliest case). The wait
for the previous epoch's writes, which `save` would do first, is timed apart (through
`Checkpoints.latest_step`, which waits for them). The epoch's train steps are a sleep of
--train_seconds: the device's time, during which an asynchronous write goes on (0.4 s is the whole
epoch at the GPU goal: 300 epochs in 2 minutes). Medians over the epochs after the first; the
final wait for the writes in flight (`close`) is shown once. --markdown also writes the table,
with the date and the command, to a file.
"""

from __future__ import annotations

from swin_flax import cli  # standard library and absl only

cli.start()

import contextlib  # noqa: E402
import datetime  # noqa: E402
import io  # noqa: E402
import itertools  # noqa: E402
import os  # noqa: E402
import shlex  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from absl import flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Path to a config file, e.g. configs/strong.py.")
flags.DEFINE_enum("mode", "both", ["both", "sync", "async"], "Checkpoint writes to time.")
flags.DEFINE_integer("epochs", 6, "Epochs per mode (the first is not counted).", lower_bound=2)
flags.DEFINE_float(
    "train_seconds", 0.4, "Sleep standing for an epoch's train steps.", lower_bound=0
)
flags.DEFINE_integer(
    "eval_images", 256, "Synthetic test images evaluated each epoch.", lower_bound=1
)
flags.DEFINE_integer("eval_batch", 128, "Evaluation batch size.", lower_bound=1)
flags.DEFINE_string("markdown", None, "Also write the table (with date and command) to this file.")
flags.mark_flags_as_required(["config"])

ROWS = [  # (key, label)
    ("metrics", "train metrics read-back and NaN check"),
    ("eval", "evaluation"),
    ("report", "report (TensorBoard scalars, flush, epoch line)"),
    ("host_copy", "host copy of the state and its finiteness check"),
    ("wait", "wait for the previous epoch's writes"),
    ("save_best", "save `best`, params only (start its write)"),
    ("save_latest", "save `latest` (start its write)"),
]


@contextlib.contextmanager
def _quiet():
    """No INFO lines (the epoch line also goes to the log)."""
    level = logging.get_verbosity()
    logging.set_verbosity(logging.WARNING)
    try:
        yield
    finally:
        logging.set_verbosity(level)


def _epochs(config, mode: str, workdir: str, state, pieces) -> tuple[list[dict], float]:
    """Runs --epochs epochs of the loop's pieces with `mode` writes; (per-epoch seconds, close)."""
    import numpy as np  # noqa: PLC0415
    from etils import epath  # noqa: PLC0415

    from swin_flax import checkpoints, progress, reports, runs, train  # noqa: PLC0415
    from swin_flax.data import inputs  # noqa: PLC0415

    p_eval_step, data, train_metrics, per_epoch = pieces
    ckpts = checkpoints.Checkpoints(workdir, config.keep_checkpoints, asynchronous=mode == "async")
    writers = reports.Writers(epath.Path(workdir), runs.run_set(config), True, fresh=False)
    done = progress.Progress()
    times = []
    eval_batches = inputs.eval_batches(config, data)  # as train.py: built once
    for epoch in range(FLAGS.epochs):
        time.sleep(FLAGS.train_seconds)  # the epoch's steps, on the device
        step = (epoch + 1) * per_epoch
        t = {"start": time.perf_counter()}
        train_values = train._check_finite(train_metrics, epoch, ckpts, ["run"])
        t["metrics"] = time.perf_counter()
        test = train.evaluate_params(p_eval_step, state.params, eval_batches)
        t["eval"] = time.perf_counter()
        improved = np.array([True])  # the costliest epoch: both series written
        done.improved(test["accuracy"], epoch + 1)
        with contextlib.redirect_stdout(io.StringIO()), _quiet():
            reports.report_epoch(
                config, writers, epoch + 1, step, train_values, test, np.array([1e-3]),
                np.asarray(done.best_accuracy), improved,
                {"epoch_time": 1.0, "images_per_sec": 1.0, "steps_per_sec": 1.0, "eval_time": 1.0},
            )  # fmt: skip
        meta = done.record(config, epoch + 1, step, per_epoch, 1.0)
        t["report"] = time.perf_counter()
        host_state = train._finite_host_state(state, step, epoch, ckpts, [""])  # one run
        t["host_copy"] = time.perf_counter()
        for which in checkpoints.SERIES:  # what `save` would wait for first
            ckpts.latest_step(which)
        t["wait"] = time.perf_counter()
        best = checkpoints.as_dtype(host_state["params"], config.best_params_dtype)
        ckpts.save("best", step, {"params": best}, meta)  # best/ first, as the loop saves them
        t["save_best"] = time.perf_counter()
        ckpts.save("latest", step, host_state, meta)
        t["save_latest"] = time.perf_counter()
        keys = ["start", *(k for k, _ in ROWS)]
        times.append({b: t[b] - t[a] for a, b in itertools.pairwise(keys)})
        del host_state
    start = time.perf_counter()
    ckpts.close()
    close = time.perf_counter() - start
    writers.close()
    return times[1:], close


def _pieces(config):
    """The replicated train state of the config, the pmapped eval step, a synthetic data set and a
    train-metrics collection merged over one epoch's steps (on the device, as train_epoch leaves
    it)."""
    import jax  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415

    from swin_flax import build, runs, steps  # noqa: PLC0415
    from swin_flax.data import inputs  # noqa: PLC0415

    with config.unlocked():
        config.dataset, config.archive, config.randaugment = "synthetic", None, ""
        config.synthetic_train_examples = config.batch_size
        config.synthetic_test_examples = FLAGS.eval_images
        config.eval_batch_size = FLAGS.eval_batch
    data = inputs.load_data(config)
    model = build.model_from_config(config)
    per_epoch = 50_000 // config.batch_size  # CIFAR's, for the step numbers only
    tx = build.create_optimizer(config, per_epoch)
    img = config.model.img_size
    init_key, _ = runs.run_set(config).keys()
    state = steps.create_train_state(init_key, model, tx, (img, img, config.model.in_chans))
    # AdamW's moments as after some training (not zeros, which orbax would write far faster).
    keys = iter(jax.random.split(jax.random.key(1), len(jax.tree.leaves(state.opt_state))))
    noise = lambda x: (
        jax.random.normal(next(keys), x.shape, x.dtype) * 1e-3
        if jnp.issubdtype(x.dtype, jnp.floating) and x.ndim
        else x
    )
    state = steps.replicate(state.replace(opt_state=jax.tree.map(noise, state.opt_state)))
    labels = jnp.zeros((config.batch_size,), jnp.int32)
    one = steps.TrainMetrics.single_from_model_output(
        loss=jnp.float32(2.3), logits=jnp.zeros((config.batch_size, 10)), labels=labels, step=0
    )
    train_metrics = one
    for _ in range(per_epoch - 1):
        train_metrics = train_metrics.merge(one)
    jax.block_until_ready(train_metrics)
    return state, (build.pmap_eval_step(model.apply), data, train_metrics, per_epoch)


def _table(results: dict[str, tuple[list[dict], float]]) -> str:
    modes = list(results)
    med = {m: {k: statistics.median(e[k] for e in results[m][0]) for k, _ in ROWS} for m in modes}
    totals = {m: statistics.median(sum(e.values()) for e in results[m][0]) for m in modes}
    ckpt = {
        m: statistics.median(
            e["host_copy"] + e["wait"] + e["save_latest"] + e["save_best"] for e in results[m][0]
        )
        for m in modes
    }
    lines = [
        f"| seconds per epoch (median of {FLAGS.epochs - 1}) | {' | '.join(modes)} |",
        f"| --- |{' ---: |' * len(modes)}",
    ]
    for key, label in ROWS:
        if key == "eval":
            label += f" ({FLAGS.eval_images} images, batch {FLAGS.eval_batch})"
        lines.append(f"| {label} | {' | '.join(f'{med[m][key]:.3f}' for m in modes)} |")
    lines.append(
        f"| **checkpointing** (host copy, wait, both saves) | "
        f"{' | '.join(f'**{ckpt[m]:.3f}**' for m in modes)} |"
    )
    saves = {m: med[m]["wait"] + med[m]["save_latest"] + med[m]["save_best"] for m in modes}
    lines.append(
        "| in `Checkpoints` (wait and both saves) | "
        f"{' | '.join(f'{saves[m]:.3f}' for m in modes)} |"
    )
    lines.append(f"| **blocked in all** | {' | '.join(f'**{totals[m]:.3f}**' for m in modes)} |")
    lines.append(
        f"| `close` at the end (once per run) | {' | '.join(f'{results[m][1]:.3f}' for m in modes)} |"
    )
    return "\n".join(lines)


def main(argv):
    del argv  # parse_flags refused stray arguments
    import jax  # noqa: PLC0415

    cli.check_output_file("markdown", FLAGS.markdown)
    config = FLAGS.config
    state, pieces = _pieces(config)
    modes = ["sync", "async"] if FLAGS.mode == "both" else [FLAGS.mode]
    results = {}
    for mode in modes:
        with tempfile.TemporaryDirectory(prefix="epoch_overhead_") as workdir:
            results[mode] = _epochs(config, mode, workdir, state, pieces)
    size = sum(x.nbytes for x in jax.tree.leaves((state.params, state.opt_state)))
    size //= jax.local_device_count()
    header = (
        f"{datetime.date.today()}: `{shlex.join(['python', *sys.argv])}`\n\n"
        f"{os.cpu_count()} CPUs, {jax.local_device_count()} {jax.devices()[0].platform} device(s); "
        f"state {size / 2**20:.0f} MiB; train steps: a {FLAGS.train_seconds:g} s sleep per epoch."
    )
    text = f"{header}\n\n{_table(results)}\n"
    print(text)
    if FLAGS.markdown:
        with open(FLAGS.markdown, "w") as f:
            f.write(text)


if __name__ == "__main__":
    cli.run(main)
