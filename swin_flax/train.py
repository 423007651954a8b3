"""The training loop: `train_and_evaluate(config, workdir)` trains, evaluates after every epoch,
writes TensorBoard summaries (process 0 only) and checkpoints (`latest` to resume from, `best` by test
accuracy), and resumes from the latest checkpoint when the workdir already has one."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import json
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging
from clu import periodic_actions
from etils import epath
from flax import jax_utils, serialization

from swin_flax import build, checkpoints, distributed, finetune, reports, rundir, runs, steps
from swin_flax.config import validate
from swin_flax.data import inputs
from swin_flax.errors import ConfigError, Preempted, TrainingDiverged
from swin_flax.models import swin


class _StopFlag:
    """Records SIGTERM/SIGINT so the loop can stop after the current step and save. Several hosts
    agree on that step through an all-gather, which blocks until the steps queued on the devices
    have run: they compare notes only every `sync_every` steps and at epoch ends."""

    def __init__(self, latest: epath.Path, sync_every: int = 1):
        self.signal: int | None = None
        self.second: int | None = None
        self.peer: tuple[int, int] | None = None  # (process, signal) that stops this one
        self.latest, self.sync_every = latest, sync_every  # the series a second signal reports on
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            # Outside the main thread no handler can be set: then no graceful preemption.
            with contextlib.suppress(ValueError):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signal is not None:  # a second signal: stop now (__exit__ says what is kept)
            self.second = self.second or signum  # the one sent again (cli) keeps its name
            raise KeyboardInterrupt
        name = signal.Signals(signum).name
        logging.warning(f"Received {name}: stopping after this step and saving.")
        self.signal = signum

    def __exit__(self, kind, value, tb):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        if self.second is not None and kind is KeyboardInterrupt:
            # Said now: the checkpoints, closed first, have finished the writes in flight.
            kept = (
                f"the last complete checkpoint is kept; run {_again()} to resume from it"
                if checkpoints.newest_step(self.latest) is not None
                else "no checkpoint was written yet; the same command starts the run afresh"
            )
            name = signal.Signals(self.second).name
            raise KeyboardInterrupt(f"a second {name} while stopping: {kept}") from None
        return False

    @property
    def by_user(self) -> bool:
        """Whether the stop came from Ctrl-C (SIGINT), in this process or another, not SIGTERM."""
        return (self.signal or (self.peer and self.peer[1])) == signal.SIGINT

    @property
    def cause(self) -> str:
        """'process 1 received SIGTERM' when another process's signal stops this one, else ''."""
        if self.peer is None:
            return ""
        return f"process {self.peer[0]} received {signal.Signals(self.peer[1]).name}"

    def requested(self, step: int | None = None) -> bool:
        """Whether to stop after `step` (None: at an epoch's end, where every host checks). A host
        stopped by another's signal records which in `cause`, for its log and its message."""
        if jax.process_count() == 1:
            return self.signal is not None
        if step is not None and step % self.sync_every:  # every host must stop at the same step
            return False
        from jax.experimental import multihost_utils  # noqa: PLC0415

        signals = np.ravel(multihost_utils.process_allgather(np.array(self.signal or 0)))
        if self.signal is None and signals.any() and self.peer is None:
            first = int(np.flatnonzero(signals)[0])
            self.peer = (first, int(signals[first]))
            cause = self.cause
            logging.warning(f"{cause[0].upper()}{cause[1:]}: stopping after this step and saving.")
        return bool(signals.any())


def _saved_part(state: steps.TrainState) -> dict[str, Any]:
    """What a checkpoint holds of the train state (not its functions: apply_fn, tx)."""
    return {"params": state.params, "opt_state": state.opt_state, "step": state.step}


def _finite_host_state(
    state: steps.TrainState, step: int, epoch: int, ckpts: checkpoints.Checkpoints, names: list[str]
) -> dict[str, Any]:
    """The part of the state that is saved (device copy 0, on the host), refused if the last update
    made any parameter NaN or inf (its loss, computed before the update, was still finite); of
    several runs (`names`: a leading run axis), naming the first that broke."""
    host = jax.device_get(steps.unreplicate(_saved_part(state)))
    leaves = jax.tree.leaves(host["params"])
    finite = np.all([np.isfinite(x).reshape(len(names), -1).all(1) for x in leaves], axis=0)
    if not finite.all():
        broken = int(np.argmin(finite))
        raise TrainingDiverged(_diverged_message(step, epoch, ckpts, "parameters", names, broken))
    return host


def _summary_values(collection, num_runs: int) -> dict[str, np.ndarray]:
    """The collection's values, one per run (a run axis of 1 for a single run)."""
    compute = type(collection).compute
    values = (jax.vmap(compute) if num_runs > 1 else compute)(collection)
    return {k: np.atleast_1d(np.asarray(v, np.float64)) for k, v in values.items()}


def evaluate_params(
    p_eval_step, params, batches: Iterable[dict[str, np.ndarray]], num_runs: int = 1
) -> dict[str, np.ndarray]:
    """Loss and accuracy of each run over all batches (padding masked out)."""
    gathered = (steps.unreplicate(p_eval_step(params, b)) for b in batches)  # all copies equal
    return _summary_values(functools.reduce(lambda a, b: a.merge(b), gathered), num_runs)


def _as_json(metrics) -> Any:
    """A metrics collection's state as JSON-able lists (for a checkpoint's record); None stays None."""
    return jax.tree.map(lambda x: np.asarray(x).tolist(), serialization.to_state_dict(metrics))


def _from_json(template, plain: Any):
    """Metrics saved by `_as_json`, in `template`'s structure and dtypes (float32 comes back exact)."""
    state = serialization.to_state_dict(template)
    cast = jax.tree.map(lambda t, v: np.asarray(v, np.asarray(t).dtype), state, plain)
    return serialization.from_state_dict(template, cast)


@dataclasses.dataclass
class Progress:
    """What a run carries from epoch to epoch and keeps in every checkpoint's record: each run's best
    test accuracy and its epoch, the totals over sessions, the part of an epoch trained before a
    stop in it, each run's last test accuracy and (several runs) every epoch's test accuracies."""

    num_runs: int = 1
    best_accuracy: list[float] = dataclasses.field(default_factory=list)
    best_epoch: list[int] = dataclasses.field(default_factory=list)
    totals: rundir.RunTotals = dataclasses.field(default_factory=rundir.RunTotals)
    partial_epoch: dict[str, Any] | None = None
    test_accuracy: list[float] | None = None
    history: list[list[float]] = dataclasses.field(default_factory=list)

    def __post_init__(self):
        self.best_accuracy = self.best_accuracy or [-1.0] * self.num_runs
        self.best_epoch = self.best_epoch or [-1] * self.num_runs

    @classmethod
    def from_record(cls, meta: dict[str, Any]) -> Progress:
        per_run = ("best_accuracy", "best_epoch", "test_accuracy")  # one run's are numbers
        lists = {k: np.atleast_1d(meta[k]).tolist() for k in per_run if meta.get(k) is not None}
        return cls(
            len(lists["best_accuracy"]),
            totals=rundir.RunTotals(**meta.get("totals", {})),
            partial_epoch=meta.get("partial_epoch"),
            history=meta.get("history", []),
            **lists,
        )

    def improved(self, accuracy: np.ndarray, epoch: int) -> np.ndarray:
        """Records `epoch`'s test accuracies; returns which runs beat their best."""
        better = accuracy > np.asarray(self.best_accuracy)
        self.best_accuracy = np.where(better, accuracy, self.best_accuracy).tolist()
        self.best_epoch = np.where(better, epoch, self.best_epoch).tolist()
        self.test_accuracy = accuracy.tolist()
        if self.num_runs > 1:
            self.history.append(self.test_accuracy)
        return better

    def record(self, config, epoch: int, step: int, steps_per_epoch: int, wall: float) -> dict:
        """The checkpoint's JSON record at `step` (`wall`: this session's seconds so far). A single
        run's figures are numbers, several runs' lists in run order (`runs` names them)."""
        one = self.num_runs == 1
        per_run = lambda v: v[0] if one and v is not None else v
        identity = rundir.model_identity(config)  # names the runs, in stack order
        several = {} if one else {"runs": identity["runs"], "history": self.history}
        return {
            "epoch": epoch,
            "step": step,
            "steps_per_epoch": steps_per_epoch,
            "best_accuracy": per_run(self.best_accuracy),
            "best_epoch": per_run(self.best_epoch),
            "model": identity,
            "totals": dataclasses.asdict(self.totals.plus(wall=wall)),
            "partial_epoch": self.partial_epoch,
            "test_accuracy": per_run(self.test_accuracy),
            "devices": _device_layout(),
            **several,
        }


def initial_state(
    config: ml_collections.ConfigDict,
    run_set: runs.RunSet,
    model: swin.SwinTransformer,
    steps_per_epoch: int,
    saved: dict[str, Any] | None,
    ckpts: checkpoints.Checkpoints,
    pretrained: dict[str, np.ndarray] | None = None,
) -> tuple[steps.TrainState, Progress]:
    """The train state to start from (the latest checkpoint, else the `pretrained` state_dict that
    finetune.read_pretrained read from config.pretrained, else a fresh initialisation from each
    run's init key) and the progress its record holds. Several runs stack their states on a
    leading axis; a sweep's optimiser holds each run's hyper-parameters."""
    img = config.model.img_size
    sweep = run_set.count > 1 and bool(run_set.swept)
    tx = build.create_optimizer(run_set.configs[0], steps_per_epoch, in_state=sweep)
    init_keys, _ = run_set.keys()
    state = steps.create_train_state(init_keys, model, tx, (img, img, config.model.in_chans))
    if sweep:
        hyperparams = build.run_hyperparams(run_set.configs, steps_per_epoch)
        state = state.replace(opt_state=state.opt_state._replace(hyperparams=hyperparams))
    if saved is not None:  # checked against this model by rundir.inspect
        restored, meta = ckpts.restore("latest", jax.device_get(_saved_part(state)))
        return state.replace(**restored), Progress.from_record(meta)
    if pretrained is not None:  # AdamW's moments start at zero whatever the params: swap them in
        load = lambda p: finetune.load_pretrained(
            pretrained, model, p, name=config.pretrained, load_head=config.pretrained_head
        )
        if run_set.count == 1:
            params, report = load(state.params)
        else:  # the same pretrained body; each run's own head init unless pretrained_head
            inits = [jax.tree.map(lambda x, k=k: x[k], state.params) for k in range(run_set.count)]
            each, reports = zip(*map(load, inits), strict=True)
            params, report = jax.tree.map(lambda *xs: np.stack(xs), *each), reports[0]
        logging.info("%s", report.summary())  # the same for every run
        state = state.replace(params=params)
    return state, Progress(run_set.count)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Runs (or resumes) the training described by `config` in `workdir`; returns the summary.
    Whatever can refuse to start (config, checkpoint of another model, epochs already trained, a
    process training in the workdir, data) is checked before anything is compiled or written; a
    finished run prints its summary and returns it without touching the workdir."""
    t_start = time.time()
    workdir = epath.Path(workdir)
    with distributed.StartUp() as start_up:  # several processes: all start, or none does
        validate(config, num_devices=jax.device_count(), num_hosts=jax.process_count())
        saved, finished = rundir.inspect(config, workdir)
        if finished:
            start_up.ready("finished")
            return rundir.report_finished(workdir, saved, config.num_epochs)
        with rundir.Claim(workdir, active=jax.process_index() == 0) as claim:
            return _train(config, workdir, saved, claim, start_up, t_start)


@dataclasses.dataclass(frozen=True)
class Session:
    """What the loop holds fixed from a session's first step (`start`) to its end or stop."""

    config: ml_collections.ConfigDict
    per_epoch: int  # steps
    start: int
    names: list[str]  # the runs'
    p_train_step: Callable
    dropout_keys: jax.Array
    lr_fns: list[Callable]
    ckpts: checkpoints.Checkpoints
    writers: reports.Writers
    ticker: reports.Ticker
    profile: periodic_actions.Profile | None
    stop: _StopFlag


def _train(
    config, workdir: epath.Path, saved, claim: rundir.Claim, start_up, t_start: float
) -> dict:
    """train_and_evaluate's run in a workdir that needs training; `claim` is taken once the
    workdir exists (a new one: as soon as it is created); `start_up` is ready once the data is read
    and the workdir claimed."""
    if saved is not None:
        config = rundir.resumed_config(config, workdir)
    model = build.model_from_config(config)
    pretrained = None
    if config.pretrained and saved is None:
        # Read once and checked now: an unreadable file, or another model's, is refused at once.
        pretrained = finetune.read_pretrained(
            config.pretrained, model, load_head=config.pretrained_head
        )
    run_set = runs.run_set(config)

    data = inputs.load_data(config)
    per_epoch = data.steps_per_epoch
    reports.log_devices(config, per_epoch)
    build.check_run_length(config, per_epoch)
    if saved is not None and saved.get("steps_per_epoch", per_epoch) != per_epoch:
        raise ConfigError(
            f"config.batch_size: the run in {workdir} has {saved['steps_per_epoch']} steps per "
            f"epoch, this config {per_epoch} (batch_size {config.batch_size}, "
            f"{len(data.train_labels)} training images). Resume with the batch size and data the "
            "run started with, or give a new --workdir."
        )
    now = _device_layout()
    if saved is not None and saved.get("devices", now) != now and jax.process_index() == 0:
        logging.warning(
            f"{workdir} trained on {_devices(*saved['devices'])} and resumes on {_devices(*now)}: "
            "dropout's draws (and CutMix's pairs, made within each process's share of a batch) "
            "follow the devices, so the rest of the run differs from an uninterrupted one's (on "
            "the same devices it would be the same, bit for bit)."
        )
    created = not workdir.exists()
    try:  # as the checkpoint managers would: claimed now
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # what rundir.inspect cannot foresee (a pseudo file system such as /proc)
        raise ConfigError(
            f"--workdir {workdir} cannot be created ({e.strerror or e}): give a folder you can create."
        ) from None
    claim.take()
    # Before orbax's first barrier: from here on the processes' collectives must match.
    try:
        start_up.ready("start afresh" if saved is None else f"resume at step {saved.get('step')}")
    except ConfigError:  # another process refused: a folder made for this run goes again
        if created:
            workdir.rmdir()
        raise
    ckpts = checkpoints.Checkpoints(workdir, keep=config.keep_checkpoints)
    state, progress = initial_state(config, run_set, model, per_epoch, saved, ckpts, pretrained)
    del pretrained  # the params hold it now
    progress.totals = dataclasses.replace(progress.totals, sessions=progress.totals.sessions + 1)
    start = int(np.ravel(jax.device_get(state.step))[0])
    reports.log_start(config, run_set, model, start, per_epoch, workdir)

    # The run starts: from here on the workdir is written.
    state = steps.replicate(state)
    best_params = _best_params(ckpts, run_set.count, saved is not None)
    p_eval_step = build.pmap_eval_step(model.apply, run_set.count)
    eval_batches = inputs.eval_batches(config, data)  # built once, a pass per evaluation
    host_batches = _train_batches(config, run_set, data, start)
    first_batch = next(host_batches)
    num_steps = per_epoch * config.num_epochs
    loop = Session(
        config=config,
        per_epoch=per_epoch,
        start=start,
        names=run_set.names,
        p_train_step=build.pmap_train_step(run_set.count, config.per_run_data),
        dropout_keys=run_set.keys()[1],
        lr_fns=[build.create_learning_rate_fn(c, per_epoch) for c in run_set.configs],
        ckpts=ckpts,
        writers=reports.open_writers(config, run_set, workdir, first_batch, fresh=start == 0),
        ticker=reports.Ticker(30.0, config.batch_size, per_epoch, num_steps, run_set.count),
        profile=reports.profiler(config, workdir, start, num_steps),  # chief only
        stop=_StopFlag(ckpts.root / "latest", sync_every=config.log_every_steps),
    )
    batches = jax_utils.prefetch_to_device(itertools.chain([first_batch], host_batches), 2)
    step, epoch = start, start // per_epoch
    # However the loop ends (finished, preempted, diverged) the summaries are closed, so the events
    # of the steps done are on disk, then the checkpoints: that waits for the writes in flight and
    # raises if one failed.
    with loop.stop, contextlib.closing(ckpts), contextlib.closing(loop.writers):
        while epoch < config.num_epochs:
            t_epoch, before = time.time(), step
            window = (progress.partial_epoch or {}).get("window")  # a stop's open window
            state, train_metrics, step, (seconds, done), window = train_epoch(
                loop, state, batches, step, epoch, window
            )
            progress.totals = progress.totals.plus(  # every step, the compile too
                train=time.time() - t_epoch,
                images=(step - before) * config.batch_size,
            )
            images = done * config.batch_size  # the epoch's speed: its steps' (train_epoch)
            t_steps_done = time.time()
            if (part := progress.partial_epoch) is not None:  # trained before a stop in this epoch
                train_metrics = _from_json(train_metrics, part["metrics"]).merge(train_metrics)
                seconds, images = seconds + part["seconds"], images + part["images"]
            train = _check_finite(train_metrics, epoch, ckpts, run_set.names)
            if step % per_epoch:  # stopped within the epoch: keep its part, save and stop
                window = _as_json(window)  # the steps since its last train_loss_step point
                progress.partial_epoch = dict(
                    metrics=_as_json(train_metrics), seconds=seconds, images=images, window=window
                )
                meta = progress.record(config, epoch, step, per_epoch, time.time() - t_start)
                host_state = _finite_host_state(state, step, epoch, ckpts, run_set.names)
                ckpts.save("latest", step, host_state, meta)
                raise _preempted(loop, step)
            progress.partial_epoch = None
            t_eval = time.time()
            test = evaluate_params(p_eval_step, state.params, eval_batches, run_set.count)
            timing = {
                "epoch_time": seconds,
                "images_per_sec": images / seconds,
                "steps_per_sec": images / config.batch_size / seconds,
                "eval_time": time.time() - t_eval,
            }
            epoch += 1
            improved = progress.improved(test["accuracy"], epoch)
            best_accuracy = np.asarray(progress.best_accuracy)
            lr = _learning_rates(loop.lr_fns, step)
            reports.report_epoch(
                config, loop.writers, epoch, step, train, test, lr, best_accuracy, improved, timing
            )
            if progress.history:
                loop.writers.spread_plot(step, progress.history)
            stopping = epoch < config.num_epochs and loop.stop.requested()
            meta = progress.record(config, epoch, step, per_epoch, time.time() - t_start)
            best_params = _save_epoch(
                loop, state, epoch, step, meta, improved, best_params, stopping
            )
            if stopping:
                raise _preempted(loop, step)
            loop.ticker.between_epochs = time.time() - t_steps_done
            loop.ticker.restart(step)
        loop.writers.finish()
    if loop.stop.signal is not None:  # after the last step where the processes could stop together
        name = signal.Signals(loop.stop.signal).name
        logging.warning(f"{name} came in the run's last steps: it finished instead of stopping.")
    # The last checkpoint's record: the summary a later run of the same command prints is this one.
    summary = rundir.run_summary(meta, str(ckpts.root))
    rundir.announce(*rundir.summary_lines(summary))
    if jax.process_index() == 0:
        (workdir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _train_batches(config, run_set: runs.RunSet, data: inputs.Data, start: int) -> Iterator[dict]:
    """The training stream from global step `start`: shared by the runs, or with per_run_data one
    stream per run (run k's own data seed) stacked on a run axis after the device axis."""
    if not (config.per_run_data and run_set.count > 1):
        return inputs.train_batches(run_set.configs[0], data, start)
    streams = [inputs.train_batches(c, data, start) for c in run_set.configs]
    return (jax.tree.map(lambda *xs: np.stack(xs, axis=1), *b) for b in zip(*streams))


def _best_params(ckpts: checkpoints.Checkpoints, num_runs: int, resuming: bool) -> Any:
    """Several runs keep each run's best params in one stack: when resuming, the stack saved."""
    saved = ckpts.restore("best", None) if num_runs > 1 and resuming else None
    return None if saved is None else checkpoints.as_dtype(saved[0]["params"], np.float32)


def _save_epoch(
    loop: Session, state, epoch: int, step: int, meta, improved: np.ndarray, best_params, stopping
) -> Any:
    """The checkpoints of the epoch just done (`epoch` counted from 1): best/ where a run improved,
    latest/ every checkpoint_every_epochs epochs, after the last one and before a stop. best/
    first: the writes complete in order, so a record in latest/ never names a best checkpoint that
    a kill left unwritten (best/ ahead of latest/ is resumed). Returns the best params kept."""
    config, ckpts = loop.config, loop.ckpts
    latest = epoch % config.checkpoint_every_epochs == 0 or epoch == config.num_epochs or stopping
    if not (latest or improved.any()):
        return best_params
    host_state = _finite_host_state(state, step, epoch - 1, ckpts, loop.names)
    if improved.any():
        best_params = _merge_best(best_params, host_state["params"], improved)
        best = checkpoints.as_dtype(best_params, config.best_params_dtype)
        ckpts.save("best", step, {"params": best}, meta)
    if latest:
        ckpts.save("latest", step, host_state, meta)
    return best_params


def _merge_best(best: Any, params: Any, improved: np.ndarray) -> Any:
    """`params` where a run improved, the kept best elsewhere (one run: `params`)."""
    if best is None or len(improved) == 1:
        return params
    shape = lambda x: improved.reshape((-1,) + (1,) * (np.ndim(x) - 1))
    return jax.tree.map(lambda new, old: np.where(shape(new), new, old), params, best)


def train_epoch(loop: Session, state, batches, step: int, epoch: int, window: Any = None):
    """Trains from global step `step` to the end of `epoch` (or a requested stop); returns (state, the
    merged train metrics, the step reached, (seconds, steps) timed: the session's first step, which
    compiles, left out when others follow, the steps since the last train_loss_step point). Logs
    the compile and a progress line every 30 s, and writes the train loss (a NaN:
    TrainingDiverged) and the learning rate every log_every_steps. `window`: the steps a stop in
    this epoch left since its last point (their metrics as JSON), which the first one joins."""
    end, ticker = (epoch + 1) * loop.per_epoch, loop.ticker
    metrics = loss_window = None
    t_timed, first_timed = time.time(), step
    while step < end:
        if step == loop.start:
            logging.info("compiling the train step ...")
        state, m = loop.p_train_step(state, next(batches), loop.dropout_keys)
        m = steps.unreplicate(m)  # gathered over devices: every copy is the same
        if step == loop.start:
            jax.block_until_ready(m)
            logging.info("train step compiled and run in %.1fs", time.time() - t_timed)
            ticker.restart(step + 1)
            if step + 1 < end:
                t_timed, first_timed = time.time(), step + 1
        step += 1
        if loop.profile is not None:
            loop.profile(step)
        metrics = m if metrics is None else metrics.merge(m)
        if window is not None:  # what the stopped session trained since its last point
            loss_window, window = _from_json(m, window), None
        loss_window = m if loss_window is None else loss_window.merge(m)
        rate = ticker(step) if jax.process_index() == 0 else None
        if rate is not None and step < end:  # the epoch's own figure is written at its end
            loop.writers.root.write_scalars(step, {"steps_per_sec": rate})
        if step % loop.config.log_every_steps == 0:
            loss = _check_finite(loss_window, epoch, loop.ckpts, loop.names)["loss"]
            scalars = {"train_loss_step": loss}
            if step < end:
                scalars["learning_rate"] = _learning_rates(loop.lr_fns, step)
            loop.writers.per_run(step, scalars)
            loss_window = None
        if step < end and loop.stop.requested(step):  # at an epoch's end: evaluate first
            break
    jax.block_until_ready(metrics)  # the time counts the last steps on the device
    return state, metrics, step, (time.time() - t_timed, step - first_timed), loss_window


def _learning_rates(lr_fns: list, step: int) -> np.ndarray:
    """Each run's learning rate in the step that brought the count to `step`."""
    return np.array([float(fn(step - 1)) for fn in lr_fns])


def _preempted(loop: Session, step: int) -> Preempted:
    """The stop, its paragraph first naming another process's signal when that stopped this one."""
    cause = f"{loop.stop.cause}: " if loop.stop.cause else ""
    return Preempted(
        f"{cause}stopped at {rundir.position(step, loop.per_epoch)} and saved a checkpoint in "
        f"{loop.ckpts.root / 'latest'}. Run {_again()} to resume from there.",
        loop.stop.by_user,
    )


def _device_layout() -> list[int]:
    """[devices, processes]: what dropout's draws and CutMix's pairs follow; a checkpoint's record
    keeps it, so that a resume on others can say the run is no longer bit for bit the same."""
    return [jax.device_count(), jax.process_count()]


def _devices(devices: int, processes: int) -> str:
    """'2 devices over 2 processes', '1 device'."""
    over = f" over {processes} processes" if processes > 1 else ""
    return rundir.count(devices, "device") + over


def _again() -> str:
    """How a stopped run is resumed: by its command, or by the commands of all its processes."""
    if jax.process_count() == 1:
        return "the same command again"
    return "the same commands again, on every process,"


def _check_finite(
    collection, epoch: int, ckpts: checkpoints.Checkpoints, names: list[str]
) -> dict[str, np.ndarray]:
    """The collection's values; TrainingDiverged when any run's loss became NaN or inf. With several
    runs the process stops too, naming the run (its hyper-parameters are the likely cause)."""
    values = _summary_values(collection, len(names))
    bad = values.pop("first_nonfinite_step").astype(int)
    for k, step in enumerate(bad):  # the first step whose loss was not finite, or -1
        if step >= 0 or not np.isfinite(values["loss"][k]):
            message = _diverged_message(step + 1, epoch, ckpts, "training loss", names, k)
            raise TrainingDiverged(message)
    return values


def _diverged_message(
    step: int, epoch: int, ckpts: checkpoints.Checkpoints, what: str, names: list[str], k: int
) -> str:
    """What broke where, the checkpoint kept, and what to change. Of several runs (`names`), run
    `k` is named (its swept values, its seed). The same command would diverge again, and a run
    with a checkpoint resumes only with the settings it started with (its runs, its learning rate),
    so the fix goes into a new workdir."""
    run = names[k] if len(names) > 1 else ""
    last = ckpts.latest_step()
    kept = (
        f"The last good checkpoint (step {last}) is kept in {ckpts.root / 'latest'}"
        if last is not None
        else "No checkpoint was written yet"
        + ("" if run else " (the same command starts the run afresh)")
    )
    anew = "; then start again with a new --workdir, as a resumed run keeps its {}."
    if run:
        swept = "" not in runs.sweep_points([run])  # its name holds a swept value
        fix = (
            "Drop or lower the swept value that run names (config.sweep)"
            if swept
            else "Lower config.learning_rate, or try config.grad_clip_norm"
        ) + anew.format("runs")
    else:
        fix = (
            "Check the learning rate (config.learning_rate, warmup), the input normalisation, and "
            "try config.grad_clip_norm, or dtype='float32' for a bfloat16 run"
        ) + (anew.format("settings") if last is not None else ".")
    message = f"the {what} became NaN or inf at step {step} (epoch {epoch + 1}). {kept}. {fix}"
    return f"run {run}: {message}" if run else message
