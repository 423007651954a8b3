"""The schema of a swin-flax run: every field, its default, and the checks made before any work.

Config files in `configs/` start from `default_config()` and override fields; `validate()` runs once,
at the entry point, so a bad value fails in seconds with a message naming the field.
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict


def default_config() -> ml_collections.ConfigDict:
    """All fields with the defaults of the PyTorch originals (torch.optim.AdamW, official Swin)."""
    c = ml_collections.ConfigDict()
    c.seed = 0

    # Data: source, preprocessing, augmentation.
    c.dataset = "cifar10"  # 'cifar10' | 'cifar100' | 'synthetic'
    c.data_dir = config_dict.placeholder(str)  # tfds data directory (None: tfds' default)
    c.archive = config_dict.placeholder(str)  # local CIFAR archive or folder; when set, tfds is unused
    c.synthetic_train_examples = 50_000
    c.synthetic_test_examples = 10_000
    c.normalize_mean = (0.5, 0.5, 0.5)  # applied after /255 (train and test)
    c.normalize_std = (0.5, 0.5, 0.5)
    c.randaugment = ""  # timm RandAugment config string, e.g. 'rand-m9-mstd0.5'; '' turns it off
    c.randaugment_img_mean = (124, 116, 104)  # fill colour of geometric ops (timm hparams img_mean)
    c.randaugment_translate_const = 117  # timm hparams translate_const (pixels at magnitude 10)
    c.mix = ml_collections.ConfigDict(
        dict(
            mixup_alpha=0.0,  # timm Mixup arguments; mixing is on when either alpha is > 0
            cutmix_alpha=0.0,
            cutmix_minmax=config_dict.placeholder(tuple),
            prob=1.0,
            switch_prob=0.5,
            mode="batch",
            label_smoothing=0.0,  # also applied to the one-hot targets when mixing is off
        )
    )

    # Model: the official SwinTransformer's constructor arguments, by name.
    c.model = ml_collections.ConfigDict(
        dict(
            img_size=32,
            patch_size=4,
            in_chans=3,
            num_classes=10,
            embed_dim=96,
            depths=(2, 2, 18),
            num_heads=(3, 6, 12),
            window_size=8,
            mlp_ratio=4.0,
            qkv_bias=True,
            qk_scale=config_dict.placeholder(float),
            drop_rate=0.0,
            attn_drop_rate=0.0,
            drop_path_rate=0.1,
            ape=False,
            patch_norm=True,
        )
    )
    c.dtype = "float32"  # compute dtype: 'float32' | 'bfloat16' (parameters stay float32)
    c.remat = False  # rematerialise each block in the backward pass (less memory, more compute)

    # Optimiser: torch.optim.AdamW semantics.
    c.learning_rate = 1e-3
    c.b1 = 0.9
    c.b2 = 0.999
    c.eps = 1e-8
    c.weight_decay = 0.01
    c.weight_decay_exempt = False  # True: no decay on norms, biases and bias tables (official Swin)
    c.grad_clip_norm = 0.0  # 0 turns clipping off

    # Schedule: 'constant' | 'cosine_epoch' (timm CosineLRScheduler stepped once per epoch)
    # | 'cosine_step' (the same curve evaluated every step).
    c.schedule = "constant"
    c.warmup_epochs = 0
    c.warmup_lr_init = 0.0
    c.lr_min = 0.0
    c.cosine_epochs = 300  # timm t_initial
    c.warmup_prefix = True

    # Loop.
    c.batch_size = 1024  # global, over all hosts and devices
    c.eval_batch_size = 1024
    c.num_epochs = 300
    c.prefetch_batches = 2

    # Logging and checkpoints.
    c.log_every_steps = 50
    c.checkpoint_every_epochs = 1
    c.keep_checkpoints = 3
    return c
