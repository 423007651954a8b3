"""swin-flax: a Swin Transformer trained on CIFAR-10 with JAX/Flax (see README.md).

TensorFlow (the input pipeline) reads TF_ENABLE_ONEDNN_OPTS when it loads. Set here, before any
module of the package imports it, it holds for the scripts, the tests and a notebook alike (a value
set before wins; a TensorFlow imported before swin_flax keeps its own): oneDNN's kernels, on by
default on recent x86 CPUs, stay off, so that the pipeline's pixels are the same on every machine
(the reference fixtures' values).
"""

import os as _os

_os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
