"""Input pipeline speed: `python scripts/benchmark_input.py --config configs/strong.py`.

Options: --json PATH (write the results), --epochs-worth N, --devices D.

Times the training pipeline the config describes (for configs/strong.py: RandAugment rand-m9-mstd0.5
+ CutMix, batch 1024) and the evaluation pipeline, on this machine's CPUs, with no model: images/s
over --epochs-worth epochs' batches, both from a dataset per epoch (the last cut short where the
value is not whole) and from one dataset for them all, the build of each epoch's dataset (the
first traces the transform, once a process), the first batch's latency (graph optimisation) and
the steady rate after it; eval images/s of the test images (not the blank ones padding its last
batch). Uses the data the config names when it is available (without downloading), else synthetic
data of CIFAR's size (50,000 / 10,000 images) and says so; an archive or data_dir the config names
is read or refused, never replaced.

Reference (recipe's PyTorch loader on 2 cores): timm's PIL RandAugment + DataLoader(num_workers=2)
+ timm Mixup, about 6,000 images/s.
"""

from swin_flax import cli  # standard library and absl only

cli.start()

import itertools  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # the pipeline runs on CPUs only

from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Path to a config file, e.g. configs/strong.py.")
flags.DEFINE_string("json", None, "Also write the results to this JSON file.")
flags.DEFINE_float(
    "epochs-worth",
    2.0,
    "Training epochs to time, in batches (>= 2 shows the per-epoch cost; 0.2: a fifth of an epoch).",
)
flags.register_validator(
    "epochs-worth", lambda v: 0 < v < float("inf"), "--epochs-worth must be > 0 and finite."
)
flags.DEFINE_integer(
    "devices", 1, "Local devices to shard each batch over ([D, b, ...]).", lower_bound=1
)
flags.mark_flags_as_required(["config"])


def check_flags() -> None:
    """A --json path in a folder that exists, and the config as scripts/main.py checks it with
    --devices devices (its batches must split evenly); a config file that failed to load raises
    OSError at its first access, here."""
    from swin_flax.config import validate  # noqa: PLC0415

    cli.check_output_file("json", FLAGS.json)
    validate(FLAGS.config, num_devices=FLAGS.devices)


def load_data(config):
    """The config's data if it can be read without downloading, else CIFAR-sized synthetic (the
    config's own sizes when it names the synthetic set); a named archive or data_dir is refused."""
    from swin_flax.data import sources  # noqa: PLC0415

    kw = dict(data_dir=config.data_dir, archive=config.archive)
    own = config.dataset == "synthetic"
    train_x, train_y, source = sources.load_or_synthetic(
        config.dataset,
        "train",
        synthetic_examples=config.synthetic_train_examples if own else 50_000,
        **kw,
    )
    test_x, test_y, _ = sources.load_or_synthetic(
        config.dataset,
        "test",
        synthetic_examples=config.synthetic_test_examples if own else 10_000,
        **kw,
    )
    return (train_x, train_y), (test_x, test_y), source


def time_epoch(ds, max_batches: int | None = None) -> dict:
    """Seconds and images/s of `ds`'s batches (the first `max_batches`), counting the real images
    of each batch (its mask: an eval set's last batch is padded), the first batch apart."""
    t0 = time.perf_counter()
    it = ds.as_numpy_iterator()
    first = _real_images(next(it))
    t1 = time.perf_counter()
    n, images = 1, first
    for batch in it if max_batches is None else itertools.islice(it, max_batches - 1):
        n, images = n + 1, images + _real_images(batch)
    t2 = time.perf_counter()
    return {
        "batches": n,
        "images": images,
        "seconds": t2 - t0,
        "images_per_s": round(images / (t2 - t0)),
        "first_batch_s": t1 - t0,
        "steady_images_per_s": round((images - first) / (t2 - t1)) if n > 1 else None,
    }


def _real_images(batch: dict) -> int:
    """The images of a batch that are not padding: its mask's ones (eval), else all its labels."""
    return int(batch["mask"].sum()) if "mask" in batch else batch["label"].size


def _rates(r: dict) -> str:
    """'N images in S s = R images/s (first batch F s, then T images/s)' of a time_epoch result."""
    then = r["steady_images_per_s"]
    then = "" if then is None else f", then {then:,} images/s"
    return (
        f"{r['images']} images in {r['seconds']:.2f} s = {r['images_per_s']:,} images/s (first "
        f"batch {r['first_batch_s']:.2f} s{then})"
    )


def main(argv):
    del argv  # parse_flags refused stray arguments
    check_flags()
    import tensorflow as tf  # noqa: PLC0415

    from swin_flax.data import inputs, pipeline  # noqa: PLC0415

    config = FLAGS.config
    epochs_worth = FLAGS["epochs-worth"].value
    devices = FLAGS.devices
    (train_x, train_y), (test_x, test_y), source = load_data(config)
    print(f"data: {source}")
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    machine = f"{platform.processor() or platform.machine()}, {cpus} CPU cores available"
    print(f"machine: {machine}; TensorFlow {tf.__version__}")

    steps = pipeline.steps_per_epoch(len(train_y), config.batch_size)
    results = {"command": " ".join(sys.argv), "data": source, "machine": machine}
    # Both parts time the same batches: --epochs-worth of them, at least one (the last epoch of
    # part 1 cut short where the value is not whole), so their images/s compare.
    total_batches = max(1, round(epochs_worth * steps))
    # The training stream's arguments as a run takes them (inputs.train_options), on --devices.
    common = {**inputs.train_options(config), "local_device_count": devices}
    # 1. One dataset per epoch (each new dataset pays TF's graph optimisation once).
    train_runs = []
    for epoch in range(math.ceil(total_batches / steps)):
        t = time.perf_counter()
        ds = pipeline.train_dataset(train_x, train_y, epoch=epoch, **common)
        build = time.perf_counter() - t  # the first also traces the transform (once a process)
        r = time_epoch(ds, min(steps, total_batches - epoch * steps))
        r.update(epoch=epoch, build_s=build)
        train_runs.append(r)
        part = "" if r["batches"] == steps else f" ({r['batches']} of its {steps} batches)"
        print(f"train, dataset per epoch, epoch {epoch}{part}: built in {build:.2f} s, {_rates(r)}")
    # 2. One dataset for all the epochs (num_epochs): that cost is paid once.
    ds = pipeline.train_dataset(
        train_x, train_y, epoch=0, num_epochs=math.ceil(total_batches / steps), **common
    )
    joined = time_epoch(ds, total_batches)
    epochs_text = f"{epochs_worth:g} epoch{'s' * (epochs_worth != 1)}"
    print(f"train, one dataset for {epochs_text}: {_rates(joined)}")
    total_images = sum(r["images"] for r in train_runs)
    total_s = sum(r["seconds"] for r in train_runs)
    ds = pipeline.eval_dataset(
        test_x,
        test_y,
        global_batch_size=config.eval_batch_size,
        local_device_count=devices,
        normalize_mean=tuple(config.normalize_mean),
        normalize_std=tuple(config.normalize_std),
        image_size=config.model.img_size,
    )
    ev = time_epoch(ds)
    padded = ev["batches"] * config.eval_batch_size - ev["images"]
    padding = f" ({padded} padding images of the last batch not counted)" if padded else ""
    print(
        f"eval: {ev['images']} images in {ev['seconds']:.2f} s = "
        f"{ev['images_per_s']:,} images/s{padding}"
    )
    results.update(
        train={
            "randaugment": config.randaugment,
            "mix": config.mix.to_dict(),
            "batch_size": config.batch_size,
            "images_per_s_dataset_per_epoch": round(total_images / total_s),
            "dataset_per_epoch": train_runs,
            "images_per_s_one_dataset": joined["images_per_s"],
            "one_dataset": joined,
        },
        eval=ev,
    )
    print(
        f"train overall: {results['train']['images_per_s_dataset_per_epoch']:,} images/s (a "
        f"dataset per epoch), {joined['images_per_s']:,} images/s (one dataset)"
    )
    if FLAGS.json:
        with open(FLAGS.json, "w") as f:
            json.dump(results, f, indent=2, default=str)
        print(f"wrote {FLAGS.json}")


if __name__ == "__main__":
    cli.run(main)
