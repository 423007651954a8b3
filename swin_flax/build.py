"""From a config to the model, its schedule, the optimiser and the pmapped steps: all `train.py`
builds but the data, without TensorFlow (the benchmarks, `evaluate` and `predict` need only JAX)."""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import ml_collections
import numpy as np
import optax

from swin_flax import optim, steps
from swin_flax.errors import ConfigError
from swin_flax.models import swin


def model_from_config(config: ml_collections.ConfigDict) -> swin.SwinTransformer:
    """The run's SwinTransformer: `config.model` with the config's dtype, remat and scan_blocks."""
    return swin.create_model(config.model, config.dtype, config.remat, config.scan_blocks)


# The config fields that are, by the same name, `optim.learning_rate_table`'s schedule arguments and
# `optim.create_optimizer`'s AdamW settings (besides the schedule and the weight decay).
SCHEDULE_FIELDS = (
    "schedule", "learning_rate", "warmup_epochs", "warmup_lr_init", "lr_min", "cosine_epochs",
    "warmup_prefix",
)  # fmt: skip
ADAMW_FIELDS = ("b1", "b2", "eps", "weight_decay_exempt", "grad_clip_norm", "layer_decay")


def learning_rate_table(config: ml_collections.ConfigDict, steps_per_epoch: int):
    """(table, steps per entry) of the config's schedule: `optim.learning_rate_table`."""
    schedule = {f: config[f] for f in SCHEDULE_FIELDS}
    return optim.learning_rate_table(steps_per_epoch=steps_per_epoch, **schedule)


def check_run_length(config: ml_collections.ConfigDict, steps_per_epoch: int) -> None:
    """ConfigError when the run has more steps than the step counter holds, or its schedule more
    learning rates than a table may (optim.MAX_TABLE): checked once the data are read."""
    if config.num_epochs * steps_per_epoch >= 2**31:
        raise ConfigError(
            f"config.num_epochs: {config.num_epochs} epochs of {steps_per_epoch} steps are more "
            "steps than the train state's step counter holds (2**31 - 1); train at most "
            f"{(2**31 - 1) // steps_per_epoch} epochs."
        )
    schedule = {f: config[f] for f in SCHEDULE_FIELDS}
    entries, per = optim.table_size(steps_per_epoch=steps_per_epoch, **schedule)
    if entries > optim.MAX_TABLE:
        field = max(("warmup_epochs", "cosine_epochs"), key=lambda f: config[f])
        most = (optim.MAX_TABLE - 1) * per // steps_per_epoch
        per_step = config.schedule == "cosine_step"
        each = f"step, {steps_per_epoch} an epoch" if per_step else "epoch"
        raise ConfigError(
            f"config.{field}: a schedule of {config.warmup_epochs} + {config.cosine_epochs} "
            f"epochs (warmup_epochs + cosine_epochs) holds {entries:,} learning rates, one per "
            f"{each}: more than its table may ({optim.MAX_TABLE:,}). Make the two at most "
            f"{most:,} epochs together"
            + (", or give schedule='cosine_epoch' (one per epoch)." if per_step else ".")
        )


def create_learning_rate_fn(config: ml_collections.ConfigDict, steps_per_epoch: int):
    """The config's schedule on the host (step -> lr, numpy; the steps' own table), for reports."""
    return optim.table_schedule(*learning_rate_table(config, steps_per_epoch), xp=np)


def short_run_warning(config: ml_collections.ConfigDict, steps_per_epoch: int) -> str | None:
    """Why the run stops early in its schedule (in the warmup, or not half way down the cosine: e.g.
    --config.num_epochs=10 on the strong recipe) with the settings that fit it, else None."""
    stop = _where_the_run_stops(config, steps_per_epoch)
    if stop is None:
        return None
    n, warmup, cosine = config.num_epochs, config.warmup_epochs, config.cosine_epochs
    fit = {"warmup_epochs": warmup if 2 * warmup <= n else n // 10}
    fit["cosine_epochs"] = n - fit["warmup_epochs"] if config.warmup_prefix else n
    fitted = config.copy_and_resolve_references()
    fitted.update(fit)
    if _where_the_run_stops(fitted, steps_per_epoch) is not None:  # 1 cosine epoch, per epoch
        fit["schedule"] = "cosine_step"
    flags = " ".join(f"--config.{k}={v}" for k, v in fit.items() if v != config[k])
    if not flags:  # already the best fit (a run of a step or two): nothing to suggest
        return None
    last, where = stop
    end = warmup + cosine if config.warmup_prefix else max(warmup, cosine)
    laid_out = f"{warmup} warmup + {cosine} cosine epochs"
    if not config.warmup_prefix:
        laid_out = f"a {warmup}-epoch warmup within a {cosine}-epoch cosine"
    why = f"the schedule is laid out for {laid_out} and this run trains {n}"
    if end <= n and config.schedule == "cosine_epoch" and where != _IN_WARMUP:  # too coarse
        why = (
            f"the schedule's rate changes once an epoch (cosine_epoch), and its cosine has "
            f"{cosine} epoch{'s' * (cosine != 1)}"
        )
    return (
        f"{why}: its last step's learning rate is {last:.3g} ({where}; "
        f"learning_rate {config.learning_rate:g}, lr_min {config.lr_min:g}). To fit the schedule "
        f"to {n} epoch{'s' * (n != 1)}: {flags}."
    )


def past_schedule_warning(config: ml_collections.ConfigDict) -> str | None:
    """The epochs trained at lr_min after the schedule ends (a resume cannot change it), or None."""
    warmup, cosine = config.warmup_epochs, config.cosine_epochs
    end = warmup + cosine if config.warmup_prefix else max(warmup, cosine)
    if config.schedule == "constant" or config.num_epochs <= end:
        return None
    n = config.num_epochs
    after = f"epoch {n} trains" if n == end + 1 else f"epochs {end + 1}-{n} train"
    lr_min = "each run's lr_min" if config.sweep.lr_min else f"lr_min ({config.lr_min:g})"
    fit = n - (warmup if config.warmup_prefix else 0)
    return (
        f"the schedule ends at epoch {end}: {after} at {lr_min}. A schedule over all {n} epochs "
        f"is a new run's (--config.cosine_epochs={fit} and a new --workdir)."
    )


_IN_WARMUP = "still in the warmup"  # where a run stops that ends before its warmup does


def _where_the_run_stops(
    config: ml_collections.ConfigDict, steps_per_epoch: int
) -> tuple[float, str] | None:
    """(last step's rate, where) if the run stops in the warmup or the cosine's first half."""
    peak, lr_min = config.learning_rate, config.lr_min
    if config.schedule == "constant" or peak == lr_min:
        return None
    per_epoch = config.schedule == "cosine_epoch"  # its lr is constant within an epoch
    t = config.num_epochs - (1 if per_epoch else 1 / steps_per_epoch)
    last = optim.epoch_learning_rate(t, **{f: config[f] for f in SCHEDULE_FIELDS})
    if t < config.warmup_epochs:
        return last, _IN_WARMUP
    if np.isclose(last, peak, rtol=1e-9, atol=0):  # a cosine stepped per epoch, at its first epoch
        return last, "at the peak: the cosine has not begun"
    if (peak - last) / (peak - lr_min) < 0.5:
        return last, "the cosine less than half way down to lr_min"
    return None


def create_optimizer(
    config: ml_collections.ConfigDict, steps_per_epoch: int, in_state: bool = False
) -> optax.GradientTransformation:
    """The config's AdamW. `in_state`: the schedule's table and the weight decay are arrays in the
    optimiser state (optax.inject_hyperparams), which a sweep sets per run (`run_hyperparams`)."""
    table, per_entry = learning_rate_table(config, steps_per_epoch)

    def adamw(lr_table, weight_decay):
        return optim.create_optimizer(
            learning_rate_fn=optim.table_schedule(lr_table, per_entry),
            weight_decay=weight_decay,
            depths=tuple(config.model.depths),
            **{f: config[f] for f in ADAMW_FIELDS},
        )

    if in_state:
        adamw = optax.inject_hyperparams(adamw)
    return adamw(table, config.weight_decay)


def run_hyperparams(run_configs, steps_per_epoch: int) -> dict[str, np.ndarray]:
    """The `in_state` optimiser's hyper-parameters of each run, stacked on a leading run axis."""
    tables = [learning_rate_table(c, steps_per_epoch)[0] for c in run_configs]
    decays = [c.weight_decay for c in run_configs]
    return {"lr_table": np.stack(tables), "weight_decay": np.array(decays, np.float32)}


def pmap_train_step(num_runs: int = 1, per_run_data: bool = False) -> Callable:
    """steps.train_step pmapped, the state donated and the dropout key (one per run) replicated;
    for several runs vmapped over the state's and keys' run axis (the batch's if `per_run_data`)."""
    step = steps.train_step
    if num_runs > 1:
        step = jax.vmap(step, in_axes=(0, 0 if per_run_data else None, 0))
    return jax.pmap(step, axis_name=steps.AXIS, in_axes=(0, 0, None), donate_argnums=(0,))


def pmap_eval_step(apply_fn: Callable, num_runs: int = 1) -> Callable:
    """steps.eval_step under jax.pmap; for several runs vmapped over the params' run axis."""
    step = functools.partial(steps.eval_step, apply_fn=apply_fn)
    if num_runs > 1:
        step = jax.vmap(step, in_axes=(0, None))
    return jax.pmap(step, axis_name=steps.AXIS)
