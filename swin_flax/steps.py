"""Training state, loss, metrics and the per-device train and eval steps (run under `jax.pmap`).
A step's dropout key folds in the step and device: a resumed run draws what an unbroken one would."""

from collections.abc import Callable, Sequence
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from clu import metrics
from flax import linen as nn
from flax.training import train_state

AXIS = "batch"  # the pmap axis name
# No `from __future__ import annotations` here: clu reads the metric classes from __annotations__.


TrainState = train_state.TrainState  # `step` counts optimiser updates over the whole run


@flax.struct.dataclass
class FirstNonFinite(metrics.Metric):
    """The first step whose loss was NaN or inf (-1 when none): lets a run name where it diverged."""

    step: jnp.ndarray

    @classmethod
    def from_model_output(cls, *, loss: jnp.ndarray, step: jnp.ndarray, **_) -> "FirstNonFinite":
        return cls(step=jnp.where(jnp.isfinite(loss), -1, step).astype(jnp.int32))

    @classmethod
    def empty(cls) -> "FirstNonFinite":
        return cls(step=jnp.array(-1, jnp.int32))

    def merge(self, other: "FirstNonFinite") -> "FirstNonFinite":
        a, b = self.step, other.step
        return type(self)(step=jnp.where((a < 0) | ((b >= 0) & (b < a)), b, a))

    def reduce(self) -> "FirstNonFinite":  # over devices without clu's default scan of merges
        s = jnp.where(self.step < 0, jnp.iinfo(jnp.int32).max, self.step).min()
        return type(self)(step=jnp.where(s == jnp.iinfo(jnp.int32).max, -1, s))

    def compute(self) -> jnp.ndarray:
        return self.step


@flax.struct.dataclass
class TrainMetrics(metrics.Collection):
    loss: metrics.Average.from_output("loss")
    accuracy: metrics.Accuracy
    first_nonfinite_step: FirstNonFinite


def top_k_correct(logits: Any, labels: Any, k: int = 5) -> Any:
    """Per example: whether its label is among its k largest logits, fewer than k ranked before it
    (a tie ranked by index, as argmax and a stable sort do: ties are common in bfloat16, and k=1
    is then argmax's accuracy); k=5: the top5_accuracy (Acc@5) of the loop and of evaluation.
    NumPy or JAX arrays: both compute it here."""
    label_logit, first = logits[np.arange(len(labels)), labels][:, None], labels[:, None]
    tied_before = (logits == label_logit) & (np.arange(logits.shape[-1]) < first)
    return ((logits > label_logit) | tied_before).sum(-1) < k


@flax.struct.dataclass
class EvalMetrics(metrics.Collection):
    loss: metrics.Average.from_output("loss")
    accuracy: metrics.Accuracy
    top5_accuracy: metrics.Average.from_fun(
        lambda logits, labels, **_: top_k_correct(logits, labels)
    )


def replicate(tree: Any, devices: Sequence[jax.Device] | None = None) -> Any:
    """One copy of `tree` per device (default: the local ones), laid out as a pmapped step's outputs
    (flax's `replicate` is not: a step fed its own output would compile again)."""
    count = jax.local_device_count() if devices is None else len(devices)
    identity = jax.pmap(lambda x, _: x, in_axes=(None, 0), axis_name=AXIS, devices=devices)
    return identity(tree, np.arange(count))


def unreplicate(tree: Any) -> Any:
    """Device 0's copy of each leaf (flax's keeps a leading 1 when pmap ran on some devices)."""

    def first(x):
        if isinstance(x, jax.Array) and len(x.addressable_shards) > 1:
            return x.addressable_shards[0].data.reshape(x.shape[1:])
        return x[0]

    return jax.tree.map(first, tree)


def soft_cross_entropy(logits: jnp.ndarray, targets: jnp.ndarray) -> jnp.ndarray:
    """Per-example cross-entropy with soft targets (timm's SoftTargetCrossEntropy)."""
    return -jnp.sum(targets * jax.nn.log_softmax(logits.astype(jnp.float32)), axis=-1)


def create_train_state(
    key: jax.Array, model: nn.Module, tx: optax.GradientTransformation, input_shape: tuple[int, ...]
) -> TrainState:
    """Params and optimiser state in one compiled call; keys [N] give N runs' states stacked. The
    non-partitionable threefry (same distributions) compiles the draws twice as fast."""

    def init(key):
        image = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
        params = model.lazy_init({"params": key}, image)["params"]  # on shapes: 1.7 s sooner
        return params, tx.init(params)

    num_runs = key.shape[0] if key.shape else None
    with jax.threefry_partitionable(False):
        params, opt_state = jax.jit(jax.vmap(init) if num_runs else init)(key)
    step = 0 if num_runs is None else np.zeros(num_runs, np.int32)
    return TrainState(step=step, apply_fn=model.apply, params=params, tx=tx, opt_state=opt_state)


def train_step(
    state: TrainState, batch: dict[str, jnp.ndarray], dropout_key: jax.Array
) -> tuple[TrainState, TrainMetrics]:
    """One update from one device's share of the batch, gradients averaged over AXIS: the new
    state and the step's metrics, gathered over devices."""
    key = jax.random.fold_in(jax.random.fold_in(dropout_key, state.step), jax.lax.axis_index(AXIS))

    def loss_fn(params):
        logits = state.apply_fn(
            {"params": params}, batch["image"], deterministic=False, rngs={"dropout": key}
        ).astype(jnp.float32)
        return soft_cross_entropy(logits, batch["target"]).mean(), logits

    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    if jax.lax.axis_size(AXIS) > 1:  # on one device XLA would still copy all gradients
        grads = jax.lax.pmean(grads, AXIS)
    step_metrics = TrainMetrics.gather_from_model_output(
        axis_name=AXIS, loss=loss, logits=logits, labels=batch["label"], step=state.step
    )
    return state.apply_gradients(grads=grads), step_metrics


def logits(params: Any, images: jnp.ndarray, *, apply_fn: Callable) -> jnp.ndarray:
    """Float32 logits in eval mode: the one forward pass of evaluation and prediction."""
    return apply_fn({"params": params}, images, deterministic=True).astype(jnp.float32)


def eval_step(params: Any, batch: dict[str, jnp.ndarray], *, apply_fn: Callable) -> EvalMetrics:
    """Loss, accuracy and top-5 accuracy on one device's share of a test batch; padded examples
    (mask 0) ignored."""
    batch_logits = logits(params, batch["image"], apply_fn=apply_fn)
    loss = soft_cross_entropy(batch_logits, jax.nn.one_hot(batch["label"], batch_logits.shape[-1]))
    return EvalMetrics.gather_from_model_output(
        axis_name=AXIS, loss=loss, logits=batch_logits, labels=batch["label"], mask=batch["mask"]
    )
