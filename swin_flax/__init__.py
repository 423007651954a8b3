"""swin-flax: a Swin Transformer trained on CIFAR-10 with JAX/Flax (see README.md).

TensorFlow (the input pipeline) reads two settings when it loads; set here, before any module of
the package imports it, they hold for the scripts, the tests and a notebook alike (an environment
variable set before wins): its C++ start-up lines stay hidden, and its oneDNN kernels, on by
default on recent x86 CPUs, stay off, so that the pipeline's pixels are the same on every machine
(the reference fixtures' values) and no oneDNN notice is printed.
"""

import os as _os

_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
_os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
