"""Prints a torchinfo-like model table: `python scripts/summary.py --config configs/strong.py`.

Each module to --depth levels, its output shape for a batch of --batch_size, its parameter count,
and the total. Nothing is compiled (jax.eval_shape). Config overrides work, e.g.
`--config.model.embed_dim=128`.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Path to a config file, e.g. configs/strong.py.")
flags.DEFINE_integer("depth", 2, "Module levels to show (1: stages, 2: blocks, 3: block parts).")
flags.DEFINE_integer("batch_size", 1, "Batch size of the output shapes (torchinfo shows 1).")
flags.mark_flags_as_required(["config"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from swin_flax.models import swin  # noqa: PLC0415 (jax is imported after flag parsing)

    config = FLAGS.config
    try:
        model = swin.create_model(config.model, dtype=config.get("dtype", "float32"))
    except ValueError as e:
        print(f"Error: config.model: {e}", file=sys.stderr)
        return 2
    print(swin.summary_table(model, depth=FLAGS.depth, batch_size=FLAGS.batch_size))
    return 0


if __name__ == "__main__":
    app.run(main)
