"""Recipe 2 of the seed post: RandAugment rand-m9-mstd0.5, CutMix, wd 0.05, warmup + per-epoch cosine."""

from swin_flax.config import default_config


def get_config():
    c = default_config()
    c.dataset = "cifar10"
    c.normalize_mean = (0.0, 0.0, 0.0)  # ToTensor only: pixels to [0, 1]
    c.normalize_std = (1.0, 1.0, 1.0)
    c.randaugment = "rand-m9-mstd0.5"
    c.randaugment_img_mean = (124, 116, 104)
    c.randaugment_translate_const = 117
    c.mix.mixup_alpha = 0.0
    c.mix.cutmix_alpha = 1.0
    c.mix.prob = 1.0
    c.mix.switch_prob = 0.0
    c.mix.mode = "batch"
    c.mix.label_smoothing = 0.0
    c.learning_rate = 1e-3
    c.weight_decay = 0.05
    c.schedule = "cosine_epoch"  # timm CosineLRScheduler, scheduler.step(epoch + 1)
    c.warmup_epochs = 20
    c.warmup_lr_init = 1e-4
    c.lr_min = 1e-4
    c.cosine_epochs = 300
    c.warmup_prefix = True
    c.batch_size = 1024
    c.num_epochs = 300
    return c
