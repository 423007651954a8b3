"""The training loop: config -> data -> model -> pmapped steps -> metrics and checkpoints.

`train_and_evaluate(config, workdir)` trains, evaluates after every epoch, writes TensorBoard summaries
(process 0 only) and checkpoints (`latest` every epoch and on preemption, `best` by test accuracy), and
resumes from the latest checkpoint when the workdir already has one.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import signal
import time
from collections.abc import Iterator
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging
from clu import metric_writers, periodic_actions
from etils import epath
from flax import jax_utils

from swin_flax import build, checkpoints, steps
from swin_flax.config import ConfigError, flatten, validate
from swin_flax.data import pipeline, sources, viz
from swin_flax.models import swin


class TrainingDiverged(RuntimeError):
    """The loss became NaN or inf; the last good checkpoint is kept."""


class Preempted(Exception):
    """SIGTERM/SIGINT arrived; the state was saved and the run can be resumed."""


def check_workdir(workdir: epath.Path) -> None:
    if workdir.exists() and not workdir.is_dir():
        raise ConfigError(
            f"--workdir {workdir} is a file, not a folder: give a folder path (it is created if new)."
        )


def write_config(config: ml_collections.ConfigDict, workdir: epath.Path) -> None:
    """Keeps the config that ran, as readable text and as JSON, so a run can be repeated."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.txt").write_text(str(config))
    (workdir / "config.json").write_text(config.to_json_best_effort(indent=2, sort_keys=True))


class _StopFlag:
    """Records SIGTERM/SIGINT so the loop can stop after the current step and save.

    With several processes every host must stop at the same step, so they agree through an
    all-gather. That blocks the host until the step before it has run (no more steps queued ahead
    on the devices), so the hosts compare notes only every `sync_every` steps and at epoch ends.
    """

    def __init__(self, sync_every: int = 1):
        self.signal: int | None = None
        self.sync_every = sync_every
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            # Outside the main thread no handler can be set: then no graceful preemption.
            with contextlib.suppress(ValueError):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signal is not None:  # a second signal: stop now
            raise KeyboardInterrupt
        logging.warning("Received signal %d: stopping after this step and saving.", signum)
        self.signal = signum

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False

    def requested(self, step: int | None = None) -> bool:
        """Whether to stop after `step` (None: at an epoch's end, where every host checks)."""
        flag = self.signal is not None
        if jax.process_count() > 1:  # every host must stop at the same step
            if step is not None and step % self.sync_every:
                return False
            from jax.experimental import multihost_utils  # noqa: PLC0415

            flag = bool(multihost_utils.process_allgather(np.array(flag)).any())
        return flag


def _host_state(state: steps.TrainState) -> dict[str, Any]:
    """The part of the (replicated) state that is saved: device copy 0, on the host."""
    return jax.device_get(
        steps.unreplicate(
            {"params": state.params, "opt_state": state.opt_state, "step": state.step}
        )
    )


def _finite_host_state(
    state: steps.TrainState, epoch: int, ckpts: checkpoints.Checkpoints
) -> dict[str, Any]:
    """The host state to save, refused if the last update made any parameter NaN or inf (its loss,
    computed before the update, was still finite), so no checkpoint holds non-finite values."""
    host = _host_state(state)
    if not all(np.isfinite(x).all() for x in jax.tree.leaves(host["params"])):
        raise TrainingDiverged(_diverged_message(int(host["step"]), epoch, ckpts, "parameters"))
    return host


def model_identity(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """What a checkpoint's params depend on: the model's arguments and the block layout (which
    stages stack their blocks: `scan_blocks` and, when it is on, swin.SCAN_MIN_DEPTH)."""
    layout = {"scan_blocks": config.scan_blocks}
    if config.scan_blocks:
        layout["scan_min_depth"] = swin.SCAN_MIN_DEPTH
    return {**config.model.to_dict(), **layout}


def _meta(config, epoch: int, step: int, best: dict[str, Any], **extra) -> dict[str, Any]:
    return {
        "epoch": epoch,
        "step": step,
        "best_accuracy": best["accuracy"],
        "best_epoch": best["epoch"],
        "model": model_identity(config),
        **extra,
    }


def _summary_values(collection) -> dict[str, float]:
    return {k: float(v) for k, v in collection.compute().items()}


def evaluate(p_eval_step, params, batches: Iterator[dict[str, np.ndarray]]) -> dict[str, float]:
    """Loss and accuracy over all batches (padding masked out)."""
    total = None
    for batch in batches:
        m = steps.unreplicate(p_eval_step(params, batch))  # gathered: all copies equal
        total = m if total is None else total.merge(m)
    out = _summary_values(total)
    return {"loss": out["loss"], "accuracy": out["accuracy"]}


def load_split(config: ml_collections.ConfigDict, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The config's data source, one split: uint8 images [N, 32, 32, 3] and int32 labels."""
    return sources.load_split(
        config.dataset,
        split,
        data_dir=config.data_dir,
        archive=config.archive,
        synthetic_examples=getattr(config, f"synthetic_{split}_examples"),
        seed=config.seed,
    )


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Runs (or resumes) the training described by `config` in `workdir`; returns the summary."""
    t_start = time.time()
    workdir = epath.Path(workdir)
    check_workdir(workdir)
    validate(config, num_devices=jax.device_count())
    # A checkpoint of another model is refused now, before any data is read or anything compiled.
    saved = checkpoints.peek_meta(workdir)
    if saved is not None:
        where = str(checkpoints.series_dir(workdir, "latest"))
        checkpoints.check_model_matches(saved, model_identity(config), where)
    n_local = jax.local_device_count()
    is_chief = jax.process_index() == 0

    # Data.
    train_images, train_labels = load_split(config, "train")
    test_images, test_labels = load_split(config, "test")
    steps_per_epoch = pipeline.steps_per_epoch(len(train_images), config.batch_size)
    num_steps = steps_per_epoch * config.num_epochs
    common = dict(
        global_batch_size=config.batch_size,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        local_device_count=n_local,
        normalize_mean=tuple(config.normalize_mean),
        normalize_std=tuple(config.normalize_std),
        image_size=config.model.img_size,
    )

    def train_batches(epoch: int, start_step: int) -> Iterator[dict[str, np.ndarray]]:
        """One dataset for all remaining epochs: tf.data optimises its graph once, not per epoch."""
        ds = pipeline.train_dataset(
            train_images,
            train_labels,
            num_classes=config.model.num_classes,
            epoch=epoch,
            seed=config.seed,
            randaugment=config.randaugment,
            img_mean=tuple(config.randaugment_img_mean),
            translate_const=config.randaugment_translate_const,
            mix=config.mix.to_dict(),
            start_step=start_step,
            num_epochs=config.num_epochs - epoch,
            prefetch=config.prefetch_batches,
            **common,
        )
        return ds.as_numpy_iterator()

    def test_batches():
        ds = pipeline.eval_dataset(
            test_images, test_labels, **{**common, "global_batch_size": config.eval_batch_size}
        )
        return jax_utils.prefetch_to_device(ds.as_numpy_iterator(), 2)

    # Model and optimiser.
    model = build.create_model(config)
    learning_rate_fn = build.create_learning_rate_fn(config, steps_per_epoch)
    tx = build.create_optimizer(config, learning_rate_fn)
    init_key, dropout_key = jax.random.split(jax.random.key(config.seed))
    img = config.model.img_size
    state = steps.create_train_state(init_key, model, tx, (img, img, config.model.in_chans))

    # Resume.
    ckpts = checkpoints.Checkpoints(workdir, keep=config.keep_checkpoints)
    best = {"accuracy": -1.0, "epoch": -1}
    if saved is not None:  # checked against this model above
        target = {"params": state.params, "opt_state": state.opt_state, "step": state.step}
        restored, meta = ckpts.restore("latest", jax.device_get(target))
        state = state.replace(**restored)
        best = {"accuracy": meta["best_accuracy"], "epoch": meta["best_epoch"]}
        logging.info("Resumed from step %d (epoch %d) in %s.", meta["step"], meta["epoch"], workdir)
    elif config.pretrained:  # AdamW's moments start at zero whatever the params: swap them in
        from swin_flax import finetune  # noqa: PLC0415

        params, _ = finetune.load_pretrained(config.pretrained, model, state.params)
        state = state.replace(params=params)
    start = int(jax.device_get(state.step))
    write_config(config, workdir) if is_chief else None
    state = steps.replicate(state)

    p_train_step = build.pmap_train_step(dropout_key, learning_rate_fn)
    p_eval_step = jax.pmap(
        functools.partial(steps.eval_step, apply_fn=model.apply), axis_name=steps.AXIS
    )

    writer = metric_writers.create_default_writer(workdir, just_logging=not is_chief)
    if start == 0:
        writer.write_hparams(
            {
                k: v if isinstance(v, int | float | str | bool) else str(v)
                for k, v in flatten(config.to_dict()).items()
            }
        )
    report = periodic_actions.ReportProgress(
        num_train_steps=num_steps, writer=writer, every_secs=30
    )
    hooks = [report] if is_chief else []

    step = start
    epoch = start // steps_per_epoch
    train_time = 0.0
    trained_images = 0
    summary: dict[str, Any] = {}
    host_batches = train_batches(epoch, start - epoch * steps_per_epoch)
    first_batch = next(host_batches)
    if is_chief and start == 0:
        grid = viz.batch_grid(first_batch["image"], config.normalize_mean, config.normalize_std)
        writer.write_images(0, {"augmented_train_batch": grid[None]})
    device_batches = jax_utils.prefetch_to_device(itertools.chain([first_batch], host_batches), 2)
    with _StopFlag(sync_every=config.log_every_steps) as stop, _closing(writer, ckpts):
        while epoch < config.num_epochs:
            t_epoch = time.time()
            first = step - epoch * steps_per_epoch
            end = (epoch + 1) * steps_per_epoch
            train_metrics = window = None
            while step < end:
                state, m, lr = p_train_step(state, next(device_batches))
                m = steps.unreplicate(m)  # gathered over devices: every copy is the same
                step += 1
                train_metrics = m if train_metrics is None else train_metrics.merge(m)
                window = m if window is None else window.merge(m)
                for hook in hooks:
                    hook(step)
                if step % config.log_every_steps == 0:
                    values = _check_finite(window, epoch, ckpts)
                    writer.write_scalars(step, {"train_loss_step": values["loss"]})
                    window = None
                if step < end and stop.requested(step):  # at an epoch's end: evaluate first
                    _check_finite(train_metrics, epoch, ckpts)
                    host_state = _finite_host_state(state, epoch, ckpts)
                    ckpts.save("latest", step, host_state, _meta(config, epoch, step, best))
                    raise Preempted(_preempted_message(step, steps_per_epoch, ckpts))
            epoch_seconds = time.time() - t_epoch
            n_images = (step - epoch * steps_per_epoch - first) * config.batch_size
            train_time += epoch_seconds
            trained_images += n_images
            train = _check_finite(train_metrics, epoch, ckpts)
            test = evaluate(p_eval_step, state.params, test_batches())
            epoch += 1
            is_best = test["accuracy"] > best["accuracy"]
            if is_best:
                best = {"accuracy": test["accuracy"], "epoch": epoch}
            scalars = {
                "train_loss": train["loss"],
                "train_accuracy": train["accuracy"],
                "test_loss": test["loss"],
                "test_accuracy": test["accuracy"],
                "learning_rate": float(steps.unreplicate(lr)),
                "epoch_time": epoch_seconds,
                "images_per_sec": n_images / epoch_seconds,
            }
            writer.write_scalars(epoch, scalars)
            writer.flush()
            logging.info(
                "epoch %d/%d  train loss %.4f acc %.4f | test loss %.4f acc %.4f | lr %.3g | %.1fs "
                "%.0f img/s%s",
                epoch,
                config.num_epochs,
                train["loss"],
                train["accuracy"],
                test["loss"],
                test["accuracy"],
                scalars["learning_rate"],
                epoch_seconds,
                scalars["images_per_sec"],
                "  (best)" if is_best else "",
            )
            stopping = epoch < config.num_epochs and stop.requested()
            host_state = None
            meta = _meta(config, epoch, step, best, test_accuracy=test["accuracy"])
            if (
                epoch % config.checkpoint_every_epochs == 0
                or epoch == config.num_epochs
                or stopping
            ):
                host_state = _finite_host_state(state, epoch - 1, ckpts)
                ckpts.save("latest", step, host_state, meta)
            if is_best:
                if host_state is None:
                    host_state = _finite_host_state(state, epoch - 1, ckpts)
                ckpts.save("best", step, host_state, meta)
            if stopping:
                raise Preempted(_preempted_message(step, steps_per_epoch, ckpts))
    summary = {"final_test_accuracy": test["accuracy"]} if start < num_steps else {}
    total = time.time() - t_start
    summary.update(
        best_test_accuracy=best["accuracy"],
        best_epoch=best["epoch"],
        total_seconds=total,
        train_images_per_sec=trained_images / train_time if train_time else 0.0,
        steps=step,
        start_step=start,
    )
    logging.info(
        "Done: best test accuracy %.4f at epoch %d; %.1fs in total, %.0f training images/s.",
        summary["best_test_accuracy"],
        summary["best_epoch"],
        total,
        summary["train_images_per_sec"],
    )
    if is_chief:
        (workdir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


@contextlib.contextmanager
def _closing(writer: metric_writers.MetricWriter, ckpts: checkpoints.Checkpoints) -> Iterator[None]:
    """Flushes the summaries and closes the checkpoint managers however the loop ends (finished,
    preempted, diverged), so the events of the steps done are on disk."""
    try:
        yield
    finally:
        writer.close()
        ckpts.close()


def _preempted_message(step: int, steps_per_epoch: int, ckpts: checkpoints.Checkpoints) -> str:
    epoch, in_epoch = divmod(step, steps_per_epoch)
    where = (
        f"the end of epoch {epoch}" if in_epoch == 0 else f"step {in_epoch} of epoch {epoch + 1}"
    )
    return (
        f"stopped at global step {step} ({where}) and saved a checkpoint in "
        f"{ckpts.root / 'latest'}. Run the same command again to resume from there."
    )


def _check_finite(collection, epoch: int, ckpts: checkpoints.Checkpoints) -> dict[str, float]:
    values = _summary_values(collection)
    bad = int(values.pop("first_nonfinite_step"))
    if bad >= 0 or not np.isfinite(values["loss"]):
        raise TrainingDiverged(_diverged_message(bad + 1, epoch, ckpts, "training loss"))
    return values


def _diverged_message(step: int, epoch: int, ckpts: checkpoints.Checkpoints, what: str) -> str:
    last = ckpts.latest_step()
    return (
        f"the {what} became NaN or inf at step {step} (epoch {epoch + 1}). The last good "
        f"checkpoint ({'step ' + str(last) if last is not None else 'none yet'}) is kept in "
        f"{ckpts.root / 'latest'}. Check the learning rate (config.learning_rate, warmup), the "
        "input normalisation, and try config.grad_clip_norm or dtype='float32'."
    )
