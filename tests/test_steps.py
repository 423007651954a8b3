"""Train and eval steps: pmapped over 2 devices they equal one device with the same global batch."""

import functools

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from swin_flax import optim, steps
from swin_flax.models import swin

TINY = dict(
    img_size=16,
    patch_size=2,
    in_chans=3,
    num_classes=5,
    embed_dim=16,
    depths=(2, 1),
    num_heads=(2, 4),
    window_size=4,
    mlp_ratio=2.0,
    qkv_bias=True,
    qk_scale=None,
    drop_rate=0.0,
    attn_drop_rate=0.0,
    drop_path_rate=0.0,
    ape=False,
    patch_norm=True,
)


def make_state(model_args=TINY, tx=None):
    """Plain SGD with lr 1 by default: params move by exactly -grad, so averaging errors show (Adam's
    first step, ~lr * sign(grad), would hide a wrong gradient scale)."""
    model = swin.create_model(model_args)
    tx = optax.sgd(1.0) if tx is None else tx
    state = steps.create_train_state(jax.random.key(0), model, tx, (16, 16, 3))
    return model, state


def make_batch(n=8, num_classes=5, seed=1):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, n).astype(np.int32)
    other = rng.integers(0, num_classes, n)
    lam = 0.7
    target = lam * np.eye(num_classes)[labels] + (1 - lam) * np.eye(num_classes)[other]
    return {
        "image": rng.normal(size=(n, 16, 16, 3)).astype(np.float32),
        "label": labels,
        "target": target.astype(np.float32),
    }


def run_steps(state, batch, n_devices, n_steps=2):
    devices = jax.local_devices()[:n_devices]
    p_step = jax.pmap(
        functools.partial(steps.train_step, dropout_key=jax.random.key(7)),
        axis_name=steps.AXIS,
        devices=devices,
    )
    shard = jax.tree.map(lambda x: x.reshape(n_devices, -1, *x.shape[1:]), batch)
    state = steps.replicate(state, devices)
    for _ in range(n_steps):
        state, metrics = p_step(state, shard)
    return jax.device_get(steps.unreplicate(state)), steps.unreplicate(metrics).compute()


def test_replicated_state_compiles_the_step_once():
    """The state a step returns is laid out as `steps.replicate` lays it out, so feeding it back does
    not compile the step again (flax's jax_utils.replicate uses another mesh: two compiles)."""
    _, state = make_state()
    devices = jax.local_devices()[:2]
    traces = []

    def step(state, batch):
        traces.append(1)  # runs once per trace, i.e. per compile
        return steps.train_step(state, batch, dropout_key=jax.random.key(0))

    p_step = jax.pmap(step, axis_name=steps.AXIS, devices=devices, donate_argnums=0)
    shard = jax.tree.map(lambda x: x.reshape(2, -1, *x.shape[1:]), make_batch())
    state = steps.replicate(state, devices)
    for _ in range(3):
        state, _ = p_step(state, shard)
    assert len(traces) == 1
    assert np.asarray(state.step).tolist() == [3, 3]


@pytest.mark.parametrize("num_devices", [1, 2])
def test_gradients_are_all_reduced_only_across_several_devices(num_devices):
    """On one device the step has no all-reduce (XLA would copy every gradient for nothing); on two
    the gradients are averaged by one."""
    _, state = make_state()
    devices = jax.local_devices()[:num_devices]
    step = functools.partial(steps.train_step, dropout_key=jax.random.key(0))
    p_step = jax.pmap(step, axis_name=steps.AXIS, devices=devices)
    shard = jax.tree.map(lambda x: x.reshape(num_devices, -1, *x.shape[1:]), make_batch())
    hlo = p_step.lower(steps.replicate(state, devices), shard).as_text()
    assert ("all_reduce" in hlo or "all-reduce" in hlo) == (num_devices > 1)


def assert_trees_close(a, b, rtol=1e-5, atol=1e-7):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=rtol, atol=atol), a, b)


@pytest.fixture(scope="module")
def sgd_runs():
    """One SGD step from the same state and global batch on 1 and on 2 devices."""
    assert jax.local_device_count() >= 2, "conftest.py asks XLA for 2 host devices"
    model, state = make_state()
    batch = make_batch()
    return model, state, batch, run_steps(state, batch, 1, n_steps=1), run_steps(state, batch, 2, 1)


def test_two_devices_equal_one_device(sgd_runs):
    *_, (s1, m1), (s2, m2) = sgd_runs
    assert int(s1.step) == int(s2.step) == 1
    assert_trees_close(s1.params, s2.params)
    np.testing.assert_allclose(m1["loss"], m2["loss"], rtol=1e-6)
    np.testing.assert_allclose(m1["accuracy"], m2["accuracy"])


def test_two_devices_equal_one_device_with_adamw():
    """Same with the recipe's optimiser, over two steps. Adam divides by sqrt(v): where a gradient is
    ~0, float32 rounding differences of the two reductions can move a parameter by up to ~lr, so the
    tolerance is 1% of lr; the SGD test above checks the gradients tightly."""
    tx = optim.create_optimizer(
        learning_rate_fn=optax.constant_schedule(1e-3),
        b1=0.9,
        b2=0.999,
        eps=1e-8,
        weight_decay=0.05,
        weight_decay_exempt=False,
        grad_clip_norm=0.0,
    )
    _, state = make_state(tx=tx)
    batch = make_batch()
    s1, _ = run_steps(state, batch, 1, n_steps=2)
    s2, _ = run_steps(state, batch, 2, n_steps=2)
    assert_trees_close(s1.opt_state, s2.opt_state, rtol=1e-4, atol=1e-8)
    assert_trees_close(s1.params, s2.params, rtol=0, atol=1e-5)


def test_step_applies_the_full_batch_mean_gradient(sgd_runs):
    """With SGD(lr=1) the pmapped step must move params by -grad of the mean soft cross-entropy over
    the global batch, computed here without pmap."""
    model, state, batch, _, (got, metrics) = sgd_runs

    def loss(params):
        logits = model.apply({"params": params}, batch["image"], deterministic=True)
        logp = jax.nn.log_softmax(logits)
        return -(batch["target"] * logp).sum(-1).mean()

    grads = jax.jit(jax.grad(loss))(state.params)
    expected = jax.tree.map(lambda p, g: p - g, state.params, grads)
    assert_trees_close(got.params, expected)
    np.testing.assert_allclose(metrics["loss"], jax.jit(loss)(state.params), rtol=1e-5)


def test_train_accuracy_uses_original_labels():
    _, state = make_state()
    batch = make_batch()
    logits = state.apply_fn({"params": state.params}, batch["image"])
    batch["label"] = np.asarray(jnp.argmax(logits, -1), np.int32)  # all "correct" at step 0
    batch["target"] = np.full_like(batch["target"], 1 / 5)  # targets carry no label information
    _, metrics = run_steps(state, batch, 2, n_steps=1)
    assert metrics["accuracy"] == pytest.approx(1.0)


def test_dropout_keys_differ_per_device_and_step():
    args = dict(TINY, drop_path_rate=0.5)
    _, state = make_state(args)
    one = make_batch(n=4)
    batch = jax.tree.map(lambda x: np.concatenate([x, x]), one)  # same examples on both devices
    devices = jax.local_devices()[:2]

    def per_device_loss(state, batch):
        key = jax.random.fold_in(
            jax.random.fold_in(jax.random.key(3), state.step), jax.lax.axis_index(steps.AXIS)
        )
        logits = state.apply_fn(
            {"params": state.params}, batch["image"], deterministic=False, rngs={"dropout": key}
        )
        return steps.soft_cross_entropy(logits, batch["target"]).mean()

    losses = jax.pmap(per_device_loss, axis_name=steps.AXIS, devices=devices)(
        steps.replicate(state, devices),
        jax.tree.map(lambda x: x.reshape(2, 4, *x.shape[1:]), batch),
    )
    assert not np.allclose(losses[0], losses[1])


def test_eval_step_ignores_padding():
    """Loss, accuracy and top-5 accuracy (12 classes: the label among the 5 largest logits, by
    numpy's argsort) of the unmasked examples alone."""
    model, state = make_state(TINY | {"num_classes": 12})
    batch = make_batch(num_classes=12)
    mask = np.array([1, 1, 1, 0, 1, 1, 0, 0], np.float32)
    logits = np.asarray(model.apply({"params": state.params}, batch["image"]))
    real = mask > 0
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    want_loss = -logp[real, batch["label"][real]].mean()
    want_acc = (logits.argmax(-1)[real] == batch["label"][real]).mean()
    top5 = np.argsort(-logits, axis=-1)[:, :5]
    want_top5 = np.mean([y in t for t, y in zip(top5[real], batch["label"][real])])
    assert want_acc < want_top5 < 1  # the figures differ
    devices = jax.local_devices()[:2]
    p_eval = jax.pmap(
        functools.partial(steps.eval_step, apply_fn=model.apply),
        axis_name=steps.AXIS,
        devices=devices,
    )
    eval_batch = {"image": batch["image"], "label": batch["label"], "mask": mask}
    eval_batch = jax.tree.map(lambda x: x.reshape(2, 4, *x.shape[1:]), eval_batch)
    m = steps.unreplicate(p_eval(steps.replicate(state.params, devices), eval_batch)).compute()
    np.testing.assert_allclose(m["loss"], want_loss, rtol=1e-5)
    np.testing.assert_allclose(m["accuracy"], want_acc)
    np.testing.assert_allclose(m["top5_accuracy"], want_top5)


def test_nonfinite_loss_step_is_recorded():
    m = steps.FirstNonFinite.from_model_output(loss=jnp.array(np.nan), step=jnp.array(5))
    ok = steps.FirstNonFinite.from_model_output(loss=jnp.array(1.0), step=jnp.array(3))
    later = steps.FirstNonFinite.from_model_output(loss=jnp.array(np.inf), step=jnp.array(9))
    assert int(ok.merge(m).merge(later).compute()) == 5
    assert int(ok.compute()) == -1


def test_saved_train_metrics_resume_across_a_metric_added_or_removed():
    """A run stopped within an epoch saves its metrics (progress.as_json) and merges them with the
    resumed steps'; a metric added to the code since starts empty (its mean is the resumed steps'
    alone), one removed is dropped, and FirstNonFinite's empty is 'none' (-1), not step 0."""
    from clu import metrics

    from swin_flax.progress import as_json, from_json

    @flax.struct.dataclass
    class WithNorm(metrics.Collection):
        loss: metrics.Average.from_output("loss")
        first_nonfinite_step: steps.FirstNonFinite
        grad_norm: metrics.Average.from_output("grad_norm")

    out = lambda loss, step: dict(
        loss=jnp.array(loss),
        step=jnp.array(step),
        grad_norm=jnp.array(2.0 * step),
        logits=jnp.array([[1.0, 0.0]]),
        labels=jnp.array([0]),
    )
    before = steps.TrainMetrics.single_from_model_output(**out(1.0, 1)).merge(
        steps.TrainMetrics.single_from_model_output(**out(3.0, 2))
    )
    after = WithNorm.single_from_model_output(**out(5.0, 3))
    joined = from_json(after, as_json(before)).merge(after).compute()
    assert float(joined["loss"]) == 3.0  # (1 + 3 + 5) / 3
    assert float(joined["grad_norm"]) == 6.0  # step 3's alone
    assert int(joined["first_nonfinite_step"]) == -1
    back = from_json(before, as_json(after)).merge(before).compute()  # grad_norm dropped
    assert float(back["loss"]) == 3.0 and float(back["accuracy"]) == 1.0  # accuracy: before's


def test_train_state_params_are_those_model_init_draws():
    """create_train_state initialises through `lazy_init` (the forward pass on shapes only): its
    params equal flax's `model.init` with the same key and threefry layout, bit for bit."""
    model = swin.create_model(TINY, scan_blocks=True)
    state = steps.create_train_state(jax.random.key(3), model, optax.adamw(1e-3), (16, 16, 3))
    with jax.threefry_partitionable(False):
        expected = jax.jit(model.init)(jax.random.key(3), jnp.zeros((1, 16, 16, 3)))["params"]
    assert jax.tree.structure(state.params) == jax.tree.structure(expected)
    jax.tree.map(np.testing.assert_array_equal, state.params, expected)
