"""From a config to the model, its learning-rate schedule, the optimiser and the pmapped train step.

Everything `train.py` builds except the data, without importing TensorFlow: the benchmarks and
`evaluate` / `predict` build the same objects on machines where only JAX is installed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax

from swin_flax import optim, steps
from swin_flax.models import swin


def model_from_config(config: ml_collections.ConfigDict) -> swin.SwinTransformer:
    """The run's SwinTransformer: `config.model`'s official arguments, with its compute dtype,
    remat and scan_blocks (`swin.create_model` takes the model dict alone)."""
    return swin.create_model(
        config.model,
        dtype=jnp.dtype(config.dtype),
        remat=config.remat,
        scan_blocks=config.scan_blocks,
    )


def create_learning_rate_fn(config: ml_collections.ConfigDict, steps_per_epoch: int):
    return optim.learning_rate_schedule(
        schedule=config.schedule,
        learning_rate=config.learning_rate,
        steps_per_epoch=steps_per_epoch,
        num_epochs=config.num_epochs,
        warmup_epochs=config.warmup_epochs,
        warmup_lr_init=config.warmup_lr_init,
        lr_min=config.lr_min,
        cosine_epochs=config.cosine_epochs,
        warmup_prefix=config.warmup_prefix,
    )


def create_optimizer(
    config: ml_collections.ConfigDict, learning_rate_fn
) -> optax.GradientTransformation:
    return optim.create_optimizer(
        learning_rate_fn=learning_rate_fn,
        b1=config.b1,
        b2=config.b2,
        eps=config.eps,
        weight_decay=config.weight_decay,
        weight_decay_exempt=config.weight_decay_exempt,
        grad_clip_norm=config.grad_clip_norm,
        layer_decay=config.layer_decay,
        depths=tuple(config.model.depths),
    )


def pmap_train_step(dropout_key: jax.Array, learning_rate_fn) -> Callable:
    """steps.train_step under jax.pmap over the local devices, the state's buffers donated."""
    return jax.pmap(
        functools.partial(
            steps.train_step, dropout_key=dropout_key, learning_rate_fn=learning_rate_fn
        ),
        axis_name=steps.AXIS,
        donate_argnums=(0,),
    )
