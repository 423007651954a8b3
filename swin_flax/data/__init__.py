"""Input data: sources (tfds, local CIFAR archives, synthetic), RandAugment, CutMix/Mixup and the
tf.data pipelines that feed pmapped steps. Submodules are imported explicitly (`from swin_flax.data
import pipeline`); this package imports nothing itself. Without TensorFlow at import: `sources`
(TF and tfds only when a tfds split is read), `randaugment_params`, `viz`. With it: `pipeline`,
`randaugment`, `pillow_ops`, `mix`."""
