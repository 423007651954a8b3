"""Input data: sources, RandAugment, CutMix/Mixup and tf.data pipelines; submodules are imported
explicitly. Free of TensorFlow at import: sources, archives, synthetic, randaugment_params, viz."""
