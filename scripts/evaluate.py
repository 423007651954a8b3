"""Test accuracy of a run's best (else its latest, or a given) checkpoint.

    python scripts/evaluate.py --workdir runs/strong [--checkpoint runs/strong/checkpoints/latest/4880]
    python scripts/evaluate.py --workdir runs/seeds [--run 1 | --run seed=1 | --ensemble]
    python scripts/evaluate.py --workdir runs/strong --archive /data/cifar-10-python.tar.gz  # moved

Prints the checkpoint and the data scored, the accuracy, the top-5 accuracy, the loss and a
per-class accuracy table (by class index; above 20 classes only the 5 worst and the 5 best), and
writes into --eval_dir (default WORKDIR/eval): per_class.txt (those lines, the table in full),
confusion.png (row-normalised confusion matrix), scores.json and TensorBoard summaries (the
confusion matrix image, the accuracies); scores.json names the checkpoint (its absolute path) and
the data too. --json PATH writes a copy of scores.json to PATH.

A checkpoint of several runs (config.num_runs, config.sweep): every run is scored and so is their
ensemble (the mean of their softmax probabilities; its loss the cross-entropy of that mean), a table
shows each run's accuracy and loss and the ensemble's, and the report is the ensemble's (scores.json
holds every run's figures too). --run K scores run K alone (its index or name) as a single run's
checkpoint is scored, its report in WORKDIR/eval/<its name>/ (or --eval_dir as given); --run with
part of a name (e.g. a swept value, learning_rate=1e-3) scores the runs that hold it and their
ensemble, the report in WORKDIR/eval/<that part>/; --ensemble scores the ensemble alone (of all, or
of the runs --run chooses by part of a name).
"""

from swin_flax import cli  # standard library and absl only

cli.start()

import contextlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import pathlib  # noqa: E402
import shutil  # noqa: E402

from absl import flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "The run's folder (holds config.json and checkpoints/).")
flags.DEFINE_string(
    "checkpoint", None, "A checkpoint step folder; default: the run's best, else its latest."
)
flags.DEFINE_string("json", None, "Write the scores (with the confusion matrix) to this JSON file.")
flags.DEFINE_string(
    "eval_dir",
    None,
    "Folder for the report files; default: WORKDIR/eval (with --run: WORKDIR/eval/<what it names>).",
)
flags.DEFINE_string(
    "run",
    None,
    "Of a checkpoint of several runs: score this one alone (its index or name), or the runs that"
    " hold a part of a name (e.g. a swept value: its seeds) and their ensemble.",
)
cli.define_moved_data_flags()
flags.DEFINE_bool(
    "ensemble",
    False,
    "Of a checkpoint of several runs: score only their ensemble (of all, or of those --run chooses),"
    " not each run.",
)


def check_outputs(json_path: str | None, eval_dir: str | None, keep: list[str | None]) -> str:
    """Checked before the minutes of evaluation: --json must be a file path in a folder that
    exists, replacing none of `keep` (the run, the data), --eval_dir a folder (created if new).
    Returns what the `wrote` line adds to --json's path."""
    if eval_dir and os.path.exists(eval_dir) and not os.path.isdir(eval_dir):
        cli.exit_user_error(f"--eval_dir {eval_dir} is a file: give a folder (created if new).")
    return cli.check_output_file("json", json_path, keep=keep)


def _scored(report: object, in_run: bool) -> tuple | None:
    """What a scores.json scored: its checkpoint (of a report in the run's folder, which moves with
    it, its series and step: the same in a moved, renamed or copied run; else its real path), the
    runs used, whether each one's scores too. None for a file that is not one (missing, edited,
    or of an older version)."""
    if not (isinstance(report, dict) and {"checkpoint", "checkpoint_line"} <= report.keys()):
        return None
    used = report.get("run"), report.get("ensemble"), "runs" in report
    path = report["checkpoint"]
    return (pathlib.PurePath(path).parts[-2:] if in_run else os.path.realpath(path)), *used


def main(argv):
    del argv  # parse_flags refused stray arguments
    from swin_flax import evaluate, runfiles  # noqa: PLC0415 (jax, orbax: after the flags)
    from swin_flax.data import sources  # noqa: PLC0415

    # checks the flags, reads no params
    run = evaluate.open_run(FLAGS.workdir, FLAGS.checkpoint, FLAGS.run, FLAGS.ensemble)
    # What the report files name: the step folder, its line (the epoch of each run used), the data.
    config = cli.moved_data(run.config, FLAGS.workdir, FLAGS.archive, FLAGS.data_dir)
    # What --json may not replace: the run, and the data it reads (--archive, or its record's).
    inputs = [FLAGS.workdir, FLAGS.checkpoint, config.archive, config.data_dir]
    replacing = check_outputs(FLAGS.json, FLAGS.eval_dir, inputs)
    scores = evaluate.evaluate_checkpoint(config, run.members(), run.choice)  # reads the data first
    data = sources.describe_source(config.dataset, data_dir=config.data_dir, archive=config.archive)
    result = {"checkpoint": str(run.checkpoint), "checkpoint_line": run.describe(), "data": data}
    result.update(scores)
    names = sources.class_names(config.dataset)
    lines = [f"checkpoint: {run.describe()}", f"data: {data}"]  # per_class.txt's header too
    if run.choice.each_run:
        lines.append(evaluate.runs_table(result))
    lines.append(
        f"{'ensemble ' if 'ensemble' in result else ''}test accuracy: {result['accuracy']:.4f} "
        f"({result['num_examples']} images), top-5 {result['top5_accuracy']:.4f}, "
        f"loss {result['loss']:.4f}"
    )
    print("\n".join(lines))
    print(evaluate.per_class_table(result["confusion"], names, short=True))
    eval_dir = FLAGS.eval_dir or str(run.workdir / runfiles.EVAL_DIR)
    if not FLAGS.eval_dir and run.choice.label():  # some runs of several: a folder of their own
        eval_dir = os.path.join(eval_dir, run.choice.label())
    before = {}  # a report already in eval_dir
    with contextlib.suppress(OSError, ValueError), open(os.path.join(eval_dir, "scores.json")) as f:
        before = json.load(f)
    paths = evaluate.write_report(result, names, eval_dir, step=run.step(), title="\n".join(lines))
    if FLAGS.json and os.path.realpath(FLAGS.json) != os.path.realpath(paths["scores"]):
        paths["json"] = f"{shutil.copyfile(paths['scores'], FLAGS.json)}{replacing}"
    print(f"wrote {', '.join(str(p) for p in paths.values())} and TensorBoard summaries")
    in_run = runfiles.inside(os.path.realpath(eval_dir), os.path.realpath(run.workdir))
    if _scored(before, in_run) not in (None, _scored(result, in_run)):
        other = "another --eval_dir" if FLAGS.eval_dir else "--eval_dir"
        each = " (with each run's scores)" if "runs" in before else ""
        print(
            f"replaced the report of {before['checkpoint_line']}{each}; give {other} to keep both"
        )


if __name__ == "__main__":
    cli.run(main)
