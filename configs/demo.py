"""Offline demo: a tiny Swin on the synthetic data set, a minute or two on 2 CPU cores.

Shifted windows are exercised (8x8 grid, window 4), then the window-clamp rule (4x4 grid).
"""

from swin_flax.config import default_config


def get_config():
    c = default_config()
    c.dataset = "synthetic"
    c.synthetic_train_examples = 4096
    c.synthetic_test_examples = 1024
    c.normalize_mean = (0.5, 0.5, 0.5)
    c.normalize_std = (0.5, 0.5, 0.5)
    c.model.embed_dim = 32
    c.model.depths = (2, 2)
    c.model.num_heads = (2, 4)
    c.model.window_size = 4
    c.model.drop_path_rate = 0.05
    # Stages of 2 blocks, not scanned: keeping everything is 7% faster here than 'dots', and on a
    # CPU its memory is no larger (measured; docs/benchmarks.md).
    c.remat = "none"
    c.learning_rate = 2e-3
    c.weight_decay = 0.05
    c.schedule = "cosine_epoch"
    c.warmup_epochs = 1
    c.warmup_lr_init = 2e-4
    c.lr_min = 1e-4
    c.cosine_epochs = 4  # warmup 1 + cosine 4 = the 5 epochs: the lr ends near lr_min
    c.batch_size = 128
    c.eval_batch_size = 256
    c.num_epochs = 5
    c.log_every_steps = 8
    return c
