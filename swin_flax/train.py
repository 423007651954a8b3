"""The training loop: `train_and_evaluate(config, workdir)` trains, evaluates after every epoch,
writes TensorBoard summaries (process 0 only) and checkpoints (`latest` to resume from, `best` by test
accuracy), and resumes from the latest checkpoint when the workdir already has one.

Read top down from `_train`: `_start` (everything before the first step), then per epoch
`_train_whole_epoch` (`train_epoch`'s steps), `evaluate_params`, `_report_epoch`, `_save_epoch`;
then `_finish` (the summary)."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import json
import shlex
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
from flax import jax_utils

from swin_flax import (
    build,
    checkpoints,
    distributed,
    finetune,
    reports,
    rundir,
    runfiles,
    runs,
    steps,
)
from swin_flax.config import validate
from swin_flax.data import inputs
from swin_flax.errors import ConfigError, Preempted, TrainingDiverged, WorkdirMoved
from swin_flax.models import swin
from swin_flax.progress import Progress, as_json, device_layout, from_json
from swin_flax.stop import StopFlag, again


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
    """Loss, accuracy and top-5 accuracy of each run over all batches (padding masked out)."""
    gathered = (steps.unreplicate(p_eval_step(params, b)) for b in batches)  # all copies equal
    return _summary_values(functools.reduce(lambda a, b: a.merge(b), gathered), num_runs)


def initial_state(
    config: ml_collections.ConfigDict,
    run_set: runs.RunSet,
    model: swin.SwinTransformer,
    steps_per_epoch: int,
    saved: dict[str, Any] | None,
    ckpts: checkpoints.Checkpoints,
    pretrained: dict[str, np.ndarray] | None = None,
) -> tuple[steps.TrainState, Progress, str]:
    """The train state to start from (the latest checkpoint, else the `pretrained` state_dict that
    finetune.read_pretrained read from config.pretrained, else a fresh initialisation from each run's
    init key), the progress its record holds and the pretrained load report ('' if none). Several runs
    stack their states on a leading axis; a sweep's optimiser holds each run's hyper-parameters."""
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
        return state.replace(**restored), Progress.from_record(meta), ""
    if pretrained is not None:  # AdamW's moments start at zero whatever the params: swap them in
        load = lambda p: finetune.load_pretrained(
            pretrained,
            model,
            p,
            name=str(runfiles.absolute(config.pretrained)),
            load_head=config.pretrained_head,
        )
        if run_set.count == 1:
            params, report = load(state.params)
        else:  # the same pretrained body; each run's own head init unless pretrained_head
            inits = [jax.tree.map(lambda x, k=k: x[k], state.params) for k in range(run_set.count)]
            each, reports = zip(*map(load, inits), strict=True)
            params, report = jax.tree.map(lambda *xs: np.stack(xs), *each), reports[0]
        said = report.summary()  # the same for every run
        logging.info("%s", said)
        return state.replace(params=params), Progress(run_set.count), said
    return state, Progress(run_set.count), ""


def train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str, command: str | None = None
) -> dict[str, Any]:
    """Runs (or resumes) the training described by `config` in `workdir`; returns the summary.
    `command`: the command line that started it (scripts/main.py's), recorded in config.txt.
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
            return rundir.report_finished(workdir, saved, config)
        with rundir.Claim(workdir, active=jax.process_index() == 0) as claim:
            try:
                return _train(config, workdir, saved, claim, start_up, t_start, command)
            except BaseException:
                if saved is None and claim.made is not None and not claim.refused:
                    rundir.undo_start(workdir, claim.made)  # not reached, or another's folders
                raise


@dataclasses.dataclass(frozen=True)
class Session:
    """What the loop holds fixed from a session's first step (`start`) to its end or stop."""

    config: ml_collections.ConfigDict
    workdir: epath.Path
    t_start: float  # the session's start (time.time())
    per_epoch: int  # steps
    start: int
    names: list[str]  # the runs'
    p_train_step: Callable
    dropout_keys: jax.Array
    lr_fns: list[Callable]
    p_eval_step: Callable
    eval_batches: Iterable[dict[str, np.ndarray]]
    ckpts: checkpoints.Checkpoints
    writers: reports.Writers
    ticker: reports.Ticker
    profile: periodic_actions.Profile | None
    stop: StopFlag
    claim: rundir.Claim


def _train(
    config, workdir: epath.Path, saved, claim: rundir.Claim, start_up, t_start: float, command
) -> dict:
    """train_and_evaluate's run in a workdir that needs training: each epoch is trained, evaluated,
    reported and saved; a stop saves and raises Preempted."""
    loop, state, progress, batches, best_params = _start(
        config, workdir, saved, claim, start_up, t_start, command
    )
    config, step, per_epoch = loop.config, loop.start, loop.per_epoch  # a resumed run's config
    # However the loop ends (finished, preempted, diverged) the summaries are closed, so the events
    # of the steps done are on disk, then the checkpoints: that waits for the writes in flight and
    # raises if one failed.
    with loop.stop, contextlib.closing(loop.ckpts), contextlib.closing(loop.writers):
        for epoch in range(step // per_epoch, config.num_epochs):  # counted from 0
            state, step, train, timing = _train_whole_epoch(
                loop, state, progress, batches, step, epoch
            )
            t_steps_done, loop.stop.now = time.time(), "evaluation"
            test = evaluate_params(
                loop.p_eval_step, state.params, loop.eval_batches, len(loop.names)
            )
            timing["eval_time"] = time.time() - t_steps_done
            _check_in_place(loop, step)
            improved = progress.improved(test["accuracy"], epoch + 1)
            _report_epoch(loop, progress, epoch + 1, step, train, test, improved, timing)
            stopping = epoch + 1 < config.num_epochs and loop.stop.requested()
            loop.stop.now = "step"
            record = progress.record(config, epoch + 1, step, per_epoch, time.time() - t_start)
            best_params = _save_epoch(
                loop, state, epoch + 1, step, record, improved, best_params, stopping
            )
            if stopping:
                raise _preempted(loop, step)
            loop.ticker.between_epochs = time.time() - t_steps_done
            loop.ticker.restart(step)
        _check_in_place(loop, step, done=True)  # its last saves went where the run is
        loop.writers.finish()
    return _finish(loop, record)


def _start(
    config, workdir: epath.Path, saved, claim: rundir.Claim, start_up, t_start: float, command
):
    """Everything before the first step: the model, a pretrained file and the data read and checked,
    the workdir created and claimed, the processes agreed (`start_up`), the train state (restored,
    pretrained or fresh) and the writers. Returns (Session, state, progress, batches, best params)."""
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
    _check_resume(config, workdir, saved, per_epoch, len(data.train_labels))
    _create_workdir(workdir, saved, claim, start_up)
    ckpts = checkpoints.Checkpoints(
        workdir, keep=config.keep_checkpoints, in_place=lambda: claim.moved() is None
    )
    state, progress, loaded = initial_state(
        config, run_set, model, per_epoch, saved, ckpts, pretrained
    )
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
        workdir=workdir,
        t_start=t_start,
        per_epoch=per_epoch,
        start=start,
        names=run_set.names,
        p_train_step=build.pmap_train_step(run_set.count, config.per_run_data),
        dropout_keys=run_set.keys()[1],
        lr_fns=[build.create_learning_rate_fn(c, per_epoch) for c in run_set.configs],
        p_eval_step=p_eval_step,
        eval_batches=eval_batches,
        ckpts=ckpts,
        writers=reports.open_writers(config, run_set, workdir, first_batch, start, loaded, command),
        ticker=reports.Ticker(30.0, config.batch_size, per_epoch, num_steps, run_set.count),
        profile=reports.profiler(config, workdir, start, num_steps),  # chief only
        stop=StopFlag(ckpts.root / "latest", sync_every=config.log_every_steps),
        claim=claim,
    )
    batches = jax_utils.prefetch_to_device(itertools.chain([first_batch], host_batches), 2)
    return loop, state, progress, batches, best_params


def _check_resume(config, workdir: epath.Path, saved, per_epoch: int, num_images: int) -> None:
    """A resumed run must keep its steps per epoch (refused otherwise); other devices are allowed,
    with a warning that the rest of the run is no longer bit for bit an uninterrupted one's."""
    if saved is None:
        return
    if saved.get("steps_per_epoch", per_epoch) != per_epoch:
        raise ConfigError(
            f"config.batch_size: the run in {workdir} has {saved['steps_per_epoch']} steps per "
            f"epoch, this config {per_epoch} (batch_size {config.batch_size}, "
            f"{num_images} training images). Resume with the batch size and data the "
            "run started with, or give a new --workdir."
        )
    now = device_layout()
    if saved.get("devices", now) != now and jax.process_index() == 0:
        logging.warning(
            f"{workdir} trained on {_devices(*saved['devices'])} and resumes on {_devices(*now)}: "
            "dropout's draws (and CutMix's pairs, made within each process's share of a batch) "
            "follow the devices, so the rest of the run differs from an uninterrupted one's (on "
            "the same devices it would be the same, bit for bit)."
        )


def _create_workdir(workdir: epath.Path, saved, claim: rundir.Claim, start_up) -> None:
    """Creates the workdir (as the checkpoint managers would), claims it, and waits for every
    process to be ready: before orbax's first barrier, as from here on the processes' collectives
    must match. Notes the folders it makes (`claim.made`) for a start that fails to remove."""
    claim.made = list(itertools.takewhile(lambda p: not p.exists(), (workdir, *workdir.parents)))
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # what rundir.inspect cannot foresee (a pseudo file system such as /proc)
        raise ConfigError(
            f"--workdir {workdir} cannot be created ({e.strerror or e}): give a folder you can create."
        ) from None
    claim.take()
    start_up.ready(
        "start afresh" if saved is None else f"resume after step {saved.get('step')}", workdir
    )


def _train_whole_epoch(loop: Session, state, progress, batches, step: int, epoch: int):
    """Trains epoch `epoch` (counted from 0) to its end, joined to the part a stop within it saved;
    returns (state, step, the train figures, the epoch's speed). A stop requested within the epoch
    saves that part (its metrics, time, and the steps since the last train_loss_step point) in
    latest/ and raises Preempted; a non-finite loss raises TrainingDiverged."""
    config, t_epoch, before = loop.config, time.time(), step
    unlogged = (progress.partial_epoch or {}).get("window")  # a stop's steps since its last point
    state, metrics, step, (seconds, done), unlogged = train_epoch(
        loop, state, batches, step, epoch, unlogged
    )
    progress.totals = progress.totals.plus(  # every step, the compile too
        train=time.time() - t_epoch, images=(step - before) * config.batch_size
    )
    images = done * config.batch_size  # the epoch's speed: its steps' (train_epoch)
    if (part := progress.partial_epoch) is not None:  # trained before a stop in this epoch
        metrics = from_json(metrics, part["metrics"]).merge(metrics)
        seconds, images = seconds + part["seconds"], images + part["images"]
    train = _check_finite(metrics, epoch, loop.ckpts, loop.names)
    if step % loop.per_epoch:  # stopped within the epoch: keep its part, save and stop
        progress.partial_epoch = dict(
            metrics=as_json(metrics), seconds=seconds, images=images, window=as_json(unlogged)
        )
        record = progress.record(config, epoch, step, loop.per_epoch, time.time() - loop.t_start)
        host_state = _finite_host_state(state, step, epoch, loop.ckpts, loop.names)
        _check_in_place(loop, step)
        loop.ckpts.save("latest", step, host_state, record)
        raise _preempted(loop, step)
    progress.partial_epoch = None
    speed = {
        "epoch_time": seconds,
        "images_per_sec": images / seconds,
        "steps_per_sec": images / config.batch_size / seconds,
    }
    return state, step, train, speed


def _check_in_place(loop: Session, step: int, done: bool = False, failed=None) -> None:
    """Stops the run before it writes (at an epoch's end, a stop; `done`: before its summary) if its
    workdir was moved or renamed while it trained (orbax would recreate the old path and split the
    run in two). The writes in flight are waited for first (`failed`: their failure, when the
    caller waited), so that the message says where each went. Process 0's claim tells every
    process, which all stop."""
    failed = loop.ckpts.wait() or failed
    now = distributed.gather(loop.claim.moved())[0]
    if now is None:
        if failed is not None:
            raise failed
        return
    last = checkpoints.newest_step(checkpoints.series_dir(now, "latest")) if now else None
    old, new, once = runfiles.absolute(loop.workdir), shlex.quote(now or "NEW_PATH"), ""
    lost = ""  # the writes the move stopped (Checkpoints' in_place)
    if isinstance(failed, WorkdirMoved):
        lost = f"; step {failed.step}'s checkpoints still queued as it moved were not written"
    if not old.exists():
        written = f": nothing was written at {loop.workdir}{lost}."
    elif runfiles.is_run_folder(old):  # a new run started under the freed name: not this one's
        written = f"{lost}. {old} holds another run now, left as it is."
    else:  # a save under way as the folder moved: orbax made the old path again
        made = [
            f"{runfiles.CHECKPOINTS}/{which}/{s}"
            for which in runfiles.SERIES
            for s in checkpoints.steps_held(checkpoints.series_dir(old, which))
        ]
        moves = "".join(f"mv {shlex.quote(str(old / m))} {new}/{m} && " for m in made)
        rm = f"rm -r {shlex.quote(str(old))}"
        written = f"{lost}. A save under way as it moved recreated {old}" + (
            f" and wrote {', '.join(made)} there: to keep them, {moves}{rm}; to drop them, {rm}."
            if made
            else f" (no complete checkpoint in it): {rm}."
        )
        kept = checkpoints.newest_step(checkpoints.series_dir(old, "latest"))
        if kept is not None and kept > (last or 0):
            last, once = kept, ", once moved"
    if not now:  # deleted, or no /proc to tell
        how = ", renamed or deleted while the run trained"
        resume = f"If it was moved, run {again()} with --workdir set to its new path to resume it."
    else:
        how = f" or renamed while the run trained: it is now {now}"
        resume = f"Run {again()} with --workdir {new} " + (
            f"to resume it from its last checkpoint (step {last}{once})."
            if last is not None
            else "to start it afresh there (no checkpoint was written yet)."
        )
    at = rundir.position(step, loop.per_epoch)
    stopped = f"trained to {at}, then stopped before its summary" if done else f"stopped at {at}"
    raise ConfigError(
        f"--workdir {loop.workdir} was moved{how}. The run {stopped} without saving, so as not to "
        f"split it{written} {resume}"
    )


def _report_epoch(loop: Session, progress, epoch: int, step: int, train, test, improved, timing):
    """The epoch's line on the console and its TensorBoard scalars (several runs: their spread)."""
    lr = _learning_rates(loop.lr_fns, step)
    best_accuracy = np.asarray(progress.best_accuracy)
    reports.report_epoch(
        loop.config, loop.writers, epoch, step, train, test, lr, best_accuracy, improved, timing
    )
    if progress.history:
        loop.writers.spread_plot(step, progress.history)


def _finish(loop: Session, record: dict) -> dict:
    """The run's summary, from the last checkpoint's record (so that running the same command
    again prints this one): announced, written to summary.json (process 0) and returned."""
    if loop.stop.signal is not None:  # after the last step where the processes could stop together
        name = signal.Signals(loop.stop.signal).name
        logging.warning(f"{name} came in the run's last steps: it finished instead of stopping.")
    summary = rundir.run_summary(record, loop.config.seed)
    rundir.announce(*rundir.summary_lines(summary, loop.workdir))
    if jax.process_index() == 0:
        (loop.workdir / runfiles.SUMMARY).write_text(json.dumps(summary, indent=2))
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


def train_epoch(loop: Session, state, batches, step: int, epoch: int, unlogged: Any = None):
    """Trains from global step `step` to the end of `epoch` (or a requested stop); returns (state, the
    merged train metrics, the step reached, (seconds, steps) timed: the session's first step, which
    compiles, left out when others follow, the steps since the last train_loss_step point). Logs
    the compile and a progress line every 30 s, and writes the train loss (a NaN:
    TrainingDiverged) and the learning rate every log_every_steps. `unlogged`: the steps a stop in
    this epoch left since its last point (their metrics as JSON), which the first one joins."""
    end, ticker = (epoch + 1) * loop.per_epoch, loop.ticker
    metrics = since_point = None  # the epoch's metrics; those since the last loss point
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
        if unlogged is not None:  # what the stopped session trained since its last point
            since_point, unlogged = from_json(m, unlogged), None
        since_point = m if since_point is None else since_point.merge(m)
        rate = ticker(step) if jax.process_index() == 0 else None
        if rate is not None and step < end:  # the epoch's own figure is written at its end
            loop.writers.root.write_scalars(step, {"steps_per_sec": rate})
        if step % loop.config.log_every_steps == 0:
            loss = _check_finite(since_point, epoch, loop.ckpts, loop.names)["loss"]
            scalars = {"train_loss_step": loss}
            if step < end:
                scalars["learning_rate"] = _learning_rates(loop.lr_fns, step)
            loop.writers.per_run(step, scalars)
            since_point = None
        if step < end and loop.stop.requested(step):  # at an epoch's end: evaluate first
            break
    jax.block_until_ready(metrics)  # the time counts the last steps on the device
    return state, metrics, step, (time.time() - t_timed, step - first_timed), since_point


def _learning_rates(lr_fns: list, step: int) -> np.ndarray:
    """Each run's learning rate in the step that brought the count to `step`."""
    return np.array([float(fn(step - 1)) for fn in lr_fns])


def _preempted(loop: Session, step: int) -> Preempted:
    """The stop, its paragraph first naming another process's signal when that stopped this one;
    once its save is written (one refused as the workdir moved: the stop says so, as the check)."""
    cause = f"{loop.stop.cause}: " if loop.stop.cause else ""
    if isinstance(failed := loop.ckpts.wait(), WorkdirMoved):  # seen by the writer alone
        try:
            _check_in_place(loop, step, failed=failed)
        except ConfigError as e:
            return Preempted(f"{cause}{e}", loop.stop.by_user)
    if failed is not None:
        raise failed
    return Preempted(
        f"{cause}stopped at {rundir.position(step, loop.per_epoch)} and saved a checkpoint in "
        f"{loop.ckpts.root / 'latest'}. Run {again()} to resume from there.",
        loop.stop.by_user,
    )


def _devices(devices: int, processes: int) -> str:
    """'2 devices over 2 processes', '1 device'."""
    over = f" over {processes} processes" if processes > 1 else ""
    return rundir.count(devices, "device") + over


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
