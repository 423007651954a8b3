"""Configs: the recipe files hold the recipe's numbers, and bad values fail naming the field."""

import importlib.util
import pathlib
import re

import pytest

from swin_flax.config import ConfigError, default_config, validate

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "configs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


@pytest.mark.parametrize("name", ["baseline", "strong", "demo"])
def test_shipped_configs_validate(name):
    validate(load(name), num_devices=2)


def test_recipe_model_is_shortened_swin_s():
    for name in ("baseline", "strong"):
        m = load(name).model
        assert (m.img_size, m.patch_size, m.embed_dim, m.window_size) == (32, 4, 96, 8)
        assert tuple(m.depths) == (2, 2, 18) and tuple(m.num_heads) == (3, 6, 12)
        assert (m.mlp_ratio, m.qkv_bias, m.qk_scale, m.drop_rate, m.attn_drop_rate) == (
            4.0,
            True,
            None,
            0.0,
            0.0,
        )
        assert (m.drop_path_rate, m.ape, m.patch_norm, m.num_classes) == (0.1, False, True, 10)


def test_baseline_numbers():
    c = load("baseline")
    assert c.batch_size == 1024 and c.num_epochs == 300
    assert (c.learning_rate, c.b1, c.b2, c.eps, c.weight_decay) == (1e-3, 0.9, 0.999, 1e-8, 0.01)
    assert c.schedule == "constant" and not c.weight_decay_exempt
    assert tuple(c.normalize_mean) == (0.5,) * 3 and tuple(c.normalize_std) == (0.5,) * 3
    assert c.randaugment == "" and c.mix.mixup_alpha == 0 and c.mix.cutmix_alpha == 0


def test_strong_numbers():
    c = load("strong")
    assert c.batch_size == 1024 and c.num_epochs == 300
    assert (c.learning_rate, c.weight_decay) == (1e-3, 0.05) and not c.weight_decay_exempt
    assert (c.schedule, c.warmup_epochs, c.warmup_lr_init, c.lr_min, c.cosine_epochs) == (
        "cosine_epoch",
        20,
        1e-4,
        1e-4,
        300,
    )
    assert c.warmup_prefix
    assert tuple(c.normalize_mean) == (0.0,) * 3 and tuple(c.normalize_std) == (1.0,) * 3
    assert c.randaugment == "rand-m9-mstd0.5"
    assert tuple(c.randaugment_img_mean) == (124, 116, 104) and c.randaugment_translate_const == 117
    mix = c.mix
    assert (mix.mixup_alpha, mix.cutmix_alpha, mix.cutmix_minmax, mix.prob, mix.switch_prob) == (
        0.0,
        1.0,
        None,
        1.0,
        0.0,
    )
    assert (mix.mode, mix.label_smoothing) == ("batch", 0.0)


@pytest.mark.parametrize(
    "field, value, needle",
    [
        ("num_epochs", 0, "config.num_epochs"),
        ("num_epochs", -3, "config.num_epochs"),
        ("batch_size", 1023, "config.batch_size"),
        ("dataset", "imagenet", "config.dataset"),
        ("schedule", "linear", "config.schedule"),
        ("dtype", "float16", "config.dtype"),
        ("remat", "True", "config.remat"),  # what --config.remat=True gives the string field
        ("learning_rate", 0.0, "config.learning_rate"),
        ("mix.mode", "elem", "config.mix.mode"),
        ("model.window_size", 5, "window_size"),
        ("model.num_heads", (3, 6, 11), "num_heads"),
        ("model.img_size", 30, "img_size"),
        ("model.num_classes", 100, "config.model.num_classes"),
        ("randaugment", "rand-m9-zz3", "config.randaugment"),
        # Optimiser and schedule fields: checked here only (optim.py trusts its arguments).
        ("warmup_epochs", -1, "config.warmup_epochs"),
        ("cosine_epochs", 0, "config.cosine_epochs"),
        ("lr_min", -1e-5, "config.lr_min"),
        ("learning_rate", float("nan"), "config.learning_rate"),
        ("learning_rate", float("inf"), "config.learning_rate"),
        ("weight_decay", -0.01, "config.weight_decay"),
        ("b1", 1.0, "config.b1"),
        ("b2", -0.1, "config.b1"),
        ("eps", float("inf"), "config.eps"),
        ("grad_clip_norm", -1.0, "config.grad_clip_norm"),
        ("layer_decay", 1.5, "config.layer_decay"),
        (
            "pretrained_head",
            True,
            "config.pretrained_head: keeps the classifier of config.pretrained",
        ),
        # Data fields: checked here only (data/ trusts its arguments).
        # flax's ImageNet example gives pixel-scale values: divided by 255, timm's ImageNet ones.
        ("normalize_mean", (123.675, 116.28, 103.53), "config.normalize_mean: values apply to"),
        ("normalize_mean", (123.675, 116.28, 103.53), "divide by 255: (0.485, 0.456, 0.406)."),
        ("normalize_std", (58.395, 57.12, 57.375), "divide by 255: (0.229, 0.224, 0.225)."),
        ("normalize_std", (0.5, 0.0, 0.5), "config.normalize_std: values must be > 0."),
        ("randaugment_translate_const", -5, "config.randaugment_translate_const: is in pixels"),
        ("randaugment_img_mean", (124, 116), "config.randaugment_img_mean"),
        ("randaugment_img_mean", (124, 116, 300), "config.randaugment_img_mean"),
        ("mix.prob", 1.5, "config.mix.prob"),
        ("mix.switch_prob", -0.1, "config.mix.switch_prob"),
        ("mix.label_smoothing", 1.0, "config.mix.label_smoothing"),
        ("mix.mixup_alpha", -1.0, "config.mix.mixup_alpha"),
        ("mix.cutmix_minmax", (0.8, 0.2), "config.mix.cutmix_minmax"),
        ("mix.cutmix_minmax", (0.1, 0.2, 0.3), "config.mix.cutmix_minmax"),
        ("synthetic_train_examples", 0, "config.synthetic_train_examples"),
        # Values that passed once and failed later: in the first step or as a traceback.
        ("warmup_lr_init", float("inf"), "config.warmup_lr_init: must be a finite number"),
        ("mix.mixup_alpha", float("inf"), "config.mix.mixup_alpha: must be a finite number"),
        ("mix.cutmix_alpha", float("nan"), "config.mix.cutmix_alpha: must be a finite number"),
        ("seed", -1, "config.seed: must be an integer in"),
        ("seed", 2**64, "config.seed"),
        ("data_seed", -5, "config.data_seed"),
        ("model.in_chans", 1, "config.model.in_chans: cifar10 images have 3 channels"),
        # True is an int to Python, and ConfigDict's int fields take it: no count, nor a seed.
        ("num_epochs", True, "config.num_epochs: must be a positive integer, got True."),
        ("seed", False, "config.seed: must be an integer in"),
        ("profile_steps", True, "config.profile_steps: must be an integer >= 0"),
    ],
)
def test_bad_values_name_the_field(field, value, needle):
    c = default_config()
    node, key = c, field
    if "." in field:
        head, key = field.split(".")
        node = c[head]
    node[key] = value
    with pytest.raises(ConfigError, match=re.escape(needle)):
        validate(c, num_devices=2)


def test_pixel_scale_normalisation_names_both_fields_at_once():
    """flax's ImageNet example's mean and std (pixel scale): both refused in one message, with
    timm's ImageNet values (theirs / 255) to give instead."""
    c = default_config()
    c.normalize_mean, c.normalize_std = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
    with pytest.raises(ConfigError) as e:
        validate(c)
    assert str(e.value).startswith("config.normalize_mean and config.normalize_std: values apply")
    assert str(e.value).endswith("divide by 255: (0.485, 0.456, 0.406) and (0.229, 0.224, 0.225).")


def test_a_run_given_as_pretrained_says_to_export_it(tmp_path, monkeypatch):
    """A run of scripts/main.py (its folder, or anything in its checkpoints/) is not a state_dict
    file: the message names the run and the export that makes one; any other folder is said to be
    one, any other file not to be a PyTorch checkpoint."""
    monkeypatch.chdir(tmp_path)
    step = tmp_path / "runs" / "demo" / "checkpoints" / "best" / "160"
    (step / "state").mkdir(parents=True)
    (step / "meta").mkdir()
    (tmp_path / "runs" / "demo" / "checkpoints" / "best" / "stray").mkdir()  # not a step folder
    (tmp_path / "runs" / "demo" / "config.json").write_text("{}")
    (tmp_path / "copied" / "checkpoints" / "latest" / "8").mkdir(parents=True)  # no config.json
    export = (
        "of scripts/main.py, not a state_dict file: export its weights first (python "
        "scripts/export.py {source} --out {run}.safetensors) and give that file."
    )
    run = "runs/demo"
    workdir, checkpoint = f"--workdir {run}", f"--checkpoint {run}/checkpoints/best/160"
    cases = {
        "runs/demo/": "runs/demo/ is a run " + export.format(source=workdir, run=run),
        "runs/demo/checkpoints/best/160/state": "runs/demo/checkpoints/best/160/state is in the "
        "checkpoints of the run runs/demo " + export.format(source=checkpoint, run=run),
        "runs/demo/checkpoints": "runs/demo/checkpoints is in the checkpoints of the run runs/demo "
        + export.format(source=workdir, run=run),
        "runs/demo/checkpoints/best/stray": "runs/demo/checkpoints/best/stray is in the "
        "checkpoints of the run runs/demo " + export.format(source=workdir, run=run),
        str(step): f"{step} is in the checkpoints of the run {tmp_path}/runs/demo "
        + export.format(source=f"--checkpoint {step}", run=f"{tmp_path}/runs/demo"),
    }
    for other in ("swin.txt", "swin"):  # not a folder
        cases[other] = (
            f"{other} is not a PyTorch checkpoint (.pth, .pt, .bin, .ckpt, .safetensors) or an "
            ".npz of a state_dict."
        )
    # Another folder: said as one, with the checkpoint files it holds (a download's folder).
    (tmp_path / "swin-tiny").mkdir()
    (tmp_path / "swin-tiny" / "model.safetensors").write_bytes(b"")
    (tmp_path / "swin-tiny" / "README.md").write_text("")
    folder = (
        "is a folder: give the checkpoint file itself (.pth, .pt, .bin, .ckpt, .safetensors, .npz)"
    )
    cases["runs"] = f"runs {folder}."
    cases["copied/checkpoints/latest/8"] = (
        f"copied/checkpoints/latest/8 {folder}."  # no config.json
    )
    (tmp_path / "hub").mkdir()  # a model hub's download: its config.json makes it no run
    (tmp_path / "hub" / "config.json").write_text("{}")
    (tmp_path / "hub" / "model.safetensors").write_bytes(b"")
    cases["hub"] = (
        f"hub {folder} (it holds model.safetensors: e.g. --config.pretrained=hub/model.safetensors)."
    )
    cases["swin-tiny"] = (
        f"swin-tiny {folder} (it holds model.safetensors: e.g. "
        "--config.pretrained=swin-tiny/model.safetensors)."
    )
    c = default_config()
    for path, expected in cases.items():
        c.pretrained = path
        with pytest.raises(ConfigError) as e:
            validate(c, num_devices=2)
        assert str(e.value) == f"config.pretrained: {expected}"
    monkeypatch.chdir(step.parent)  # below the run: it is named whole, the step as given
    c.pretrained = "160"
    with pytest.raises(ConfigError) as e:
        validate(c, num_devices=2)
    demo = tmp_path / "runs" / "demo"
    assert str(e.value) == f"config.pretrained: 160 is in the checkpoints of the run {demo} " + (
        export.format(source="--checkpoint 160", run=demo)
    )


def test_a_cutmix_range_without_a_box_size_is_refused():
    """timm draws box sides in [int(size * min), int(size * max)): empty for (0.5, 0.51) at 32
    pixels (16, 16). It was a traceback from the pipeline, after the workdir was made."""
    c = default_config()
    c.mix.cutmix_minmax = (0.5, 0.51)
    with pytest.raises(ConfigError) as e:
        validate(c, num_devices=2)
    assert str(e.value) == (
        "config.mix.cutmix_minmax: (0.5, 0.51) leaves no box size for a 32x32 image (int(size * "
        "min) must be < int(size * max)); widen the range."
    )
    c.mix.cutmix_minmax = (0.5, 0.54)  # sides of 16 pixels: int(32 * 0.54) == 17
    validate(c, num_devices=2)
    c.mix.cutmix_minmax, c.mix.prob = (0.5, 0.51), 0.0  # never mixed: no box is drawn
    validate(c, num_devices=2)


def test_mixing_needs_an_even_batch_per_host():
    """CutMix/Mixup mix a host's batch with itself reversed (timm asserts an even batch): an odd
    one was a traceback from the pipeline, after the workdir was made."""
    c = default_config()
    c.mix.cutmix_alpha, c.batch_size = 1.0, 66
    validate(c, num_devices=2)
    with pytest.raises(ConfigError) as e:
        validate(c, num_devices=2, num_hosts=2)
    assert str(e.value).startswith("config.batch_size: 66 gives each of the 2 hosts 33 images, and")
    c.batch_size = 33
    with pytest.raises(ConfigError, match=r"^config\.batch_size: 33 is odd, and CutMix/Mixup mix"):
        validate(c)
    c.mix.prob = 0.0  # no mixing: any batch
    validate(c)


def test_unknown_field_is_rejected_naming_the_field_it_likely_means():
    """The closest field by its last name (any depth; of two, the shallower), a sub-dict for a
    sub-dict, a misspelt sub-dict once (not each of its fields), nothing when none is close."""
    cases = {
        "c.num_epoch = 5": "config.num_epoch (did you mean config.num_epochs?)",
        "c.learning_rat = 0.1": "config.learning_rat (did you mean config.learning_rate?)",
        "c.mixup = 0.8": "config.mixup (did you mean config.mix.mixup_alpha?)",
        "c.model.embed_dimm = 3": "config.model.embed_dimm (did you mean config.model.embed_dim?)",
        "c.modl = c.model.to_dict()": "config.modl (did you mean config.model?)",
        "c.zzzz = 1": "config.zzzz",
    }
    for setup, named in cases.items():
        c = default_config()
        exec(setup)  # noqa: S102
        with pytest.raises(ConfigError) as e:
            validate(c)
        assert str(e.value) == (
            f"unknown config field(s) {named}: check the spelling against swin_flax/config.py, "
            "which lists every field."
        ), setup


def test_a_sub_dict_replaced_by_a_dict_says_to_set_its_fields():
    """`c.sweep = {...}` in a config file that started from default_config() drops the sub-dict's
    other fields: said as such, not as a config that did not start from the defaults."""
    c = default_config()
    c.sweep = {"learning_rate": (1e-3, 2e-3)}
    with pytest.raises(ConfigError) as e:
        validate(c)
    assert str(e.value) == (
        "config.sweep.lr_min: missing: config.sweep was replaced by a dict without it. Set the "
        "fields you change one by one (c.sweep.learning_rate = ...) rather than replacing c.sweep."
    )
    c = default_config()
    del c.seed  # a whole field missing: the config did not start from the defaults
    with pytest.raises(ConfigError, match=r"^config\.seed: missing; start configs from default_"):
        validate(c)


def test_warmup_or_decay_settings_with_the_constant_schedule_are_refused():
    """A constant schedule reads none of them: a value given is a mistake, not a setting."""
    for field, value in (("warmup_epochs", 5), ("warmup_lr_init", 1e-5), ("lr_min", 1e-6)):
        c = default_config()
        c.schedule, c[field] = "constant", value
        with pytest.raises(
            ConfigError, match=rf"config\.{field}: {value} has no effect.*'constant'"
        ):
            validate(c)
    c = default_config()
    c.schedule, c.warmup_epochs, c.lr_min = "constant", 5, 1e-6  # named together
    with pytest.raises(
        ConfigError, match=r"warmup_epochs: 5 has no effect .*; nor has lr_min=1e-06"
    ):
        validate(c)
    c = default_config()
    c.schedule, c.sweep.lr_min = "constant", (0.0, 1e-5)
    with pytest.raises(ConfigError, match=r"config\.sweep\.lr_min: 1e-05 has no effect"):
        validate(c)


def test_unknown_mix_field_and_archive_with_synthetic_data():
    c = default_config()
    c.mix.alpha = 1.0
    with pytest.raises(ConfigError, match=r"config\.mix\.alpha"):
        validate(c)
    c = default_config()
    c.dataset, c.archive, c.model.num_classes = "synthetic", "/x/cifar-10-binary.tar.gz", 10
    with pytest.raises(ConfigError, match=r"config\.archive: .* dataset='synthetic'"):
        validate(c)


@pytest.mark.parametrize(
    "dataset, archive, data_dir, refused",
    [  # a KeyError traceback before; said not to exist; the data_dir silently unused
        ("svhn_cropped", "/d/cifar-10-python.tar.gz", None, "config.archive: /d/cifar-10-python"
         ".tar.gz is set but dataset='svhn_cropped' is not read from archives (only cifar10, "
         "cifar100 are): unset it (--config.archive=), or set --config.dataset to one of those to "
         "read the archive."),
        ("cifar10", "gs://b/cifar-10-python.tar.gz", None, "config.archive: gs://b/cifar-10-python"
         ".tar.gz is a URL, but archives are read from local paths only: copy it to this machine "
         "and give its local path."),
        ("cifar10", "/d", "/tfds", "config.data_dir: /tfds is set with config.archive, which is "
         "read instead (tensorflow-datasets and its data_dir are unused then): give one of the two "
         "(--config.data_dir= or --config.archive= unsets one)."),
    ],
    ids=["tfds_dataset", "url", "with_data_dir"],
)  # fmt: skip
def test_an_archive_is_refused_where_it_would_not_be_read(
    monkeypatch, dataset, archive, data_dir, refused
):
    from swin_flax import config

    monkeypatch.setattr(config, "DATASETS", (*config.DATASETS, "svhn_cropped"))  # a tfds name
    c = default_config()
    c.dataset, c.archive, c.data_dir = dataset, archive, data_dir
    with pytest.raises(ConfigError) as e:
        validate(c)
    assert str(e.value) == refused
