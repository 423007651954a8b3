"""Test accuracy of a run's best (or a given) checkpoint.

    python scripts/evaluate.py --workdir runs/strong [--checkpoint runs/strong/checkpoints/latest/4880]

Prints the accuracy, the loss and a per-class accuracy table, and writes into --eval_dir (default
WORKDIR/eval): per_class.txt, confusion.png (row-normalised confusion matrix), scores.json and
TensorBoard summaries (the confusion matrix image, the accuracy). --json also writes the scores there.
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
flags.DEFINE_string("eval_dir", None, "Folder for the report files; default: WORKDIR/eval.")


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
    print(evaluate.per_class_table(result["confusion"], names))
    eval_dir = FLAGS.eval_dir or str(workdir / "eval")
    paths = evaluate.write_report(result, names, eval_dir, step=int(meta.get("step") or 0))
    print(f"wrote {', '.join(str(p) for p in paths.values())} and TensorBoard summaries")
    if FLAGS.json:
        out = {**result, "confusion": result["confusion"].tolist(), "checkpoint": str(ckpt)}
        with open(FLAGS.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    sys.exit(app.run(main))
