"""Input data: sources (tfds, CIFAR archives, synthetic), RandAugment, CutMix/Mixup and the tf.data
pipelines that feed pmapped steps; submodules are imported explicitly. Without TensorFlow at
import: `sources` (TF only when a tfds split is read), `archives`, `synthetic`,
`randaugment_params`, `viz`."""
