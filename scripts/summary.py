"""Prints a torchinfo-like model table: `python scripts/summary.py --config configs/strong.py`
(or `--workdir runs/strong`: a trained run's model, from its config.json, as it is). A config of
several runs (num_runs, sweep) trains this model for each: a last line says how many.

Each module to --depth levels, its output shape for a batch of --batch_size, its parameter count,
and the total. Nothing is compiled (jax.eval_shape). Config overrides work, e.g.
`--config.model.embed_dim=128`; the config is checked as scripts/main.py checks it.
"""

from swin_flax import cli  # standard library and absl only

cli.start()

from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Path to a config file, e.g. configs/strong.py.")
flags.DEFINE_integer(
    "depth", 2, "Module levels to show (1: stages, 2: blocks, 3: block parts).", lower_bound=1
)
flags.DEFINE_integer(
    "batch_size", 1, "Batch size of the output shapes (torchinfo shows 1).", lower_bound=1
)
flags.DEFINE_string("workdir", None, "A run's folder: its model, instead of --config's.")


def main(argv):
    del argv  # parse_flags refused stray arguments
    config = cli.config_or_run(FLAGS.config, FLAGS.workdir, "model")
    from swin_flax import runs  # noqa: PLC0415 (jax after the checks)
    from swin_flax.models import summary, swin  # noqa: PLC0415

    model = swin.create_model(config.model, dtype=config.dtype)
    print(summary.summary_table(model, depth=FLAGS.depth, batch_size=FLAGS.batch_size))
    if len(names := runs.names(config)) > 1:  # several runs (num_runs, sweep): one model each
        holds = f"{FLAGS.workdir} holds" if FLAGS.workdir else "the config trains"
        shown = "; ".join(names[:3]) + ("; ..." if len(names) > 3 else "")
        print(f"{holds} {len(names)} runs of this model ({shown}): the table is each one's")


if __name__ == "__main__":
    cli.run(main)
