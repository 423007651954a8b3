"""Test accuracy of a run's best (or a given) checkpoint.

    python scripts/evaluate.py --workdir runs/strong [--checkpoint runs/strong/checkpoints/latest/4880]

Prints the accuracy, the loss and a per-class accuracy table; --json writes them with the confusion matrix.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "The run's folder (holds config.json and checkpoints/).")
flags.DEFINE_string("checkpoint", None, "A checkpoint step folder; default: the run's best.")
flags.DEFINE_string("json", None, "Write the scores (with the confusion matrix) to this JSON file.")


def main(argv):
    del argv
    from swin_flax import cli, evaluate  # noqa: PLC0415
    from swin_flax.data import sources  # noqa: PLC0415

    with cli.friendly_errors():
        workdir, ckpt = evaluate.resolve_checkpoint(FLAGS.workdir, FLAGS.checkpoint)
        config = evaluate.load_run_config(workdir)
        params, meta = evaluate.load_params(ckpt)
        result = evaluate.evaluate_checkpoint(config, params)
    names = sources.class_names(config.dataset)
    print(f"checkpoint: {ckpt} (epoch {meta.get('epoch')}, step {meta.get('step')})")
    print(
        f"test accuracy: {result['accuracy']:.4f} ({result['num_examples']} images), "
        f"loss {result['loss']:.4f}"
    )
    for name, acc in zip(names, result["per_class_accuracy"]):
        print(f"  {name:>16s}  {acc:.4f}")
    if FLAGS.json:
        out = {**result, "confusion": result["confusion"].tolist(), "checkpoint": str(ckpt)}
        with open(FLAGS.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    sys.exit(app.run(main))
