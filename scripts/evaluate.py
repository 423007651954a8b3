"""Test accuracy of a run's best (or a given) checkpoint.

    python scripts/evaluate.py --workdir runs/strong [--checkpoint runs/strong/checkpoints/latest/4880]

Prints the accuracy, the loss and a per-class accuracy table, and writes into --eval_dir (default
WORKDIR/eval): per_class.txt, confusion.png (row-normalised confusion matrix), scores.json and
TensorBoard summaries (the confusion matrix image, the accuracy). --json also writes the scores there.
"""

from swin_flax import cli  # standard library and absl only

cli.start()

import json  # noqa: E402
import os  # noqa: E402

from absl import flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "The run's folder (holds config.json and checkpoints/).")
flags.DEFINE_string("checkpoint", None, "A checkpoint step folder; default: the run's best.")
flags.DEFINE_string("json", None, "Write the scores (with the confusion matrix) to this JSON file.")
flags.DEFINE_string("eval_dir", None, "Folder for the report files; default: WORKDIR/eval.")


def check_outputs(json_path: str | None, eval_dir: str | None) -> None:
    """Checked before the minutes of evaluation: --json must be a file path in a folder that
    exists, --eval_dir a folder (created if new)."""
    if json_path and (
        os.path.isdir(json_path) or not os.path.isdir(os.path.dirname(os.path.abspath(json_path)))
    ):
        cli.exit_user_error(
            f"--json {json_path} is not a file path in a folder that exists: create the folder, "
            "or give another path."
        )
    if eval_dir and os.path.exists(eval_dir) and not os.path.isdir(eval_dir):
        cli.exit_user_error(f"--eval_dir {eval_dir} is a file: give a folder (created if new).")


def main(argv):
    del argv  # parse_flags refused stray arguments
    check_outputs(FLAGS.json, FLAGS.eval_dir)
    from swin_flax import evaluate  # noqa: PLC0415 (jax, orbax: after the flags)
    from swin_flax.data import sources  # noqa: PLC0415

    with cli.friendly_errors():
        run = evaluate.open_run(FLAGS.workdir, FLAGS.checkpoint)  # checks; reads no params
        params, meta = evaluate.load_params(run.checkpoint)
        result = evaluate.evaluate_checkpoint(run.config, params)
    names = sources.class_names(run.config.dataset)
    print(f"checkpoint: {run.checkpoint} (epoch {meta.get('epoch')}, step {meta.get('step')})")
    print(
        f"test accuracy: {result['accuracy']:.4f} ({result['num_examples']} images), "
        f"loss {result['loss']:.4f}"
    )
    print(evaluate.per_class_table(result["confusion"], names))
    eval_dir = FLAGS.eval_dir or str(run.workdir / "eval")
    with cli.friendly_errors():
        paths = evaluate.write_report(result, names, eval_dir, step=int(meta.get("step") or 0))
        print(f"wrote {', '.join(str(p) for p in paths.values())} and TensorBoard summaries")
        if FLAGS.json:
            out = {
                **result,
                "confusion": result["confusion"].tolist(),
                "checkpoint": str(run.checkpoint),
            }
            with open(FLAGS.json, "w") as f:
                json.dump(out, f, indent=2)


if __name__ == "__main__":
    cli.run(main)
