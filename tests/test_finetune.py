"""Loading a pretrained PyTorch Swin for fine-tuning, against timm and the official resize code.

tests/fixtures/finetune_source.npz (scripts/fixtures/make_finetune_fixtures.py, timm) holds a Swin-T-shaped
timm model (img 224, window 7, four stages, tiny width): its state_dict, the official names of its
tensors, an input and timm's pooled features, and bias tables / an absolute position embedding
resized by timm's resize_rel_pos_bias_table and by the official load_pretrained's F.interpolate.
"""

import json
import pathlib
import shutil
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from swin_flax import build, cli, finetune, optim, runs, train
from swin_flax.config import ConfigError, validate
from swin_flax.errors import CheckpointError
from swin_flax.models import convert, layout, plan, summary, swin
from tests.test_train import archive, tiny_config  # noqa: F401 (archive: a fixture)

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "finetune_source.npz"
RESIZE_KEYS = (
    "layers.0.blocks.0.attn.relative_position_bias_table",
    "layers.2.blocks.1.attn.relative_position_bias_table",
)


@pytest.fixture(scope="module")
def source():
    d = np.load(FIXTURE)
    cfg = json.loads(str(d["config"]))
    timm_state = {
        k[len("state/") :]: d[k].astype(np.float32) for k in d.files if k.startswith("state/")
    }
    names = json.loads(str(d["official_keys"]))
    official_state = {names[k]: v for k, v in timm_state.items()}
    return d, cfg, timm_state, official_state


def zeros_like_init(model):
    """Stand-in for a fresh init (values only matter for the params left new)."""
    return jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), summary.param_shapes(model))


def test_same_window_reproduces_timm_features_both_layouts(source):
    d, cfg, timm_state, official_state = source
    model = swin.create_model({**cfg, "num_classes": 10})
    init = zeros_like_init(model)
    params, report = finetune.load_pretrained(timm_state, model, init)
    params_off, report_off = finetune.load_pretrained(official_state, model, init)
    assert report.layout == "timm" and report_off.layout == "official"
    jax.tree.map(np.testing.assert_array_equal, params, params_off)

    images = (d["image_codes"].astype(np.float32) - 7.5) / 4.0
    features_fn = jax.jit(lambda p, x: model.apply({"params": p}, x, method=model.forward_features))
    feats = features_fn(params, jnp.asarray(images))
    np.testing.assert_allclose(np.asarray(feats), d["features"], rtol=1e-4, atol=1e-4)

    # A new head (10 classes vs the source's 5), the old one skipped, nothing resized.
    assert set(report.new) == {"head/bias", "head/kernel"}
    assert set(report.skipped) == {"head.fc.weight", "head.fc.bias"}
    assert set(report_off.skipped) == {"head.weight", "head.bias"}
    assert report.resized == ()
    assert len(report.loaded) == len(timm_state) - 2
    np.testing.assert_array_equal(params["head"]["kernel"], 0.0)  # left at the given init
    assert "2 left new" in report.summary() and "skipped head" in report.summary()
    # Every source tensor is accounted for; an official checkpoint's buffers (as the official
    # code's state_dict() holds them: 8 blocks' relative_position_index, an attn_mask for each odd
    # block of the stages whose grid, 56, 28 and 14, exceeds the window 7) are not needed.
    with_buffers = {**official_state, **convert.official_buffers(swin.create_model(cfg))}
    _, report_buf = finetune.load_pretrained(with_buffers, model, init)
    assert report_buf.buffers == 8 + 3 and report.buffers == 0
    for state, rep in ((timm_state, report), (with_buffers, report_buf)):
        assert len(rep.loaded) + len(rep.skipped) + rep.buffers == len(state)
    assert "skipped, 11 buffers not needed (the model makes its own)." in report_buf.summary()


@pytest.mark.parametrize("prefix", ["module.", "model.", "module._orig_mod."])
def test_a_wrapped_models_file_loads_as_the_model_itself(source, tmp_path, prefix):
    """A state_dict saved from a wrapper (DistributedDataParallel's `module.`, a training module's
    `model.`, torch.compile's `_orig_mod.` inside DDP) on every key: read as the plain one."""
    _, cfg, timm_state, _ = source
    model = swin.create_model({**cfg, "num_classes": 10})
    np.savez(tmp_path / "wrapped.npz", **{prefix + k: v for k, v in timm_state.items()})
    params, report = finetune.load_pretrained(
        tmp_path / "wrapped.npz", model, zeros_like_init(model)
    )
    plain, _ = finetune.load_pretrained(timm_state, model, zeros_like_init(model))
    assert report.layout == "timm" and len(report.loaded) == len(timm_state) - 2
    jax.tree.map(np.testing.assert_array_equal, params, plain)


def test_load_head_when_it_fits(source):
    _, cfg, timm_state, _ = source
    model = swin.create_model(cfg)  # 5 classes, like the source
    params, report = finetune.load_pretrained(
        timm_state, model, zeros_like_init(model), load_head=True
    )
    np.testing.assert_array_equal(params["head"]["kernel"], timm_state["head.fc.weight"].T)
    assert report.new == () and report.skipped == ()


@pytest.mark.parametrize("method", ["bicubic", "geometric"])
def test_window_change_resizes_tables_like_the_references(source, method):
    d, cfg, timm_state, official_state = source
    # img 256, window 8: grids 64/32/16/8, every stage's window 8; ape on (source grid 56 -> 64).
    model = swin.create_model({**cfg, "img_size": 256, "window_size": 8, "ape": True})
    state = {**official_state, "absolute_pos_embed": d["ape_source"].astype(np.float32)}
    params, report = finetune.load_pretrained(
        state, model, zeros_like_init(model), bias_resize=method
    )
    for key in RESIZE_KEYS:
        i, j = int(key.split(".")[1]), int(key.split(".")[3])
        table = params[f"layers_{i}"][f"blocks_{j}"]["attn"]["relative_position_bias_table"]
        np.testing.assert_allclose(table, d[f"resize/{method}/8/{key}"], rtol=1e-5, atol=1e-5)
    ape = np.asarray(params["absolute_pos_embed"]).reshape(-1)
    np.testing.assert_allclose(ape[d["ape_index"]], d["ape_value"], rtol=1e-5, atol=1e-6)
    resized = {p: (a, b) for p, a, b in report.resized}
    assert len(resized) == 8 + 1  # every block's table and the position embedding
    assert resized["absolute_pos_embed"] == ((1, 56 * 56, 8), (1, 64 * 64, 8))
    assert resized["layers_1/blocks_0/attn/relative_position_bias_table"] == ((169, 1), (225, 1))
    lines = report.summary().splitlines()  # the log names each resize's method
    assert "  resized absolute_pos_embed: (1, 3136, 8) -> (1, 4096, 8) (bicubic)" in lines
    table = "layers_1/blocks_0/attn/relative_position_bias_table: (169, 1) -> (225, 1)"
    assert f"  resized {table} ({method})" in lines


def test_resize_keeps_the_bias_of_unchanged_offsets(source):
    _, _, timm_state, _ = source
    table = timm_state[RESIZE_KEYS[1]]  # [169, 2]: offsets -6..6 per axis
    src = table.T.reshape(2, 13, 13)
    for window, out_side in ((8, 15), (4, 7), (12, 23)):
        for method in ("bicubic", "geometric"):
            out = finetune.resize_bias_table(table, window, method).T.reshape(2, out_side, out_side)
            c, s = out_side // 2, 6
            np.testing.assert_allclose(out[:, c, c], src[:, s, s], rtol=1e-6)  # zero offset
            if method == "geometric":  # BEiT spacing keeps offsets -1, 0, +1 on both axes
                np.testing.assert_allclose(
                    out[:, c - 1 : c + 2, c - 1 : c + 2],
                    src[:, s - 1 : s + 2, s - 1 : s + 2],
                    rtol=1e-5,
                    atol=1e-6,
                )
    np.testing.assert_array_equal(finetune.resize_bias_table(table, 7), table)  # same window


def test_fewer_stages_skips_the_last_stage_and_renews_the_norm(source):
    d, cfg, timm_state, official_state = source
    target = {**cfg, "img_size": 64, "window_size": 4, "depths": (2, 2, 2), "num_heads": (1, 1, 2)}
    model = swin.create_model({**target, "num_classes": 10})
    with_buffers = {**official_state, **convert.official_buffers(swin.create_model(cfg))}
    for state, downsample in (
        (timm_state, "layers.3.downsample"),
        (official_state, "layers.2.downsample"),
        (with_buffers, "layers.2.downsample"),
    ):
        params, report = finetune.load_pretrained(
            state, model, zeros_like_init(model), bias_resize="geometric"
        )
        assert set(report.new) == {"head/kernel", "head/bias", "norm/scale", "norm/bias"}
        skipped = set(report.skipped)
        assert {k for k in state if k.startswith("layers.3.blocks")} <= skipped
        assert {k for k in state if k.startswith(downsample)} <= skipped
        assert {"norm.weight", "norm.bias"} <= skipped
        assert not any(
            k.startswith(("layers.0.", "layers.1.blocks", "patch_embed")) for k in skipped
        )
        table = params["layers_2"]["blocks_1"]["attn"]["relative_position_bias_table"]
        np.testing.assert_allclose(table, d[f"resize/geometric/4/{RESIZE_KEYS[1]}"], atol=1e-5)
        assert "skipped layers.3.*" in report.summary()
        # Every source tensor accounted for: the buffers of the 6 blocks this model has (their 6
        # relative_position_index and 3 attn_mask) not needed, stage 3's 2 skipped with it.
        counted = len(report.loaded) + len(report.resized) + len(report.skipped) + report.buffers
        assert counted == len(state)
        if state is with_buffers:
            assert report.buffers == 9
            assert {f"layers.3.blocks.{j}.attn.relative_position_index" for j in (0, 1)} <= skipped


def test_an_absolute_position_embedding_the_source_lacks_starts_fresh(source):
    """ape=True from a checkpoint without it (timm's and the official Swin-T have none): the
    official load_pretrained (strict=False) leaves it at its init, and so does this one."""
    d, cfg, timm_state, _ = source
    model = swin.create_model({**cfg, "ape": True, "num_classes": 10})
    init = jax.tree.map(lambda s: np.full(s.shape, 0.5, s.dtype), summary.param_shapes(model))
    params, report = finetune.load_pretrained(timm_state, model, init)
    assert set(report.new) == {"head/kernel", "head/bias", "absolute_pos_embed"}
    np.testing.assert_array_equal(params["absolute_pos_embed"], init["absolute_pos_embed"])


def test_scan_blocks_layout(source, scan_every_stage, tmp_path):
    _, cfg, timm_state, official_state = source
    model = swin.create_model({**cfg, "num_classes": 10})
    scanned_model = model.clone(scan_blocks=True)
    canonical, _ = finetune.load_pretrained(timm_state, model, zeros_like_init(model))
    scanned, _ = finetune.load_pretrained(timm_state, scanned_model, zeros_like_init(scanned_model))
    expected = layout.stack_block_params(canonical, scanned_model)
    assert jax.tree.structure(scanned) == jax.tree.structure(expected)
    jax.tree.map(np.testing.assert_array_equal, scanned, expected)
    # The check a run makes before initialising: a file of either layout fits the scanned model.
    for name, state in (("timm", timm_state), ("official", official_state)):
        np.savez(tmp_path / f"{name}.npz", **state)
        read = finetune.read_pretrained(tmp_path / f"{name}.npz", scanned_model)
        assert sorted(read) == sorted(state), name


def test_unfit_checkpoints_name_the_key(source, tmp_path):
    _, cfg, timm_state, _ = source
    wider = swin.create_model({**cfg, "embed_dim": 16})
    with pytest.raises(CheckpointError, match=r"qkv\.weight of shape \(24, 8\) where the model"):
        finetune.load_pretrained(timm_state, wider, zeros_like_init(wider))
    deeper = swin.create_model({**cfg, "depths": (2, 2, 4, 2)})
    with pytest.raises(CheckpointError, match=r"layers\.2\.blocks\.2\.\S+ missing"):
        finetune.load_pretrained(timm_state, deeper, zeros_like_init(deeper))
    more_heads = swin.create_model({**cfg, "num_heads": (2, 1, 2, 2)})
    with pytest.raises(
        CheckpointError, match=r"layers\.0\.blocks\.0\.attn\.relative_position_bias_table of"
    ):
        finetune.load_pretrained(timm_state, more_heads, zeros_like_init(more_heads))
    other_classes = swin.create_model({**cfg, "num_classes": 7})
    with pytest.raises(
        CheckpointError,
        match=r"^config\.pretrained_head: the head of pretrained state_dict does not fit this "
        r"model's 7 classes \(.*head\.fc\.weight of shape \(5, 64\) where the model needs "
        r"\(7, 64\)\)\. Leave pretrained_head out for a new head, or give a file of a model "
        r"with 7 classes\.$",
    ):
        finetune.load_pretrained(
            timm_state, other_classes, zeros_like_init(other_classes), load_head=True
        )  # asked for, the head must fit (without load_head it is new: test_load_head_when_it_fits)
    model = swin.create_model(cfg)
    one_off = dict(timm_state)
    one_off["norm.bias"] = np.zeros(3, np.float32)  # the one tensor that does not fit
    with pytest.raises(
        CheckpointError, match=r"\): 1 param does not fit: norm\.bias of shape \(3,\)"
    ):
        finetune.load_pretrained(one_off, model, zeros_like_init(model))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        finetune.load_pretrained(tmp_path / "nope.pth", model, zeros_like_init(model))
    with pytest.raises(ValueError, match="bias_resize"):
        finetune.load_pretrained(timm_state, model, zeros_like_init(model), bias_resize="nearest")


def test_a_run_starts_from_a_pretrained_file_and_refuses_another_models(tmp_path, monkeypatch):
    """The run's initial params are the file's but for the head (new, as the official fine-tuning makes
    it, unless config.pretrained_head and it fits); a file of another width is refused before
    anything is initialised or written (the workdir is not created), and a damaged file
    likewise."""
    c = tiny_config(None, epochs=1)
    c.archive, c.dataset = None, "synthetic"
    model = build.model_from_config(c)
    rng = np.random.default_rng(0)
    pretrained = jax.tree.map(
        lambda s: rng.normal(size=s.shape).astype(s.dtype), summary.param_shapes(model)
    )
    np.savez(tmp_path / "fits.npz", **convert.flax_to_torch(pretrained, "timm"))
    c.pretrained = str(tmp_path / "fits.npz")
    read = finetune.read_pretrained(c.pretrained, model)
    state, *_ = train.initial_state(c, runs.run_set(c), model, 4, None, None, read)
    for name in pretrained:
        same = jax.tree.map(np.array_equal, dict(state.params[name]), dict(pretrained[name]))
        assert all(jax.tree.leaves(same)) == (name != "head"), name
    c.pretrained_head = True  # as many classes: the file's head too
    state, *_ = train.initial_state(c, runs.run_set(c), model, 4, None, None, read)
    same = jax.tree.map(np.array_equal, dict(state.params), dict(pretrained))
    assert all(jax.tree.leaves(same))
    c.pretrained_head = False

    # Two runs: each its own head initialisation, the same pretrained body, one report line.
    c.num_runs = 2
    lines = []
    monkeypatch.setattr(train.logging, "info", lambda fmt, *args: lines.append(fmt % args))
    state, *_ = train.initial_state(c, runs.run_set(c), model, 4, None, None, read)
    assert [line.split(" (")[0] for line in lines] == [f"pretrained {c.pretrained}"]
    for name in pretrained:
        for k in range(2):
            same = jax.tree.map(
                lambda x, y, k=k: np.array_equal(x[k], y), state.params[name], pretrained[name]
            )
            assert all(jax.tree.leaves(same)) == (name != "head"), (name, k)
    assert not np.array_equal(*state.params["head"]["kernel"])
    c.num_runs = 1

    narrow = swin.create_model({**model.official_arguments(), "embed_dim": 8})
    np.savez(tmp_path / "narrow.npz", **convert.flax_to_torch(zeros_like_init(narrow), "timm"))
    (tmp_path / "cut.npz").write_bytes((tmp_path / "fits.npz").read_bytes()[:1000])
    said = {}
    for bad, message in (
        ("narrow.npz", "does not fit the model of this config"),
        ("cut.npz", "cannot be read"),
    ):
        c.pretrained = str(tmp_path / bad)
        with pytest.raises(CheckpointError, match=message) as e:
            train.train_and_evaluate(c, str(tmp_path / "run"))
        assert not (tmp_path / "run").exists()
        said[bad] = str(e.value)
    # The file's model, read from its shapes, is named: what config.model should say.
    n = narrow
    assert (
        f"; the file holds embed_dim 8, depths {tuple(n.depths)}, num_heads {tuple(n.num_heads)}, "
        f"patch_size {n.patch_size}, mlp_ratio {float(n.mlp_ratio)}): "
    ) in said["narrow.npz"]


def test_a_fine_tuned_run_keeps_its_load_report(tmp_path, archive, monkeypatch):  # noqa: F811
    """A run started from config.pretrained writes what was loaded and left new to pretrained.txt
    (the console's lines are not kept; the file by its absolute path, as config.json has it); a
    resume leaves it as it is. (`archive`: a fixture.)"""
    monkeypatch.chdir(tmp_path)
    c = tiny_config(archive, epochs=1)
    model = build.model_from_config(c)
    np.savez(tmp_path / "fits.npz", **convert.flax_to_torch(zeros_like_init(model), "timm"))
    c.pretrained = "fits.npz"  # relative, as typed
    train.train_and_evaluate(c, str(tmp_path / "run"))
    report = (tmp_path / "run" / "pretrained.txt").read_text().splitlines()
    tensors = len(jax.tree.leaves(summary.param_shapes(model)))  # the head's two are new
    assert report[0] == (
        f"pretrained {tmp_path / 'fits.npz'} (timm layout): {tensors - 2} tensors loaded as they are, "
        "0 resized, 2 left new, 2 source tensors skipped."  # the file's head
    ), report
    assert report[1:] == [
        "  new (fresh init) head/bias",
        "  new (fresh init) head/kernel",
        "  skipped head.* (2 tensors)",
    ], report
    c.num_epochs = 2
    train.train_and_evaluate(c, str(tmp_path / "run"))
    assert (tmp_path / "run" / "pretrained.txt").read_text().splitlines() == report
    # A start afresh in the folder (its checkpoints and summary gone), from scratch: the report goes.
    shutil.rmtree(tmp_path / "run" / "checkpoints")
    (tmp_path / "run" / "summary.json").unlink()  # with it, the folder is refused as a run's
    c.pretrained, c.num_epochs = None, 1
    train.train_and_evaluate(c, str(tmp_path / "run"))
    assert not (tmp_path / "run" / "pretrained.txt").exists()


@pytest.mark.parametrize(
    "name, install",
    [
        ("swin_tiny_patch4_window7_224.pth", "pip install torch"),
        ("model.safetensors", "pip install -e '.[pretrained]'"),
    ],
)
def test_a_missing_reader_package_is_a_user_error(
    source, tmp_path, monkeypatch, capsys, name, install
):
    for module in ("torch", "safetensors", "safetensors.numpy"):
        monkeypatch.setitem(sys.modules, module, None)  # neither is installed
    _, cfg, timm_state, _ = source
    model = swin.create_model(cfg)
    path = tmp_path / name
    path.write_bytes(b"")
    with pytest.raises(SystemExit) as exit_info, cli.friendly_errors():
        finetune.load_pretrained(path, model, zeros_like_init(model))
    assert exit_info.value.code == cli.EXIT_USER_ERROR
    err = " ".join(capsys.readouterr().err.split())
    assert err.startswith("Error: reading ") and f"{name} needs" in err and install in err
    np.savez(tmp_path / "state.npz", **timm_state)  # an .npz needs neither
    finetune.load_pretrained(tmp_path / "state.npz", model, zeros_like_init(model))


# --------------------------------------------------------------------------------------------------
# Layer-wise lr decay (optim.py)
# --------------------------------------------------------------------------------------------------

# Official Swin fine-tuning (SimMIM get_swin_layer) for depths (2, 2): num_layers = 4 + 2 = 6,
# scale = decay ** (num_layers - 1 - layer_id). Written out by hand from that function.
HAND_LAYER_IDS = {
    "patch_embed": 0,
    "layers_0/blocks_0": 1,
    "layers_0/blocks_1": 2,
    "layers_0/downsample": 2,  # 'layers.0.downsample.reduction' -> sum(depths[:1])
    "layers_1/blocks_0": 3,
    "layers_1/blocks_1": 4,
    "norm": 5,
    "head": 5,
}


def _tiny_decay_model():
    # Grid 8 then 4, window 4: stage 0 shifts (pairs when scanned), stage 1 does not (plain scan).
    cfg = dict(
        img_size=32,
        patch_size=4,
        embed_dim=8,
        depths=(2, 2),
        num_heads=(1, 2),
        window_size=4,
        num_classes=3,
    )
    return swin.create_model(cfg)


def _random_tree(shapes, seed):
    leaves, treedef = jax.tree.flatten(shapes)
    rng = np.random.default_rng(seed)
    return jax.tree.unflatten(
        treedef, [jnp.asarray(rng.normal(size=s.shape), jnp.float32) for s in leaves]
    )


def _hand_scale(path, decay):
    name = "/".join(path[:2]) if path[0].startswith("layers_") else path[0]
    return decay ** (5 - HAND_LAYER_IDS[name])


def _updates(tx, params, grads, steps=2):
    """The updates of the last of `steps` optimiser steps with fixed gradients (one compile)."""

    @jax.jit
    def run(params, grads):
        state = tx.init(params)
        for _ in range(steps):
            updates, state = tx.update(grads, state, params)
            params = optax.apply_updates(params, updates)
        return updates

    return run(params, grads)


def test_layer_decay_scales_each_update_by_the_official_layer_ids(scan_every_stage):
    model = _tiny_decay_model()
    params = _random_tree(summary.param_shapes(model), 0)
    grads = _random_tree(summary.param_shapes(model), 1)
    common = dict(learning_rate_fn=1e-2, weight_decay=0.05, weight_decay_exempt=True)
    # One step: the decayed run's params then differ, so later steps are no longer comparable.
    plain = _updates(optim.create_optimizer(**common), params, grads, steps=1)
    decayed = _updates(
        optim.create_optimizer(**common, layer_decay=0.5, depths=model.depths), params, grads, 1
    )
    flat_plain = dict(jax.tree_util.tree_flatten_with_path(plain)[0])
    for path, update in jax.tree_util.tree_flatten_with_path(decayed)[0]:
        names = tuple(k.key for k in path)
        np.testing.assert_allclose(
            update, flat_plain[path] * _hand_scale(names, 0.5), rtol=1e-6, err_msg=str(names)
        )

    # The scanned layout (pairs in stage 0, a plain scan in stage 1) gets the same per-block scales.
    scanned = model.clone(scan_blocks=True)
    sp, sg = layout.stack_block_params(params, scanned), layout.stack_block_params(grads, scanned)
    tx = optim.create_optimizer(**common, layer_decay=0.5, depths=model.depths)
    expected = layout.stack_block_params(decayed, scanned)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), _updates(tx, sp, sg, 1), expected
    )


def test_layer_decay_one_is_the_existing_optimiser():
    model = _tiny_decay_model()
    params = _random_tree(summary.param_shapes(model), 2)
    grads = _random_tree(summary.param_shapes(model), 3)
    common = dict(learning_rate_fn=1e-3, weight_decay=0.05, grad_clip_norm=1.0)
    base = optim.create_optimizer(**common)
    same = optim.create_optimizer(**common, layer_decay=1.0, depths=model.depths)
    assert jax.tree.structure(base.init(params)) == jax.tree.structure(same.init(params))
    jax.tree.map(
        np.testing.assert_array_equal, _updates(base, params, grads), _updates(same, params, grads)
    )
    # optim trusts its arguments: the rule on layer_decay is config.validate's (tested below).


# --------------------------------------------------------------------------------------------------
# configs/finetune.py
# --------------------------------------------------------------------------------------------------


def _finetune_config(variant=""):
    import importlib.util  # noqa: PLC0415

    path = pathlib.Path(__file__).resolve().parents[1] / "configs" / "finetune.py"
    spec = importlib.util.spec_from_file_location("finetune_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(variant)


@pytest.mark.parametrize("variant, windows", [("", (7, 7, 7, 7)), ("64", (4, 4, 4, 2))])
def test_finetune_config_validates_with_a_checkpoint(tmp_path, variant, windows):
    c = _finetune_config(variant)
    ckpt = tmp_path / "swin_tiny_patch4_window7_224.pth"
    ckpt.write_bytes(b"")
    c.pretrained = str(ckpt)
    validate(c, num_devices=2)
    assert (c.model.embed_dim, tuple(c.model.depths), tuple(c.model.num_heads)) == (
        96,
        (2, 2, 6, 2),
        (3, 6, 12, 24),
    )  # Swin-T, so the official checkpoint loads
    specs = plan.stage_specs(
        c.model.img_size, 4, 96, c.model.depths, c.model.num_heads, c.model.window_size, 0.0
    )
    assert tuple(s.window_size for s in specs) == windows
    assert c.layer_decay < 1 and c.weight_decay_exempt and c.num_epochs <= 30

    # The file is checked where a starting run reads it: tools and resumed runs never read it.
    model = build.model_from_config(c)
    c.pretrained = str(tmp_path / "missing.pth")
    validate(c, num_devices=2)
    with pytest.raises(ConfigError, match=r"config\.pretrained: .*missing\.pth does not exist"):
        finetune.read_pretrained(c.pretrained, model)
    (tmp_path / "folder.pth").mkdir()
    c.pretrained = str(tmp_path / "folder.pth")
    validate(c, num_devices=2)
    with pytest.raises(ConfigError, match=r"config\.pretrained: .*folder\.pth is a folder"):
        finetune.read_pretrained(c.pretrained, model)
    c.pretrained = str(ckpt)
    for layer_decay in (1.5, 0.0):
        c.layer_decay = layer_decay
        with pytest.raises(ConfigError, match=r"config\.layer_decay"):
            validate(c, num_devices=2)
