"""swin_flax.optim against timm's CosineLRScheduler and torch.optim.AdamW (tests/fixtures/optim.npz,
written by scripts/fixtures/make_optim_fixtures.py) and against the published formulas."""

from __future__ import annotations

import importlib.util
import inspect
import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from swin_flax import optim
from swin_flax.config import default_config

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = np.load(ROOT / "tests/fixtures/optim.npz")
META = json.loads(str(FIXTURE["meta"]))


def _load_config(name: str):
    spec = importlib.util.spec_from_file_location(f"_cfg_{name}", ROOT / "configs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def learning_rate_schedule(**table_args) -> optax.Schedule:
    """The optax schedule of `optim.learning_rate_table(**table_args)`, as the optimiser reads it."""
    return optim.table_schedule(*optim.learning_rate_table(**table_args))


def _schedule_kwargs(case: dict) -> dict:
    """A fixture case (timm's argument names) as learning_rate_schedule's keyword arguments."""
    return dict(
        learning_rate=META["base_lr"],
        warmup_epochs=case["warmup_t"],
        warmup_lr_init=case["warmup_lr_init"],
        lr_min=case["lr_min"],
        cosine_epochs=case["t_initial"],
        warmup_prefix=case["warmup_prefix"],
    )


def _lr_at_positions(fn, num_epochs: int, steps_per_epoch: int) -> np.ndarray:
    """fn at the first, second, middle and last step of every epoch: [num_epochs, 4]."""
    offsets = np.array([0, 1, steps_per_epoch // 2, steps_per_epoch - 1])
    steps = np.arange(num_epochs)[:, None] * steps_per_epoch + offsets[None, :]
    return np.asarray(jax.jit(fn)(jnp.asarray(steps)), np.float64)


# ----------------------------------------------------------------------------- schedules


def test_strong_config_schedule_equals_timm_in_every_epoch():
    """configs/strong.py, 300 epochs of 49 steps (50,000 / 1024, last batch kept): each epoch's lr
    at several steps equals the lr timm's scheduler gave that epoch in the recipe's loop."""
    c = _load_config("strong")
    expected = FIXTURE["sched.strong"]
    assert expected.shape == (c.num_epochs,) == (300,)
    # The fixture is the recipe's description: 1e-4 at epoch 0, linear to 1e-3 at epoch 20.
    np.testing.assert_allclose(expected[[0, 10, 20]], [1e-4, 5.5e-4, 1e-3], rtol=1e-12)
    fn = learning_rate_schedule(
        schedule=c.schedule,
        learning_rate=c.learning_rate,
        steps_per_epoch=49,
        warmup_epochs=c.warmup_epochs,
        warmup_lr_init=c.warmup_lr_init,
        lr_min=c.lr_min,
        cosine_epochs=c.cosine_epochs,
        warmup_prefix=c.warmup_prefix,
    )
    got = _lr_at_positions(fn, c.num_epochs, 49)
    np.testing.assert_allclose(got, np.repeat(expected[:, None], 4, axis=1), rtol=1e-6, atol=0)


@pytest.mark.parametrize("case", sorted(META["epoch_cases"]))
def test_cosine_epoch_equals_timm(case):
    spec = META["epoch_cases"][case]
    expected = FIXTURE[f"sched.{case}"]
    fn = learning_rate_schedule(
        schedule="cosine_epoch",
        steps_per_epoch=3,
        **_schedule_kwargs(spec),
    )
    got = _lr_at_positions(fn, spec["epochs"], 3)
    np.testing.assert_allclose(got, np.repeat(expected[:, None], 4, axis=1), rtol=1e-6, atol=0)
    # Long after the cycle, timm's lr stays at lr_min.
    np.testing.assert_allclose(float(fn(10_000 * 3)), spec["lr_min"], rtol=1e-6)


@pytest.mark.parametrize("case", sorted(META["epoch_cases"]))
def test_epoch_learning_rate_equals_timm(case):
    spec = META["epoch_cases"][case]
    kwargs = _schedule_kwargs(spec)
    got = [
        optim.epoch_learning_rate(e, schedule="cosine_epoch", **kwargs)
        for e in range(spec["epochs"])
    ]
    np.testing.assert_allclose(got, FIXTURE[f"sched.{case}"], rtol=1e-12, atol=0)
    assert optim.epoch_learning_rate(7, schedule="constant", learning_rate=3e-4) == 3e-4


def test_strong_noprefix_is_timm_default_semantics():
    """warmup_prefix=False: the cosine clock includes the warmup; epoch 20 is past the peak."""
    lr = FIXTURE["sched.strong_noprefix"]
    expected_20 = 1e-4 + 0.5 * 9e-4 * (1 + math.cos(math.pi * 20 / 300))
    np.testing.assert_allclose(lr[20], expected_20, rtol=1e-12)
    assert lr[20] < 1e-3


@pytest.mark.parametrize("case", sorted(META["step_cases"]))
def test_cosine_step_equals_timm_per_update(case):
    """'cosine_step' equals timm's scheduler in update counts (t_in_epochs=False), at every step."""
    spec = META["step_cases"][case]
    spe = spec["steps_per_epoch"]
    expected = FIXTURE[f"sched.{case}"]
    fn = learning_rate_schedule(
        schedule="cosine_step",
        steps_per_epoch=spe,
        **_schedule_kwargs(spec),
    )
    got = np.asarray(jax.jit(fn)(jnp.arange(expected.size)), np.float64)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6 * META["base_lr"])


def _closed_form(t: float) -> float:
    """The strong recipe's curve at fractional epoch t, written out from timm's formula."""
    if t < 20:
        return 1e-4 + t * (1e-3 - 1e-4) / 20
    return 1e-4 + 0.5 * (1e-3 - 1e-4) * (1 + math.cos(math.pi * (t - 20) / 300))


def test_cosine_step_matches_closed_form_and_epoch_boundaries():
    spe = 49
    kwargs = dict(
        learning_rate=1e-3,
        steps_per_epoch=spe,
        warmup_epochs=20,
        warmup_lr_init=1e-4,
        lr_min=1e-4,
        cosine_epochs=300,
        warmup_prefix=True,
    )
    per_step = learning_rate_schedule(schedule="cosine_step", **kwargs)
    per_epoch = learning_rate_schedule(schedule="cosine_epoch", **kwargs)
    steps = np.array([0, 1, 24, 48, 49, 500, 979, 980, 981, 5000, 5001, 9999, 14_699])
    got = np.asarray(jax.jit(per_step)(jnp.asarray(steps)), np.float64)
    expected = [_closed_form(s / spe) for s in steps]
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=0)
    # Within an epoch the per-step lr moves (it is not the per-epoch staircase) ...
    assert got[0] < got[1] < got[2] < got[3] and got[9] > got[10]
    # ... and at every epoch boundary both schedules agree.
    boundaries = jnp.arange(300) * spe
    np.testing.assert_allclose(
        np.asarray(jax.jit(per_step)(boundaries)),
        np.asarray(jax.jit(per_epoch)(boundaries)),
        rtol=1e-6,
        atol=0,
    )


def test_a_run_shorter_than_its_schedule_is_warned_about_with_the_settings_that_fit_it():
    """strong.py's schedule: 20 warmup + 300 cosine epochs (lr 1e-3 from 1e-4, down to 1e-4), per
    epoch. Its own 300 epochs end near lr_min: no warning. 10 epochs end in the warmup (timm's
    linear warmup at epoch 9: 1e-4 + 9 * 9e-4 / 20); 100 end with the cosine at
    0.5 * (1 - cos(pi * 79 / 300)) = 16% of the way down; 200 at 65%, past half: no warning. The
    suggested settings, never the ones given, end the run at the cosine's end: for 2 epochs with a
    1-epoch warmup, 1 cosine epoch stepped per epoch stays at its peak, so per step."""
    from swin_flax import build  # noqa: PLC0415

    config = _load_config("strong")
    spe = 49  # 50,000 images in batches of 1,024
    assert build.short_run_warning(config, spe) is None
    config.num_epochs = 10
    warning = build.short_run_warning(config, spe)
    assert f"learning rate is {1e-4 + 9 * 9e-4 / 20:.3g} (still in the warmup" in warning
    assert warning.endswith("--config.warmup_epochs=1 --config.cosine_epochs=9."), warning
    config.num_epochs = 100
    warning = build.short_run_warning(config, spe)
    last = 1e-4 + 0.5 * 9e-4 * (1 + math.cos(math.pi * 79 / 300))
    assert f"learning rate is {last:.3g} (the cosine less than half way" in warning
    assert warning.endswith(": --config.cosine_epochs=80."), warning  # warmup_epochs stays 20
    for n, warmup, cosine in ((10, 1, 9), (100, 20, 80)):
        config.num_epochs, config.warmup_epochs, config.cosine_epochs = n, warmup, cosine
        assert build.short_run_warning(config, spe) is None
    config.num_epochs, config.warmup_epochs, config.cosine_epochs = 200, 20, 300
    assert build.short_run_warning(config, spe) is None
    config.num_epochs, config.warmup_epochs, config.cosine_epochs = 2, 1, 1
    warning = build.short_run_warning(config, spe)
    assert warning.startswith("the schedule's rate changes once an epoch (cosine_epoch), and its")
    assert (
        "cosine has 1 epoch: its last step's learning rate is 0.001 (at the peak: the cosine "
        in warning
    )
    assert warning.endswith("epochs: --config.schedule=cosine_step."), warning
    config.schedule = "cosine_step"  # its last step: 1/49 of an epoch before lr_min
    assert build.short_run_warning(config, spe) is None
    config.num_epochs, config.warmup_epochs, config.cosine_epochs = 1, 0, 1
    assert build.short_run_warning(config, 1) is None  # one step: no schedule fits it better
    # timm's default layout (warmup_prefix False: the cosine counts from epoch 0): a 5-epoch
    # warmup within a 3-epoch cosine, over 5 epochs, ends in the warmup whatever the stepping.
    config.warmup_prefix, config.num_epochs, config.warmup_epochs, config.cosine_epochs = (
        False, 5, 5, 3
    )  # fmt: skip
    for config.schedule in ("cosine_epoch", "cosine_step"):
        warning = build.short_run_warning(config, spe)
        assert (
            warning.startswith(
                "the schedule is laid out for a 5-epoch warmup within a 3-epoch cosine and this run "
                "trains 5: its last step's learning rate is "
            )
            and "(still in the warmup;" in warning
        ), warning
    config.num_epochs, config.schedule, config.warmup_epochs = 10, "constant", 0
    assert build.short_run_warning(config, spe) is None


def test_a_run_longer_than_its_schedule_is_told_which_epochs_train_at_lr_min():
    """strong.py's cosine of 300 epochs is counted after its 20 warmup epochs: the schedule ends at
    epoch 320, after the run's own 300. 400 epochs (a finished run extended) train 321-400 at
    lr_min, which optim.epoch_learning_rate confirms. With the cosine counted from epoch 0 (timm's
    default) it ends at 300. A constant schedule has no end."""
    from swin_flax import build  # noqa: PLC0415

    config = _load_config("strong")
    assert build.past_schedule_warning(config) is None
    config.num_epochs = 400
    fields = {f: config[f] for f in build.SCHEDULE_FIELDS}
    assert optim.epoch_learning_rate(320, **fields) == config.lr_min == 1e-4
    assert optim.epoch_learning_rate(319.5, **fields) > config.lr_min
    assert build.past_schedule_warning(config) == (
        "the schedule ends at epoch 320: epochs 321-400 train at lr_min (0.0001). A schedule over "
        "all 400 epochs is a new run's (--config.cosine_epochs=380 and a new --workdir)."
    )
    config.warmup_prefix, config.num_epochs = False, 300
    assert build.past_schedule_warning(config) is None
    config.num_epochs = 301
    assert build.past_schedule_warning(config).startswith(
        "the schedule ends at epoch 300: epoch 301 trains at lr_min"
    )
    assert "--config.cosine_epochs=301 " in build.past_schedule_warning(config)
    config.sweep.lr_min = (0.0, 1e-4)
    assert " at each run's lr_min. " in build.past_schedule_warning(config)
    # A warmup longer than the cosine, counted from epoch 0: the schedule ends with the warmup.
    config.warmup_epochs, config.cosine_epochs, config.num_epochs = 5, 3, 5
    fields = {f: config[f] for f in build.SCHEDULE_FIELDS}
    assert optim.epoch_learning_rate(4.5, **fields) > optim.epoch_learning_rate(4, **fields)
    assert build.past_schedule_warning(config) is None
    config.num_epochs = 6
    assert build.past_schedule_warning(config).startswith("the schedule ends at epoch 5: epoch 6")
    config.schedule = "constant"
    assert build.past_schedule_warning(config) is None


def test_constant_schedule():
    fn = learning_rate_schedule(schedule="constant", learning_rate=1e-3, steps_per_epoch=49)
    for step in (0, 48, 49, 14_699, 10**6):
        assert float(fn(step)) == pytest.approx(1e-3, rel=1e-7)


# ----------------------------------------------------------------------------- AdamW


def _nest(flat: dict) -> dict:
    """{'a.b.c': x} -> {'a': {'b': {'c': x}}} (Flax's params layout)."""
    tree: dict = {}
    for name, value in flat.items():
        *parents, leaf = name.split(".")
        node = tree
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return tree


def _fixture_tree(case: str, tag: str) -> dict:
    prefix = f"adamw.{case}.{tag}."
    return _nest({k[len(prefix) :]: FIXTURE[k] for k in FIXTURE.files if k.startswith(prefix)})


@pytest.mark.parametrize("case", sorted(META["adamw_cases"]))
def test_adamw_steps_equal_torch(case):
    spec = META["adamw_cases"][case]
    lrs = jnp.asarray(spec["lrs"], jnp.float32)
    tx = optim.create_optimizer(
        learning_rate_fn=lambda count: lrs[count],
        weight_decay=spec["weight_decay"],
        weight_decay_exempt=spec["exempt"],
    )
    params = jax.tree.map(jnp.asarray, _fixture_tree(case, "p0"))
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, grads):
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    for k in range(1, spec["steps"] + 1):
        params, opt_state = step(params, opt_state, _fixture_tree(case, f"g{k}"))
        expected = _fixture_tree(case, f"p{k}")
        for path, got in jax.tree_util.tree_leaves_with_path(params):
            want = expected
            for key in path:
                want = want[key.key]
            np.testing.assert_allclose(
                np.asarray(got), want, rtol=1e-6, atol=1e-7, err_msg=f"step {k} {path}"
            )


def test_defaults_follow_torch_not_optax():
    """torch.optim.AdamW's defaults (from the fixture) are the config's; not optax's."""
    torch_defaults = META["torch_adamw_defaults"]
    assert inspect.signature(optax.adamw).parameters["weight_decay"].default == 1e-4
    assert torch_defaults["weight_decay"] == 0.01
    c = default_config()
    assert c.weight_decay == torch_defaults["weight_decay"]
    assert _load_config("baseline").weight_decay == torch_defaults["weight_decay"]
    assert [c.b1, c.b2] == torch_defaults["betas"]
    assert c.eps == torch_defaults["eps"]
    assert c.learning_rate == torch_defaults["lr"]
    # create_optimizer has no weight-decay default to fall back on.
    assert inspect.signature(optim.create_optimizer).parameters["weight_decay"].default is (
        inspect.Parameter.empty
    )


# ----------------------------------------------------------------------------- decay mask


def _swin_like_params() -> dict:
    z = lambda shape: np.ones(shape, np.float32)
    return {
        "absolute_pos_embed": z((1, 4, 8)),
        "patch_embed": {
            "proj": {"kernel": z((2, 2, 3, 8)), "bias": z((8,))},
            "norm": {"scale": z((8,)), "bias": z((8,))},
        },
        "layers_0": {
            "blocks_0": {
                "attn": {
                    "relative_position_bias_table": z((9, 2)),
                    "qkv": {"kernel": z((8, 24)), "bias": z((24,))},
                },
                "mlp": {"fc1": {"kernel": z((8, 32)), "bias": z((32,))}},
            },
            "downsample": {"reduction": {"kernel": z((32, 16))}, "norm": {"scale": z((32,))}},
        },
        "head": {"kernel": z((8, 10)), "bias": z((10,))},
    }


EXPECTED_MASK = {
    "absolute_pos_embed": False,
    "patch_embed": {
        "proj": {"kernel": True, "bias": False},
        "norm": {"scale": False, "bias": False},
    },
    "layers_0": {
        "blocks_0": {
            "attn": {
                "relative_position_bias_table": False,
                "qkv": {"kernel": True, "bias": False},
            },
            "mlp": {"fc1": {"kernel": True, "bias": False}},
        },
        "downsample": {"reduction": {"kernel": True}, "norm": {"scale": False}},
    },
    "head": {"kernel": True, "bias": False},
}


def test_weight_decay_mask_follows_official_swin():
    assert optim.weight_decay_mask(_swin_like_params()) == EXPECTED_MASK


@pytest.mark.parametrize("exempt", [False, True])
def test_decay_applies_where_the_mask_says(exempt):
    """With zero grads Adam's step is 0, so each param is only decayed: p * (1 - lr * wd) or p."""
    lr, wd = 1e-2, 0.5
    params = _swin_like_params()
    tx = optim.create_optimizer(learning_rate_fn=lr, weight_decay=wd, weight_decay_exempt=exempt)
    zeros = jax.tree.map(np.zeros_like, params)
    updates, _ = jax.jit(lambda g, p: tx.update(g, tx.init(p), p))(zeros, params)
    new = jax.tree.map(lambda p, u: np.asarray(p + u), params, updates)
    decayed = jax.tree.map(lambda m: m or not exempt, EXPECTED_MASK)
    expected = jax.tree.map(lambda d, p: p * (1 - lr * wd) if d else p, decayed, params)
    jax.tree.map(lambda g, e: np.testing.assert_allclose(g, e, rtol=1e-7), new, expected)


# ----------------------------------------------------------------------------- clipping


@pytest.mark.parametrize("clip, scale", [(1e-8, 0.2), (1e-6, 1.0), (0.0, 1.0)])
def test_global_norm_clipping(clip, scale):
    """Grads near eps make Adam's first step g / (|g| + eps) depend on their size: clipping shows.

    Global norm of the grads is 5e-8: clip 1e-8 scales them by 0.2 (the step drops from 0.75 * lr
    to 0.375 * lr); clip 1e-6 and 0 (off) leave them. rtol 1e-4: with |g| ~ eps the step feels
    optax's float32 bias correction 1 - b2**t (relative error ~3e-5 at t = 1; torch uses float64).
    """
    lr, eps = 1e-3, 1e-8
    grads = {"a": jnp.array([3e-8, 0.0]), "b": {"c": jnp.array([[-4e-8]])}}
    params = jax.tree.map(jnp.zeros_like, grads)
    tx = optim.create_optimizer(learning_rate_fn=lr, weight_decay=0.0, grad_clip_norm=clip)
    updates, _ = jax.jit(lambda g, p: tx.update(g, tx.init(p), p))(grads, params)
    # First AdamW step from the published rule: m_hat = g, v_hat = g^2.
    expected = jax.tree.map(lambda g: -lr * (scale * g) / (jnp.abs(scale * g) + eps), grads)
    jax.tree.map(
        lambda u, e: np.testing.assert_allclose(u, e, rtol=1e-4, atol=0), updates, expected
    )
