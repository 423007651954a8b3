"""Fine-tune an ImageNet-pretrained Swin-T on CIFAR-10 (beyond the recipe: its author's next step).

    python scripts/main.py --config configs/finetune.py --workdir runs/finetune \
        --config.pretrained=/path/to/swin_tiny_patch4_window7_224.pth

The checkpoint is the official one (github.com/SwinTransformer/storage/releases/download/v1.0.0/
swin_tiny_patch4_window7_224.pth) or timm's swin_tiny_patch4_window7_224 (.safetensors); nothing is
downloaded. Its blocks are loaded, the 1000-class head is replaced by a fresh 10-class one (see
swin_flax/finetune.py for the load report).

Default variant: 224x224 input, as usual for transfer from ImageNet: the pipeline upsamples the 32x32
images to model.img_size (bilinear); the window stays 7 (token grids 56/28/14/7), so every tensor
loads unchanged. Short schedule: 30 epochs, 2 warm-up epochs then cosine, evaluated per step;
AdamW lr 1e-4 for batch 128 with the official no-decay set; layer-wise lr decay 0.9 (official Swin /
BEiT fine-tuning; 1.0 turns it off); gradient clipping at 5 (official Swin). Same pipeline, metrics
and checkpoints as training from scratch.

Variant `configs/finetune.py:64`: 64x64 input (about 12x cheaper per image), window 4: grids
16/8/4/2 give windows 4, 4, 4 (clamped, no shift) and 2 (clamped). The window rule must divide each
grid (models/plan.py check_arguments says which windows do); the 7x7-window bias tables are resized to 4x4
(and 2x2 in the last stage) bicubically. (img 96 with window 6 is another valid pair.)
"""

from swin_flax.config import default_config

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # what the pretrained Swin saw (timm / official transforms)
IMAGENET_STD = (0.229, 0.224, 0.225)


def get_config(variant: str = ""):
    c = default_config()
    c.dataset = "cifar10"
    c.pretrained = "swin_tiny_patch4_window7_224.pth"  # set --config.pretrained=PATH
    c.normalize_mean = IMAGENET_MEAN
    c.normalize_std = IMAGENET_STD
    c.randaugment = "rand-m9-mstd0.5"
    c.mix.label_smoothing = 0.1

    # Swin-T (official swin_tiny_patch4_window7_224), new 10-class head.
    c.model.img_size = 224
    c.model.embed_dim = 96
    c.model.depths = (2, 2, 6, 2)
    c.model.num_heads = (3, 6, 12, 24)
    c.model.window_size = 7
    c.model.num_classes = 10
    c.model.drop_path_rate = 0.1
    if variant == "64":
        c.model.img_size = 64
        c.model.window_size = 4
    elif variant:
        raise ValueError(f"unknown finetune variant {variant!r}: use '' (224) or '64'.")

    c.learning_rate = 1e-4
    c.weight_decay = 0.05
    c.weight_decay_exempt = True
    c.grad_clip_norm = 5.0
    c.layer_decay = 0.9
    c.schedule = "cosine_step"
    c.warmup_epochs = 2
    c.warmup_lr_init = 1e-6
    c.lr_min = 1e-6
    c.cosine_epochs = 28
    c.warmup_prefix = True
    c.batch_size = 128
    c.eval_batch_size = 256
    c.num_epochs = 30
    c.log_every_steps = 100
    return c
