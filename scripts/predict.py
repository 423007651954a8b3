"""Top-k classes of image files with a trained run's best (or a given) checkpoint.

    python scripts/predict.py --workdir runs/strong cat.jpg ship.png [--top_k 5]
    python scripts/predict.py --checkpoint runs/strong/checkpoints/latest/4880 cat.jpg

Images of any size are resized as the run's config says (model.img_size, bilinear) and normalised
with its normalize_mean / normalize_std.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "The run's folder (holds config.json and checkpoints/).")
flags.DEFINE_string("checkpoint", None, "A checkpoint step folder; default: the run's best.")
flags.DEFINE_integer("top_k", 5, "How many classes to print per image.", lower_bound=1)


def main(argv):
    images = argv[1:]
    from swin_flax import cli, predict  # noqa: PLC0415

    with cli.friendly_errors():
        if not images:
            raise FileNotFoundError("no image given: scripts/predict.py --workdir RUN IMAGE...")
        predictor = predict.load_predictor(FLAGS.workdir, FLAGS.checkpoint)
        predictions = predict.predict_files(predictor, images, FLAGS.top_k)
    print(f"checkpoint: {predictor.checkpoint}")
    print(predict.format_predictions(predictions))


if __name__ == "__main__":
    sys.exit(app.run(main))
