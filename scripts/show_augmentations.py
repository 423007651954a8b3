"""Pictures of the training input: `python scripts/show_augmentations.py --config configs/strong.py
--out grid.png` (or `--workdir runs/strong`: a trained run's augmentation, from its config.json;
with `--archive PATH` or `--data_dir DIR` where its data moved since it trained).

Writes a PNG of the first images of a training batch exactly as the pipeline feeds them to the
model (RandAugment, resize, CutMix/Mixup as the config says), each row of augmented images below
the same images without augmentation. Uses the config's data if it is readable without
downloading, else the synthetic set (the script says which); an archive or data_dir the config
names is read or refused, never replaced.
"""

from swin_flax import cli  # standard library and absl only

cli.start()

import os  # noqa: E402

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # the pipeline runs on CPUs only

from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Path to a config file, e.g. configs/strong.py.")
flags.DEFINE_string("out", "augmentations.png", "PNG file to write (its folder must exist).")
flags.DEFINE_integer(
    "count", 32, "Number of images shown (at most the config's batch).", lower_bound=1
)
flags.DEFINE_integer("cols", 8, "Images per row.", lower_bound=1)
flags.DEFINE_integer(
    "scale", 4, "Enlargement of each image (nearest neighbour).", lower_bound=1, upper_bound=32
)
flags.DEFINE_integer("epoch", 0, "Which epoch's first batch to show.", lower_bound=0)
flags.DEFINE_string("workdir", None, "A run's folder: its augmentation, instead of --config's.")
cli.define_moved_data_flags()


def check_out(path: str, keep: list[str | None]) -> str:
    """--out must be a .png file path that `cli.check_output_file` accepts (a folder that exists,
    none of `keep` replaced), checked before any work; returns what the `wrote` line adds."""
    if not path.lower().endswith(".png") or os.path.isdir(path):
        cli.exit_user_error(f"--out {path} is not a .png file path: give one, e.g. --out grid.png.")
    return cli.check_output_file("out", path, keep=keep)


def main(argv):
    del argv  # parse_flags refused stray arguments
    c = cli.config_or_run(FLAGS.config, FLAGS.workdir, "augmentation")
    c = cli.moved_data(c, FLAGS.workdir, FLAGS.archive, FLAGS.data_dir)
    replacing = check_out(FLAGS.out, [FLAGS.workdir, c.archive, c.data_dir])
    import numpy as np  # noqa: PLC0415
    from PIL import Image  # noqa: PLC0415

    from swin_flax.config import mixes  # noqa: PLC0415
    from swin_flax.data import inputs, mix, pipeline, sources, viz  # noqa: PLC0415
    from swin_flax.errors import DataError, in_run_tool_flags  # noqa: PLC0415

    try:
        images, labels, source = sources.load_or_synthetic(
            c.dataset,
            "train",
            data_dir=c.data_dir,
            archive=c.archive,
            synthetic_examples=c.synthetic_train_examples,
        )
    except DataError as e:  # a run's (--workdir): its data's place is given by --archive
        raise (in_run_tool_flags(e) if FLAGS.workdir else e) from None
    print(f"data: {source}")
    batch_size = min(c.batch_size, len(labels))
    if mixes(c.mix):  # a batch is mixed with itself reversed: an even one (config.validate's rule)
        batch_size -= batch_size % 2
    per_epoch = pipeline.steps_per_epoch(len(labels), batch_size)
    data = inputs.Data(images, labels, images[:0], labels[:0], per_epoch)  # no test split

    def first_batch(augmented: bool) -> dict:
        """The epoch's first batch of the training stream, or of the same stream unaugmented."""
        config = c.copy_and_resolve_references()
        config.update(batch_size=batch_size, num_epochs=FLAGS.epoch + 1)
        return next(inputs.train_batches(config, data, FLAGS.epoch * per_epoch, augmented))

    aug, plain = first_batch(True), first_batch(False)
    n = FLAGS.count
    mean, std = tuple(c.normalize_mean), tuple(c.normalize_std)
    before = viz.to_uint8(plain["image"].reshape(-1, *plain["image"].shape[2:])[:n], mean, std)
    after = viz.to_uint8(aug["image"].reshape(-1, *aug["image"].shape[2:])[:n], mean, std)
    grid = viz.before_after_grid(before, after, cols=FLAGS.cols, scale=FLAGS.scale)
    Image.fromarray(grid).save(FLAGS.out)
    shown = [f"RandAugment {c.randaugment!r}"] if c.randaugment else []
    if mix.mix_config(c.mix, 1).enabled:
        lam = float(np.max(aug["target"].reshape(-1, aug["target"].shape[-1])[0]))
        shown.append(
            f"CutMix/Mixup as config.mix (the first image's soft target puts {lam:.3f} on its main "
            "class)"
        )
    print(
        f"wrote {FLAGS.out}{replacing}: {len(before)} images (rows: plain, then as trained); "
        f"{' and '.join(shown) or 'the config augments nothing'}"
    )


if __name__ == "__main__":
    cli.run(main)
