"""Pictures of the training input: `python scripts/show_augmentations.py --config configs/strong.py
--out grid.png`.

Writes a PNG of the first images of a training batch exactly as the pipeline feeds them to the
model (RandAugment, resize, CutMix/Mixup as the config says), each row of augmented images below
the same images without augmentation. Uses the config's data if it is readable without
downloading, else the synthetic set (the script says which).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Path to a config file, e.g. configs/strong.py.")
flags.DEFINE_string("out", "augmentations.png", "PNG file to write.")
flags.DEFINE_integer("count", 32, "Number of images shown.")
flags.DEFINE_integer("cols", 8, "Images per row.")
flags.DEFINE_integer("scale", 4, "Enlargement of each image (nearest neighbour).")
flags.DEFINE_integer("epoch", 0, "Which epoch's first batch to show.")
flags.mark_flags_as_required(["config"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    import numpy as np  # noqa: PLC0415
    from PIL import Image  # noqa: PLC0415

    from swin_flax.data import pipeline, sources, viz  # noqa: PLC0415

    c = FLAGS.config
    images, labels, source = sources.load_or_synthetic(
        c.dataset,
        "train",
        data_dir=c.data_dir,
        archive=c.archive,
        synthetic_examples=c.synthetic_train_examples,
        seed=c.seed,
    )
    print(f"data: {source}")
    kw = dict(
        num_classes=c.model.num_classes,
        global_batch_size=min(c.batch_size, len(labels)),
        epoch=FLAGS.epoch,
        seed=c.seed,
        randaugment=c.randaugment,
        img_mean=tuple(c.randaugment_img_mean),
        translate_const=c.randaugment_translate_const,
        normalize_mean=tuple(c.normalize_mean),
        normalize_std=tuple(c.normalize_std),
        mix=c.mix.to_dict(),
        image_size=c.model.img_size,
    )
    aug = next(pipeline.train_dataset(images, labels, **kw).as_numpy_iterator())
    plain_kw = dict(kw, randaugment="", mix={})  # same order, no augmentation
    plain = next(pipeline.train_dataset(images, labels, **plain_kw).as_numpy_iterator())
    n = FLAGS.count
    mean, std = tuple(c.normalize_mean), tuple(c.normalize_std)
    before = viz.to_uint8(plain["image"].reshape(-1, *plain["image"].shape[2:])[:n], mean, std)
    after = viz.to_uint8(aug["image"].reshape(-1, *aug["image"].shape[2:])[:n], mean, std)
    grid = viz.before_after_grid(before, after, cols=FLAGS.cols, scale=FLAGS.scale)
    Image.fromarray(grid).save(FLAGS.out)
    target = aug["target"].reshape(-1, aug["target"].shape[-1])
    lam = float(np.max(target[0]))
    print(
        f"wrote {FLAGS.out}: {len(before)} images (rows: plain, then as trained), "
        f"randaugment={c.randaugment!r}, mix={c.mix.to_dict()}; first target's top weight "
        f"{lam:.3f}"
    )


if __name__ == "__main__":
    app.run(main)
