"""Recipe 1 of the seed post: no augmentation, constant lr 1e-3, torch AdamW defaults, 300 epochs."""

from swin_flax.config import default_config


def get_config():
    c = default_config()
    c.dataset = "cifar10"
    c.normalize_mean = (0.5, 0.5, 0.5)  # ToTensor + Normalize(0.5, 0.5): pixels to [-1, 1]
    c.normalize_std = (0.5, 0.5, 0.5)
    c.learning_rate = 1e-3
    c.weight_decay = 0.01  # torch.optim.AdamW's default (optax's is 1e-4)
    c.schedule = "constant"
    c.batch_size = 1024
    c.num_epochs = 300
    return c
