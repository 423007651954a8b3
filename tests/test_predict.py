"""Classifying image files with a run's checkpoint: preprocessing as the config says, top-k, CLI."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageFile

from swin_flax import build, checkpoints, evaluate, predict, rundir
from swin_flax.config import default_config
from swin_flax.data import sources
from tests.test_entry_points import fails_cleanly, run_script, snapshot
from tests.test_evaluate import random_params, save_runs_and_singles

ROOT = pathlib.Path(__file__).resolve().parents[1]
MEAN, STD = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)


def predict_config():
    """A tiny model on 32x32 images with its own normalisation."""
    c = default_config()
    c.dataset = "synthetic"
    c.synthetic_test_examples = 40
    c.eval_batch_size = 8
    c.normalize_mean, c.normalize_std = MEAN, STD
    c.model.update(
        img_size=32,
        patch_size=4,
        embed_dim=8,
        depths=(2,),
        num_heads=(1,),
        window_size=4,
        num_classes=10,
    )
    return c


def make_run(workdir: pathlib.Path, seed: int = 0):
    """A tiny initialised run: config.json and a `best` checkpoint, as train.py leaves them."""
    c = predict_config()
    params = random_params(c, seed)
    rundir.write_config(c, workdir)
    ckpts = checkpoints.Checkpoints(workdir)
    ckpts.save("best", 7, {"params": params, "step": 7}, {"epoch": 1, "step": 7})
    ckpts.close()
    return c, build.model_from_config(c), params


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run")
    c, model, params = make_run(workdir)
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    images = {
        "odd.png": rng.integers(0, 256, (45, 37, 3), dtype=np.uint8),
        "small.jpg": rng.integers(0, 256, (20, 33, 3), dtype=np.uint8),
        "exact.png": rng.integers(0, 256, (32, 32, 3), dtype=np.uint8),
    }
    paths = []
    for name, array in images.items():
        path = folder / name
        Image.fromarray(array).save(path)
        paths.append(str(path))
    grey = folder / "grey.png"
    Image.fromarray(images["odd.png"][..., 0]).save(grey)
    paths.append(str(grey))
    return workdir, c, model, params, paths


def reference_pixels(path, size):
    """The resize written out: Pillow decode, TF bilinear (antialiased) resize, rounded to uint8."""
    with Image.open(path) as img:
        x = np.asarray(img.convert("RGB"), np.float32)
    if x.shape[:2] != (size, size):
        x = tf.image.resize(x, (size, size), method="bilinear", antialias=True).numpy()
    return np.round(x).astype(np.uint8)


def reference_input(path, size):
    """The model input written out: `reference_pixels`, then (x / 255 - mean) / std."""
    x = reference_pixels(path, size).astype(np.float32)
    return (x / 255.0 - np.array(MEAN, np.float32)) / np.array(STD, np.float32)


def test_top_k_matches_the_models_logits(run):
    workdir, c, model, params, paths = run
    opened = evaluate.open_run(str(workdir), None)
    source = opened.describe()
    assert source.endswith(f"{os.path.join('best', '7')} (epoch 1, step 7)")
    members = opened.members()
    preds = predict.predict_images(opened.config, members, paths, k=10)

    inputs = np.stack([reference_input(p, 32) for p in paths])
    logits = np.asarray(jax.jit(model.apply)({"params": params}, jnp.asarray(inputs)), np.float64)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    names = sources.class_names("synthetic")
    for pred, p in zip(preds, probs):
        assert pred.indices[0] == int(np.argmax(p))
        np.testing.assert_allclose(sum(pred.probabilities), 1.0, rtol=1e-6)
        np.testing.assert_allclose(pred.probabilities, np.sort(p)[::-1], rtol=1e-4, atol=1e-6)
        assert list(pred.probabilities) == sorted(pred.probabilities, reverse=True)
        assert pred.names == tuple(names[i] for i in pred.indices)
        assert sorted(pred.indices) == list(range(10))
    three = predict.predict_images(opened.config, members, paths[:1], k=3)[0]
    assert three.indices == preds[0].indices[:3]
    # The decoded images as arrays (a notebook's): the same predictions, named by position.
    arrays = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    from_arrays = predict.predict_images(opened.config, members, arrays, k=10)
    assert [p.path for p in from_arrays] == [f"array {i}" for i in range(len(paths))]
    assert [p.indices for p in from_arrays] == [p.indices for p in preds]
    np.testing.assert_allclose(
        [p.probabilities for p in from_arrays], [p.probabilities for p in preds]
    )
    with pytest.raises(
        ValueError, match=r"image 1: give a uint8 \[H, W, 3\] array, not float64 \(20, 33, 3\)\."
    ):
        predict.predict_images(opened.config, members, [arrays[0], arrays[1] / 255.0], k=1)


def test_preprocess_follows_the_config(run):
    _, _, _, _, paths = run
    exact = paths[2]
    with Image.open(exact) as img:
        pixels = np.asarray(img, np.float32)
    x = predict.preprocess(predict.load_image(exact), 32, MEAN, STD)
    np.testing.assert_allclose(x, (pixels / 255 - np.array(MEAN)) / np.array(STD), atol=1e-6)
    for p in paths:
        got = predict.preprocess(predict.load_image(p), 32, MEAN, STD)
        assert got.shape == (32, 32, 3)
        np.testing.assert_allclose(got, reference_input(p, 32), rtol=1e-5, atol=1e-5)
    grey = predict.load_image(paths[3])
    assert grey.shape == (45, 37, 3) and (grey[..., 0] == grey[..., 2]).all()


def test_a_16_bit_grey_image_is_scaled_and_a_32_bit_one_refused(tmp_path):
    """16-bit grey PNG values v become round(v * 255 / 65535) in each channel (Pillow's own RGB
    conversion clips them at 255); 32-bit integer or float images have no known range: refused."""
    values = np.array([[0, 128, 257, 32768], [40000, 65279, 65534, 65535]], np.uint16)
    Image.fromarray(values).save(tmp_path / "grey16.png")
    got = predict.load_image(tmp_path / "grey16.png")
    expected = np.array([[0, 0, 1, 128], [156, 254, 255, 255]], np.uint8)
    np.testing.assert_array_equal(got, np.stack([expected] * 3, axis=-1))
    Image.fromarray(np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4)).save(tmp_path / "f.tiff")
    Image.fromarray(np.arange(16, dtype=np.int32).reshape(4, 4)).save(tmp_path / "i.tiff")
    for name, kind in (("f.tiff", "floating-point"), ("i.tiff", "integer")):
        with pytest.raises(sources.DataError, match=rf"^image \S+ holds 32-bit {kind} values"):
            predict.load_image(tmp_path / name)  # said once, not wrapped in a second message


def test_a_large_image_is_read_past_pillow_s_limit(tmp_path, monkeypatch, recwarn):
    """Pillow refuses an image over twice Image.MAX_IMAGE_PIXELS (a decompression bomb, for a
    server) and warns over once; the user chose this file. Here the limit is lowered to 100 under
    a 20 x 20 image, and is 100 again after the read (lifted only while it reads)."""
    Image.fromarray(np.full((20, 20, 3), 7, np.uint8)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(Image.DecompressionBombError):  # the limit in force
        Image.open(tmp_path / "big.png")
    np.testing.assert_array_equal(predict.load_image(tmp_path / "big.png"), np.full((20, 20, 3), 7))
    assert Image.MAX_IMAGE_PIXELS == 100
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]


def test_pillow_s_sentence_is_not_given_a_second_full_stop(tmp_path, monkeypatch):
    """An error Pillow words as a sentence ('... attack.') is quoted without its full stop, so that
    the message ends in one."""
    (tmp_path / "a.png").write_bytes(b"x")

    def refuse(*args, **kwargs):
        raise OSError("this is refused.")

    monkeypatch.setattr(Image, "open", refuse)
    with pytest.raises(sources.DataError) as e:
        predict.load_image(tmp_path / "a.png")
    assert str(e.value).endswith("cannot be read as an image (OSError: this is refused).")


def test_a_photo_is_read_upright_as_its_exif_orientation_says(tmp_path):
    """EXIF orientation 6 (the camera turned: viewers rotate the stored pixels 90 degrees
    clockwise): the image read is the stored one rotated clockwise, as numpy's rot90(k=-1)."""
    stored = np.zeros((20, 60, 3), np.uint8)
    stored[:, :10] = 255  # a white band on the left of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation
    Image.fromarray(stored).save(tmp_path / "photo.png", exif=exif)
    got = predict.load_image(tmp_path / "photo.png")
    np.testing.assert_array_equal(got, np.rot90(stored, k=-1))  # 60 x 20, the band on top


def test_top_k_and_bad_input(tmp_path):
    idx, probs = predict.top_k(np.array([[0.0, np.log(3.0)], [2.0, 2.0]]), 5)
    np.testing.assert_array_equal(idx, [[1, 0], [0, 1]])  # k clipped to 2 classes; ties stable
    np.testing.assert_allclose(probs, [[0.75, 0.25], [0.5, 0.5]])
    with pytest.raises(ValueError, match="top_k"):
        predict.top_k(np.zeros((1, 3)), 0)
    bad = tmp_path / "not_an_image.png"
    bad.write_text("hello")
    with pytest.raises(sources.DataError, match="cannot be read"):
        predict.load_image(bad)
    with pytest.raises(FileNotFoundError):
        predict.load_image(tmp_path / "missing.jpg")
    with pytest.raises(sources.DataError, match="is a folder, not an image file"):
        predict.load_image(tmp_path)


def test_read_images_names_each_bad_file(run, tmp_path):
    """Every file is decoded once, before anything compiles: the readable ones are kept in order
    with their model inputs, each other one gets a message naming it and saying what it is. A
    folder stands for the image files under it, subfolders included (torchvision's ImageFolder
    layout: class/img.png), by the suffix of a format Pillow decodes (not its save-only PDF or its
    stubs such as HDF5), in path order (linked folders followed, but not links back up: a loop):
    not its other files, hidden ones or macOS' __MACOSX/, nor a folder named like an image."""
    _, _, _, _, paths = run
    (tmp_path / "notes.png").write_text("not an image")
    photos, empty = tmp_path / "photos", tmp_path / "empty"
    (photos / "sub.png").mkdir(parents=True)
    (photos / "dog" / "young").mkdir(parents=True)
    (photos / "cat").mkdir()
    (empty / "cat").mkdir(parents=True)  # subfolders but no image anywhere below
    (empty / "cat" / "readme.txt").write_text("none yet")
    shutil.copy(paths[1], photos / "b.JPG")
    shutil.copy(paths[0], photos / "a.png")
    shutil.copy(paths[0], photos / "dog" / "young" / "d.png")
    shutil.copy(paths[2], photos / "dog" / "c.png")
    shutil.copy(paths[1], photos / "cat" / "z.jpg")
    (photos / "readme.txt").write_text("holiday")
    # Files whose suffix Pillow lists but cannot decode: a report saved as PDF (Pillow writes
    # PDF, reads none), an HDF5 file (a stub reads its header), an MPEG stream (its header only).
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(photos / "report.pdf")
    (photos / "data.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(32))
    (photos / "cat" / "clip.mpg").write_bytes(b"\x00\x00\x01\xb3\x02\x00\x20" + bytes(32))
    # A zip unpacked on macOS: its resource forks are not images, nor are hidden files.
    (photos / "__MACOSX" / "cat").mkdir(parents=True)
    for junk in (photos / "__MACOSX" / "cat" / "._z.jpg", photos / "cat" / "._z.jpg"):
        junk.write_bytes(b"\x00\x05\x16\x07")
    (photos / "bird").symlink_to(photos / "dog" / "young")  # followed, as ImageFolder does
    (photos / "up").symlink_to("..")  # links back up: loops, not followed
    (photos / "dog" / "young" / "back").symlink_to(photos)
    given = [paths[0], str(tmp_path / "missing.jpg"), photos, empty, str(tmp_path / "notes.png")]
    good, inputs, bad = predict.read_images([*given, photos / "report.pdf"], 32)
    below = ["a.png", "b.JPG", "bird/d.png", "cat/z.jpg", "dog/c.png", "dog/young/d.png"]
    assert good == [paths[0], *(str(photos / p) for p in below)]
    for path, x in zip(good, inputs, strict=True):  # resized, decoded once, kept as uint8
        assert x.dtype == np.uint8
        np.testing.assert_array_equal(x, reference_pixels(path, 32))
    pdf = photos / "report.pdf"  # named, not found in a folder: said what it is
    assert bad == [
        f"image {tmp_path / 'missing.jpg'} does not exist",
        f"the folder {empty} holds no image file (PNG, JPEG, ...)",
        f"image {tmp_path / 'notes.png'} cannot be read as an image (UnidentifiedImageError: "
        f"cannot identify image file '{tmp_path / 'notes.png'}')",
        f"image {pdf} cannot be read as an image (UnidentifiedImageError: cannot identify image "
        f"file '{pdf}')",
    ]


def test_images_wait_as_uint8_and_each_batch_is_normalised_as_the_formula_says(run):
    """read_images keeps each image resized in uint8 (a quarter of float32: 10k images at 224 take
    1.5 GB, not 6); classify normalises each batch: the predictions are those of the model on
    (x / 255 - mean) / std of all of them at once, computed here. Found by a review."""
    workdir, _, model, params, paths = run
    opened = evaluate.open_run(str(workdir), None)
    good, images, _ = predict.read_images(paths, 32)
    assert [(x.dtype, x.shape) for x in images] == [(np.uint8, (32, 32, 3))] * len(paths)
    x = (np.stack(images).astype(np.float32) / 255 - np.float32(MEAN)) / np.float32(STD)
    logits = np.asarray(jax.jit(model.apply)({"params": params}, jnp.asarray(x)), np.float64)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    preds = predict.classify(opened.config, opened.members(), good, images, k=10, batch_size=3)
    for pred, p in zip(preds, probs, strict=True):  # two batches: 3 images, then 1
        assert list(pred.indices) == np.argsort(-p, kind="stable").tolist()
        np.testing.assert_allclose(pred.probabilities, np.sort(p)[::-1], rtol=1e-5, atol=1e-7)


def test_an_image_too_large_for_memory_is_named_and_the_others_predicted(run, monkeypatch):
    """Pillow's limit is lifted, so a huge image (or a decompression bomb) can exhaust the host's
    memory while decoding: that file is named as a bad one, not the whole command said to be out
    of memory (cli.friendly_errors' training advice). Found by a review."""
    paths = run[-1]
    decode = ImageFile.ImageFile.load

    def load(image):
        if image.filename == paths[1]:
            raise MemoryError
        return decode(image)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    good, images, bad = predict.read_images(paths[:3], 32)
    assert good == [paths[0], paths[2]] and len(images) == 2
    assert bad == [
        f"image {paths[1]} is too large to decode in memory: pass a smaller copy of it (predict "
        "resizes it to the model's input size anyway)"
    ]


def test_a_folder_s_run_folders_are_not_walked(run, tmp_path):
    """`predict.py --workdir runs/a runs/`: the runs' reports (eval/confusion.png, a run of
    several's runs/test_accuracy.png) are no photos; the images beside them are read, and
    a run's folder given itself is named. Found by a review."""
    paths = run[-1]
    runs, run_a = tmp_path / "runs", tmp_path / "runs" / "a"
    (run_a / "eval").mkdir(parents=True)
    (run_a / "runs").mkdir()
    (run_a / "config.json").write_text("{}")
    (run_a / "config.txt").write_text("")  # a run writes both; a photo folder may hold a JSON
    (runs / "cats").mkdir()
    (runs / "cats" / "config.json").write_text("{}")
    shutil.copy(paths[0], run_a / "eval" / "confusion.png")
    shutil.copy(paths[0], run_a / "runs" / "test_accuracy.png")
    shutil.copy(paths[0], runs / "photo.png")
    shutil.copy(paths[0], runs / "cats" / "cat.png")
    good, _, bad = predict.read_images([runs], 32)
    assert good == [str(runs / "cats" / "cat.png"), str(runs / "photo.png")] and bad == []
    good, _, bad = predict.read_images([run_a], 32)
    assert good == [] and bad == [f"{run_a} is a run's folder, not a folder of images"]


def test_a_quoted_pattern_is_said_to_be_unexpanded(tmp_path):
    """'imgs/*.png' quoted (or matching no file: bash passes it then too) reaches the script as it
    is: said so, not just 'does not exist'."""
    (tmp_path / "imgs").mkdir()
    for pattern in ("imgs/*.png", "imgs/cat?.jpg", "imgs/[ab].png"):
        _, _, bad = predict.read_images([str(tmp_path / pattern)], 32)
        assert bad == [
            f"image {tmp_path / pattern} does not exist: the pattern was not expanded (it was "
            "quoted, or no file matches it): give it without quotes, or give the folder itself "
            "(its images are all read)"
        ]


def test_cli_prints_names_and_probabilities(run, tmp_path):
    workdir, _, _, _, paths = run
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "predict.py"),
            f"--workdir={workdir}",
            "--top_k=2",
            f"--json={tmp_path / 'p.json'}",
            *paths[:2],
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert lines[1] == paths[0] and lines[4] == paths[1]
    assert lines[2].strip().startswith("1. stripes_") and lines[3].strip().startswith("2. ")
    # --json: the same predictions, per file, and the checkpoint of the header line
    text = (tmp_path / "p.json").read_text()
    saved = json.loads(text)
    assert set(saved) == {"checkpoint", "checkpoint_line", "predictions", "unreadable"}
    assert len(text.splitlines()) == 9  # {, 3 entries, "predictions": [, a line per image, ], }
    rows = text.splitlines()[5:7]
    assert [json.loads(row.rstrip(",")) for row in rows] == saved["predictions"]
    assert lines[0] == f"checkpoint: {saved['checkpoint_line']}"
    assert [p["path"] for p in saved["predictions"]] == list(paths[:2]) and saved[
        "unreadable"
    ] == []
    for p, printed in zip(saved["predictions"], (lines[2:4], lines[5:7]), strict=True):
        shown = [f"  {r}. {n:<20s} ({i:>3d})  {q:.4f}" for r, (n, i, q) in enumerate(
            zip(p["names"], p["indices"], p["probabilities"], strict=True), 1
        )]  # fmt: skip
        assert shown == printed
    assert lines[7:] == [f"wrote {tmp_path / 'p.json'}"]  # said, as evaluate.py says its files


def test_ten_ranks_line_up():
    """Rank 10's dot sits under rank 9's (--top_k 10 on CIFAR-10)."""
    ten = predict.Prediction("a.png", tuple(range(10)), ("cat",) * 10, (0.1,) * 10)
    lines = predict.format_predictions([ten]).splitlines()
    assert lines[0] == "a.png" and len(lines) == 11
    assert lines[1] == "   1. cat                  (  0)  0.1000"
    assert lines[10] == "  10. cat                  (  9)  0.1000"


def test_cli_predicts_the_good_files_and_names_the_bad_ones(run, tmp_path):
    """Good and bad files: the good ones are predicted (stdout as usual), the bad ones named in one
    paragraph, exit status 2."""
    workdir, _, _, _, paths = run
    (tmp_path / "notes.png").write_text("not an image")
    (tmp_path / "empty").mkdir()
    (tmp_path / "photos" / "cat").mkdir(parents=True)  # ImageFolder layout: class folders
    shutil.copy(paths[1], tmp_path / "photos" / "cat")
    bad = ["missing.jpg", "notes.png", "empty"]
    before = snapshot(tmp_path)
    out = run_script(
        "predict.py", f"--workdir={workdir}", "--top_k=1", paths[0], *bad, "photos", cwd=tmp_path
    )
    assert snapshot(tmp_path) == before
    message = " ".join(out.stderr.split())
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert message.startswith("Error: 3 of 5 files are not images that can be read: ")
    assert "image missing.jpg does not exist" in message
    assert "image notes.png cannot be read as an image" in message
    assert "the folder empty holds no image file (PNG, JPEG, ...)" in message
    assert message.endswith("The predictions above are for the 2 files that could be read.")
    lines = out.stdout.splitlines()
    assert lines[1] == paths[0] and lines[2].strip().startswith("1. stripes_") and len(lines) == 5
    assert lines[3] == os.path.join("photos", "cat", os.path.basename(paths[1]))  # in a subfolder


@pytest.mark.parametrize(
    "args, expected",
    [
        ([], "no image given"),
        (["--top_k=0", "cat.png"], "flag --top_k=0: 0 is not a positive integer"),
    ],
    ids=["no_image", "top_k"],
)
def test_cli_refuses_before_loading_a_checkpoint(args, expected, tmp_path):
    """With no image or a bad --top_k nothing is loaded: the --workdir given does not even exist,
    and the message is about the images."""
    message = fails_cleanly("predict.py", "--workdir=no_such_run", *args, cwd=tmp_path)
    assert expected in message and "no_such_run" not in message


def test_cli_checks_the_run_before_reading_any_image(tmp_path):
    """A --workdir that names no run is said before any image is read (decoding a folder of photos
    takes seconds): here the image is bad too, and only the run is named."""
    message = fails_cleanly("predict.py", "--workdir=no_such_run", "missing.jpg", cwd=tmp_path)
    assert (
        message.startswith("Error: --workdir no_such_run does not exist")
        and "missing" not in message
    )


@pytest.mark.parametrize(
    "args, expected",
    [
        (["missing.jpg", "."], "Error: 2 of 2 files are not images that can be read"),
        (["missing.jpg"], "Error: image missing.jpg does not exist. Give image files"),  # no count
    ],
    ids=["only_bad_files", "one_bad_file"],
)
def test_cli_refuses_only_bad_files_before_compiling(args, expected, run, tmp_path):
    """Only bad files: refused, the message about the images, before the params are read."""
    message = fails_cleanly("predict.py", f"--workdir={run[0]}", *args, cwd=tmp_path)
    assert message.startswith(expected)


def test_a_run_given_as_an_image_is_named(tmp_path):
    """`predict.py runs/demo cat.png`, --workdir left out: the run folder is named as such."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{}")
    message = fails_cleanly("predict.py", "run", "cat.png", cwd=tmp_path)
    assert (
        message
        == "Error: run is a run's folder, not an image: give it as --workdir run, then the images."
    )


def test_missing_run_is_a_clear_error(tmp_path):
    with pytest.raises(checkpoints.CheckpointError, match="holds no config.json"):
        evaluate.open_run(str(tmp_path), None)


def test_class_names():
    assert sources.class_names("cifar10") == (
        "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
    )  # fmt: skip
    fine = sources.class_names("cifar100")
    # CIFAR-100's fine_label_names.txt is alphabetical, 100 names, with these at known labels.
    assert len(set(fine)) == 100 and list(fine) == sorted(fine)
    assert (fine[0], fine[19], fine[58], fine[99]) == ("apple", "cattle", "pickup_truck", "worm")
    synthetic = sources.class_names("synthetic")
    assert len(set(synthetic)) == 10 and synthetic[0] == "stripes_0deg_x2"
    assert synthetic[9] == "stripes_144deg_x4"
    with pytest.raises(ValueError):
        sources.class_names("imagenet")


# A checkpoint of several runs (here a sweep of two learning rates): params stacked on a run axis.
SWEPT = ("learning_rate=0.001", "learning_rate=0.002")


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """(folder of a run of two swept learning rates with independent random params, each run's
    params saved as a single run's checkpoint, the single runs' top-10 predictions of the images)."""
    c = predict_config()
    c.sweep.learning_rate = (1e-3, 2e-3)
    return save_runs_and_singles(tmp_path_factory, c, predict_config(), (1, 2))


@pytest.fixture(scope="module")
def single_predictions(two_runs, run):
    paths = run[-1]
    return [_predict(evaluate.open_run(str(d), None), paths) for d in two_runs[1]]


def _predict(opened, paths):
    return predict.predict_images(opened.config, opened.members(), paths, k=10)


def _probabilities(predictions):
    """[images, classes] probabilities from top-10 predictions (every class listed)."""
    out = np.zeros((len(predictions), 10))
    for row, pred in zip(out, predictions):
        row[list(pred.indices)] = pred.probabilities
    return out


def test_the_ensemble_predicts_the_mean_of_the_runs_probabilities(
    two_runs, run, single_predictions
):
    """By default and with --ensemble: the mean of the runs' softmax probabilities, as each run's
    own checkpoint gives them."""
    paths = run[-1]
    opened = evaluate.open_run(str(two_runs[0]), None)
    assert opened.choice.indices == (0, 1) and len(opened.members()) == 2
    assert opened.choice.describe().startswith("the ensemble of its 2 runs")
    preds = _predict(opened, paths)
    expected = np.mean([_probabilities(p) for p in single_predictions], axis=0)
    np.testing.assert_allclose(_probabilities(preds), expected, rtol=1e-5, atol=1e-7)
    for pred, p in zip(preds, expected):
        assert pred.indices[0] == int(np.argmax(p)) and pred.path in paths
    explicit = evaluate.open_run(str(two_runs[0]), None, ensemble=True)
    assert _predict(explicit, paths) == preds


@pytest.mark.parametrize(
    "which, k", [("0", 0), ("learning_rate=0.002", 1), ("learning_rate = 2e-3", 1)]
)
def test_one_run_predicts_as_a_single_run(which, k, two_runs, run, single_predictions):
    """--run by index or by name (its numbers written in any way)."""
    opened = evaluate.open_run(str(two_runs[0]), None, which)
    assert opened.choice.describe() == f"run {k} (of 0-1), {SWEPT[k]}"
    source = opened.describe()
    assert source.endswith(f"best/3, run {k} (of 0-1), {SWEPT[k]}, its best epoch 1")
    assert _predict(opened, run[-1]) == single_predictions[k]


def test_run_choices_the_checkpoint_does_not_hold(two_runs):
    with pytest.raises(checkpoints.CheckpointError, match="single run: leave --ensemble out"):
        evaluate.open_run(str(two_runs[1][0]), None, ensemble=True)
    with pytest.raises(checkpoints.CheckpointError, match="--run 2 names none of the 2 runs"):
        evaluate.open_run(str(two_runs[0]), None, "2")


@pytest.mark.slow  # scripts/predict.py as a subprocess
def test_cli_says_it_predicts_with_the_ensemble(two_runs, run, tmp_path):
    paths = run[-1]
    (tmp_path / "p.json").write_text("{}")  # replaced: said, as export.py says it
    out = run_script(
        "predict.py",
        f"--workdir={two_runs[0]}",
        "--top_k=1",
        "--json=p.json",
        paths[0],
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert lines[0] == (
        f"checkpoint: {two_runs[0]}/checkpoints/best/3, the ensemble of its 2 runs (the mean of "
        "their probabilities), their best epochs 1, 1"
    )
    assert lines[1] == paths[0] and len(lines) == 4
    assert lines[3] == "wrote p.json (replacing the file there)"
    # --json names the runs used, as evaluate.py's scores.json does
    saved = json.loads((tmp_path / "p.json").read_text())
    assert saved["ensemble"] == ["learning_rate=0.001", "learning_rate=0.002"]


@pytest.mark.slow  # scripts/predict.py as a subprocess
def test_cli_refuses_a_json_over_its_run_or_an_image(run, tmp_path):
    """`--workdir runs/a --json runs/a/config.json` replaced the run's config.json, `--json img.png
    img.png` the image: refused before the work. Found by a predict/export user trial."""
    workdir, paths = run[0], run[-1]
    shutil.copy(paths[0], tmp_path / "img.png")
    before = snapshot(workdir)
    over_the_run = f"--json={workdir}/config.json"
    message = fails_cleanly(
        "predict.py", f"--workdir={workdir}", over_the_run, "img.png", cwd=tmp_path
    )
    assert message.startswith(
        f"Error: --json {workdir}/config.json is among the files of {workdir}, the run"
    )
    assert snapshot(workdir) == before
    message = fails_cleanly(
        "predict.py", f"--workdir={workdir}", "--json=img.png", "img.png", cwd=tmp_path
    )
    assert message == (
        "Error: --json img.png is an input of this command (img.png): give another path, or it "
        "would be replaced."
    )
    (tmp_path / "photos").mkdir()  # an image in a folder given is read too: kept as well
    shutil.copy(paths[0], tmp_path / "photos" / "cat.png")
    before = (tmp_path / "photos" / "cat.png").read_bytes()
    message = fails_cleanly(
        "predict.py", f"--workdir={workdir}", "--json=photos/cat.png", "photos", cwd=tmp_path
    )
    assert message.startswith("Error: --json photos/cat.png is an input of this command")
    assert (tmp_path / "photos" / "cat.png").read_bytes() == before


@pytest.mark.slow  # scripts/predict.py as a subprocess
def test_cli_refuses_a_run_it_does_not_hold(two_runs, run, tmp_path):
    """`--run 0.002`, a swept value alone: the refusal shows the form that works."""
    message = fails_cleanly(
        "predict.py", f"--workdir={two_runs[0]}", "--run=0.002", run[-1][0], cwd=tmp_path
    )
    assert message.startswith("Error: --run 0.002 names none of the 2 runs of the checkpoint ")
    assert message.endswith(
        "best/3: give an index from 0 to 1 or a name (0 'learning_rate=0.001', 1 "
        "'learning_rate=0.002'), e.g. --run learning_rate=0.002."
    )
