"""Top-k classes of image files with a trained run's best (else its latest, or a given) checkpoint.

    python scripts/predict.py --workdir runs/strong cat.jpg ship.png [--top_k 5]
    python scripts/predict.py --workdir runs/strong my_photos/      # its images, subfolders too
    python scripts/predict.py --checkpoint runs/strong/checkpoints/latest/4880 cat.jpg
    python scripts/predict.py --workdir runs/seeds [--run 1 | --run seed=1 | --ensemble] cat.jpg

Images of any size are resized as the run's config says (to model.img_size squared, bilinear: the
aspect ratio is not kept, crop first to keep it) and normalised with its normalize_mean /
normalize_std. The run is checked first, then every file read: the good ones are predicted, the
others named in one paragraph, and then the exit status is 2. A folder stands for the images under
it (by suffix: the formats Pillow decodes), not those in runs' folders (their reports). --json PATH
also writes the predictions (each file's class indices, names and probabilities, a line per file),
the checkpoint and the files that could not be read to PATH.

A checkpoint of several runs (config.num_runs, config.sweep) predicts with their ensemble (the mean
of their softmax probabilities; --ensemble says so explicitly), or with the one run --run K names
(its index or name: --run 1, --run learning_rate=0.002), or with the ensemble of the runs that hold
a part of a name --run gives (e.g. a swept value with its seeds, --run learning_rate=0.002); the
header line says which.
"""

from swin_flax import cli  # standard library and absl only

cli.start()

import dataclasses  # noqa: E402
import json  # noqa: E402

from absl import flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "The run's folder (holds config.json and checkpoints/).")
flags.DEFINE_string(
    "checkpoint", None, "A checkpoint step folder; default: the run's best, else its latest."
)
flags.DEFINE_integer("top_k", 5, "How many classes to print per image.", lower_bound=1)
flags.DEFINE_string("json", None, "Also write the predictions to this JSON file.")
flags.DEFINE_string(
    "run",
    None,
    "Of a checkpoint of several runs: predict with this one (its index or name), or the ensemble of"
    " the runs that hold a part of a name (e.g. learning_rate=0.002: that value's seeds).",
)
flags.DEFINE_bool(
    "ensemble",
    False,
    "Of a checkpoint of several runs: predict with their ensemble (of all, or of those --run"
    " chooses by part of a name), as without it.",
)


def main(argv):
    if len(argv) < 2:
        cli.exit_user_error(
            "no image given: scripts/predict.py --workdir RUN IMAGE... (PNG, JPEG or anything "
            "Pillow reads)."
        )
    from swin_flax import evaluate, predict, runfiles  # noqa: PLC0415 (jax: after the flags)

    run_folders = [a for a in argv[1:] if runfiles.is_run_folder(a)]
    if run_folders and not (FLAGS.workdir or FLAGS.checkpoint):  # the run given as an argument
        cli.exit_user_error(
            f"{run_folders[0]} is a run's folder, not an image: give it as --workdir "
            f"{run_folders[0]}, then the images."
        )

    run = evaluate.open_run(FLAGS.workdir, FLAGS.checkpoint, FLAGS.run, FLAGS.ensemble)
    c = run.config  # each image decoded once, kept at the model's input size in uint8
    paths, inputs, bad = predict.read_images(argv[1:], c.model.img_size)
    # The images read (those in a folder given too) are inputs: --json may not replace one.
    keep = [FLAGS.workdir, FLAGS.checkpoint, *argv[1:], *paths]
    replacing = cli.check_output_file("json", FLAGS.json, keep=keep)
    n = len(paths) + len(bad)
    are = "is not an image" if len(bad) == 1 else "are not images"
    count = f"{len(bad)} of {n} files {are} that can be read: " if n > 1 else ""
    problems = f"{count}{'; '.join(bad)}."
    if not paths:
        cli.exit_user_error(f"{problems} Give image files (PNG, JPEG or anything Pillow reads).")
    predictions = predict.classify(c, run.members(), paths, inputs, FLAGS.top_k)
    print(f"checkpoint: {run.describe()}")
    print(predict.format_predictions(predictions), flush=True)
    if FLAGS.json:
        out = {"checkpoint": str(run.checkpoint), "checkpoint_line": run.describe()}
        out |= run.choice.used()  # "run" or "ensemble", as in evaluate.py's scores.json
        entries = [
            f"  {json.dumps(k)}: {json.dumps(v)}," for k, v in (out | {"unreadable": bad}).items()
        ]
        rows = ",\n".join(f"    {json.dumps(dataclasses.asdict(p))}" for p in predictions)
        with open(FLAGS.json, "w") as f:  # one line per entry, and per image
            f.write("{\n" + "\n".join(entries) + f'\n  "predictions": [\n{rows}\n  ]\n}}\n')
        print(f"wrote {FLAGS.json}{replacing}")
    if bad:
        files = f"{len(paths)} files" if len(paths) > 1 else "file"
        cli.exit_user_error(
            f"{problems} The predictions above are for the {files} that could be read."
        )


if __name__ == "__main__":
    cli.run(main, takes_arguments=True)
