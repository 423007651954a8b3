"""What the training loop tells people: the console's start-up, progress and epoch lines,
TensorBoard's summaries (a writer per run when several, and their spread) and the profiler."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Sequence

import jax
import ml_collections
import numpy as np
from absl import logging
from clu import metric_writers, periodic_actions
from etils import epath

from swin_flax import build, rundir, runfiles, runs
from swin_flax.config import data_seed, flatten
from swin_flax.data import viz
from swin_flax.models.summary import count_params, param_shapes


@dataclasses.dataclass
class Ticker:
    """A progress line at most every `every` seconds: steps/s, images/s (each of `num_runs` runs
    sees `batch` images a step) and the ETAs of the epoch and of the run (host clock; the run's adds
    `between_epochs`, evaluation and saves, per epoch left)."""

    every: float
    batch: int
    per_epoch: int
    num_steps: int
    num_runs: int = 1
    last_time: float = dataclasses.field(default_factory=time.time)
    last_step: int | None = None
    between_epochs: float = 0.0

    def restart(self, step: int) -> None:
        self.last_time, self.last_step = time.time(), step

    def __call__(self, step: int) -> float | None:
        """Logs a line when it is time; returns the steps/s it reported (else None)."""
        now = time.time()
        if now - self.last_time < self.every or self.last_step is None:
            return None
        rate = (step - self.last_step) / (now - self.last_time)
        epoch, in_epoch = divmod(step - 1, self.per_epoch)  # step counts steps done
        in_epoch += 1
        epochs_left = (self.num_steps - step) // self.per_epoch + (in_epoch < self.per_epoch)
        eta_epoch = rundir.duration((self.per_epoch - in_epoch) / rate)
        seconds_left = (self.num_steps - step) / rate + epochs_left * self.between_epochs
        eta_run = rundir.duration(seconds_left)
        logging.info(
            f"epoch {epoch + 1}: step {in_epoch}/{self.per_epoch}  {rate:.2f} steps/s  "
            f"{rate * self.batch:.0f} images/s{rundir.times_runs(self.num_runs)}  ETA epoch "
            f"{eta_epoch}, run {eta_run}"
        )
        self.restart(step)
        return rate


def log_devices(config: ml_collections.ConfigDict, steps_per_epoch: int) -> None:
    n, processes = jax.device_count(), jax.process_count()
    over = f" over {processes} processes" if processes > 1 else ""
    logging.info(
        f"devices: {n} {jax.devices()[0].platform}{over}; batch {config.batch_size} = "
        f"{config.batch_size // n} per device, {steps_per_epoch} steps per epoch"
    )


def log_start(config, run_set, model, start: int, steps_per_epoch: int, workdir) -> None:
    m = config.model
    logging.info(
        f"model: Swin (embed_dim {m.embed_dim}, depths {tuple(m.depths)}, heads "
        f"{tuple(m.num_heads)}, window {m.window_size}) on {m.img_size}x{m.img_size} images: "
        f"{count_params(param_shapes(model)):,} parameters, {config.dtype}"
    )
    logging.info("workdir: %s", runfiles.absolute(workdir))
    if line := run_set.describe(config.per_run_data):
        logging.info(line)
    num_steps = config.num_epochs * steps_per_epoch
    length = rundir.count(config.num_epochs, "epoch") + f" ({rundir.count(num_steps, 'step')})"
    if start:
        logging.info(
            "resuming after %s; %s in all", rundir.position(start, steps_per_epoch), length
        )
    else:  # a resume cannot change the schedule: a short one is said when the run starts
        logging.info("training %s from the start", length)
        if warning := build.short_run_warning(run_set.configs[0], steps_per_epoch):
            quoted = {"learning_rate", "warmup_lr_init", "lr_min"}  # the rates the warning quotes
            several = run_set.count > 1 and quoted & set(run_set.swept)
            run = f"run {run_set.names[0]} (the first of {run_set.count}): " if several else ""
            logging.warning(run + warning)
    if warning := build.past_schedule_warning(config):  # also on resuming: num_epochs may grow
        logging.warning(warning)


class Writers:
    """TensorBoard writers: the workdir's holds a single run's all, or what several runs share
    (input grid, speed); each of several writes to `runs/<name>/` (a row in the HParams tab) and a
    sweep point's seeds their spread to `runs/aggregate[/<point>]/`. Only process 0 writes files."""

    def __init__(self, workdir: epath.Path, run_set: runs.RunSet, is_chief: bool, fresh: bool):
        self.root = metric_writers.create_default_writer(workdir, just_logging=not is_chief)
        self.workdir, self.run_set, self.fresh = workdir, run_set, fresh
        self.several = run_set.count > 1
        self.runs, self.aggregates = [], {}
        # Made at the first per-run write, after the first steps: a start that fails in its first
        # step (out of memory with many runs) leaves no folders of runs that never trained.
        self._runs_pending = self.several and is_chief

    def _open_runs_once(self) -> None:
        if not self._runs_pending:
            return
        self._runs_pending = False
        names, folder = self.run_set.names, self.workdir / "runs"
        # Each run's own config, as a process of its own would write it: when the run starts, or
        # when a session stopped before its first per-run write made no folder.
        new = [self.fresh or not (folder / n).exists() for n in names]
        self.runs = [metric_writers.SummaryWriter(str(folder / n)) for n in names]
        for writer, run_config, first in zip(self.runs, self.run_set.configs, new, strict=True):
            if first:
                writer.write_hparams(_hparams(run_config))
                writer.flush()  # on disk with the folder: a resume sees both or neither
        for point, (members, path) in _aggregates(self.workdir, names).items():
            self.aggregates[point] = (members, metric_writers.SummaryWriter(str(path)))

    def _every(self) -> metric_writers.MultiWriter:
        aggregates = (w for _, w in self.aggregates.values())
        return metric_writers.MultiWriter([self.root, *self.runs, *aggregates])

    def flush(self) -> None:
        self._every().flush()

    def close(self) -> None:
        self._every().close()

    def finish(self) -> None:
        """Marks each run's row in the HParams tab finished (its Status and End time columns)."""
        from tensorboard.plugins.hparams import api_pb2  # noqa: PLC0415
        from tensorboard.plugins.hparams import summary as hparams_summary  # noqa: PLC0415

        # An HParams record is a summary proto (TensorBoard reads its metadata); clu's writer has
        # no method of its own for a session's end.
        (end,) = hparams_summary.session_end_pb(api_pb2.STATUS_SUCCESS).value
        for writer in self.runs if self.several else [self.root]:
            writer.write_summaries(0, {end.tag: np.zeros(())}, {end.tag: end.metadata})

    def per_run(self, step: int, scalars: dict[str, np.ndarray]) -> None:
        """Scalars with one value per run (arrays in run order); the aggregates leave out the
        learning rate, the same for a sweep point's seeds."""
        self._open_runs_once()  # several runs: no writers off process 0
        for k, writer in enumerate(self.runs if self.several else [self.root]):
            writer.write_scalars(step, {name: float(v[k]) for name, v in scalars.items()})
        curves = {name: v for name, v in scalars.items() if name != "learning_rate"}
        for members, writer in self.aggregates.values():
            spreads = {
                f"{name}/{s}": x
                for name, v in curves.items()
                for s, x in runs.spread(v[members]).items()
            }
            writer.write_scalars(step, spreads)

    def spread_plot(self, step: int, history: list[list[float]]) -> None:
        """Several seeds' test accuracy so far as a band plot, for each sweep point (an image in its
        aggregate folder, runs/test_accuracy_<point>.png), and in a sweep every point's band on one
        axis (an image at the root, runs/test_accuracy.png: without a sweep the seeds' plot)."""
        from PIL import Image  # noqa: PLC0415

        self._open_runs_once()
        plots = {point: ({point: m}, writer) for point, (m, writer) in self.aggregates.items()}
        if self.runs and self.run_set.swept:  # process 0's (its runs' writers are open)
            plots[""] = (runs.sweep_points(self.run_set.names), self.root)
        for point, (points, writer) in plots.items():
            image = runs.spread_plot(history, points)
            writer.write_images(step, {"test_accuracy_spread": image[None]})
            name = f"test_accuracy_{point}.png" if point else "test_accuracy.png"
            with (self.workdir / "runs" / name).open("wb") as f:
                Image.fromarray(image).save(f, format="PNG")


def _hparams(config: ml_collections.ConfigDict) -> dict[str, int | float | str | bool]:
    """The config's set fields for TensorBoard's HParams tab, with the data seed as it resolves."""
    flat = flatten(config.to_dict()) | {"data_seed": data_seed(config)}
    return {
        k: v if isinstance(v, int | float | str | bool) else str(v)
        for k, v in flat.items()
        if v is not None
    }


def _aggregates(
    workdir: epath.Path, names: Sequence[str]
) -> dict[str, tuple[list[int], epath.Path]]:
    """{sweep point: (its runs, the folder of their spread)} for the points of several seeds (every
    run when none is swept): runs/aggregate[/<point>]."""
    aggregate = workdir / "runs" / "aggregate"
    return {
        point: (members, aggregate / point if point else aggregate)
        for point, members in runs.sweep_points(names).items()
        if len(members) > 1
    }


def _lost_curves(workdir: epath.Path, names: Sequence[str], start: int) -> None:
    """Removes what earlier sessions of this run wrote to TensorBoard after the step it resumes
    from (killed after their last checkpoint: kill -9, a machine gone), which the run writes
    again; a start afresh (no checkpoint kept) drops their files. Only the run's own folders (a
    workdir's other folders may hold anything), each file rewritten whole (TensorBoard's readers
    do not all drop a restarted run's points)."""
    import tensorflow as tf  # noqa: PLC0415 (TensorBoard's record format)
    from tensorboard.compat.proto import event_pb2  # noqa: PLC0415

    folders = [workdir]
    if len(names) > 1:
        folders += [workdir / "runs" / n for n in names]
        folders += [path for _, path in _aggregates(workdir, names).values()]
    for folder in folders:
        files = []
        with contextlib.suppress(OSError):  # not there
            files = [p for p in folder.iterdir() if p.name.startswith("events.out.tfevents.")]
        for path in files:  # listed, not globbed: the workdir's name may hold [ or *
            if not start:
                path.unlink()
                continue
            records = []
            with contextlib.suppress(tf.errors.DataLossError):  # a kill cut its last record
                records += tf.data.TFRecordDataset(str(path)).as_numpy_iterator()
            kept = [r for r in records if _kept(event_pb2.Event.FromString(r), start)]
            if len(kept) < len(records):
                rewritten = str(folder / "curves.tmp")  # no "tfevents" in it: TensorBoard skips it
                with tf.io.TFRecordWriter(rewritten) as writer:
                    for record in kept:
                        writer.write(record)
                tf.io.gfile.rename(rewritten, str(path), overwrite=True)


def _kept(event, start: int) -> bool:
    """Whether a resumed run keeps an earlier session's event: up to its step, but not a finished
    run's end (its HParams status): a run extended has not ended yet."""
    return event.step <= start and all(v.tag != _SESSION_END for v in event.summary.value)


_SESSION_END = "_hparams_/session_end_info"  # the tag of Writers.finish's record


def open_writers(
    config,
    run_set,
    workdir: epath.Path,
    first_batch: dict,
    start: int,
    loaded: str = "",
    command: str | None = None,
) -> Writers:
    """The run's config files (with the session's `command`) and a new run's pretrained load
    report (`loaded`), and the TensorBoard writers (with hyper-parameters and an input grid when
    the run is new), written only now that the run is known to start at global step `start`."""
    is_chief, fresh = jax.process_index() == 0, start == 0
    if is_chief:
        if runfiles.is_run_folder(workdir):  # an earlier session's
            _lost_curves(workdir, run_set.names, start)
            (workdir / runfiles.SUMMARY).unlink(missing_ok=True)  # of fewer epochs: it trains on
        rundir.write_config(config, workdir, command, resumed=not fresh)
        if fresh:  # a lost start's report goes with its curves
            (workdir / runfiles.PRETRAINED).unlink(missing_ok=True)
        if loaded:
            (workdir / runfiles.PRETRAINED).write_text(loaded + "\n")
    writers = Writers(workdir, run_set, is_chief, fresh)
    if fresh:
        if not writers.several:  # several runs write theirs in runs/<name>/
            writers.root.write_hparams(_hparams(run_set.configs[0]))  # a one-value sweep's run
        if is_chief:
            images = first_batch["image"]
            if config.per_run_data and run_set.count > 1:
                images = images[:, 0]  # run 0's stream
            grid = viz.batch_grid(images, config.normalize_mean, config.normalize_std)
            writers.root.write_images(0, {"augmented_train_batch": grid[None]})
    return writers


def profiler(config, workdir: epath.Path, start: int, end: int) -> periodic_actions.Profile | None:
    """clu's profiler action (as flax's examples use it) for config.profile_steps steps, after the
    compile and a warm-up step, cut to the run's last step `end`; or None (and on processes but 0)."""
    if not config.profile_steps or jax.process_index() != 0:
        return None
    first = start + 3
    steps = min(config.profile_steps, end - first)
    if steps <= 0:
        logging.warning(
            f"config.profile_steps: the run ends at step {end}, before its profile would start "
            f"(step {first + 1}, after the compile and warm-up steps): no trace is written"
        )
        return None
    span = f"step {first + 1}" if steps == 1 else f"steps {first + 1}-{first + steps}"
    if steps < config.profile_steps:
        span += f" (profile_steps={config.profile_steps}: the run ends)"
    logging.info(
        f"profiling {span} into {workdir / 'plugins' / 'profile'} "
        "(TensorBoard's profile tab; needs tensorboard-plugin-profile)"
    )
    return periodic_actions.Profile(
        logdir=str(workdir),
        num_profile_steps=steps,
        profile_duration_ms=None,
        first_profile=first,
        every_secs=None,
    )


def report_epoch(
    config, writers, epoch, step, train, test, lr, best, improved, timing: dict[str, float]
) -> None:
    """The epoch's scalars in TensorBoard at the global step (`best`: each run's best test accuracy
    so far) and its line: one run's figures, or their spread (in a sweep, each value's over its seeds)."""
    per_run = {f"train_{k}": train[k] for k in ("loss", "accuracy")}
    per_run |= {f"test_{k}": v for k, v in test.items()}  # every steps.EvalMetrics figure
    writers.per_run(step, per_run | {"best_test_accuracy": best, "learning_rate": lr})
    writers.root.write_scalars(step, {"epoch": epoch, **timing})
    writers.flush()
    speed = f"{timing['epoch_time']:.1f}s {timing['images_per_sec']:.0f} img/s"
    if len(lr) == 1:
        line = (
            f"train loss {train['loss'][0]:.4f} acc {train['accuracy'][0]:.4f} | test loss "
            f"{test['loss'][0]:.4f} acc {test['accuracy'][0]:.4f} | lr {lr[0]:.3g} | {speed}"
            f"{'  (best)' if improved[0] else ''}"
        )
    else:
        figures = (
            runs.points_text(test["accuracy"], writers.run_set.names)  # each value's seeds
            if writers.run_set.swept
            else f"{runs.spread_text(test['accuracy'])} | train loss {runs.spread_text(train['loss'])}"
        )
        improving = f"({int(improved.sum())} improved)"
        line = f"test acc {figures} | {speed}{rundir.times_runs(len(lr))} {improving}"
    rundir.announce(f"epoch {epoch}/{config.num_epochs}  {line}")
