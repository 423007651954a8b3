"""Input data: sources (tfds, local CIFAR archives, synthetic), RandAugment, CutMix/Mixup and the
tf.data pipelines that feed pmapped steps. Submodules are imported explicitly (`from swin_flax.data
import pipeline`); this package imports nothing itself, so reading the config stays light."""
