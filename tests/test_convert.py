"""PyTorch <-> Flax weight conversion, against timm's SwinTransformer.

tests/fixtures/swin_{shifted,clamped}.npz (scripts/fixtures/make_model_fixtures.py, timm) hold a timm
state_dict, an input batch and timm's logits and pooled features. The official layout's names are
written out here from the official code's module tree.
"""

import json
import pathlib
import sys

import jax
import numpy as np
import pytest

from swin_flax import errors
from swin_flax.models import convert, layout, summary, swin

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
NAMES = ["swin_shifted", "swin_clamped"]


def load_fixture(name):
    d = np.load(FIXTURES / f"{name}.npz")
    cfg = json.loads(str(d["config"]))
    state = {k[len("state/") :]: d[k] for k in d.files if k.startswith("state/")}
    buffers = {k[len("buffer/") :]: d[k] for k in d.files if k.startswith("buffer/")}
    return d, cfg, state, buffers


def assert_trees_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    jax.tree.map(np.testing.assert_array_equal, a, b)


def official_keys(depths):
    """The official SwinTransformer's parameter names (models/swin_transformer.py)."""
    keys = ["patch_embed.proj.weight", "patch_embed.proj.bias"]
    keys += ["patch_embed.norm.weight", "patch_embed.norm.bias"]
    for i, depth in enumerate(depths):
        for j in range(depth):
            b = f"layers.{i}.blocks.{j}"
            keys += [f"{b}.norm1.weight", f"{b}.norm1.bias", f"{b}.norm2.weight", f"{b}.norm2.bias"]
            keys += [f"{b}.attn.relative_position_bias_table"]
            for lin in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"):
                keys += [f"{b}.{lin}.weight", f"{b}.{lin}.bias"]
        if i < len(depths) - 1:
            d = f"layers.{i}.downsample"
            keys += [f"{d}.norm.weight", f"{d}.norm.bias", f"{d}.reduction.weight"]
    return set(keys + ["norm.weight", "norm.bias", "head.weight", "head.bias"])


@pytest.mark.parametrize("name", NAMES)
def test_converted_timm_weights_reproduce_logits_and_features(name):
    d, cfg, state, _ = load_fixture(name)
    model = swin.create_model(cfg)
    params = convert.torch_to_flax(state, model)  # layout detected: timm
    both = jax.jit(
        lambda p, x: model.apply(
            {"params": p}, x, method=lambda m, x: (m(x), m.forward_features(x))
        )
    )
    logits, features = both(params, d["images"])
    assert np.abs(np.asarray(logits) - d["logits"]).max() < 1e-4
    assert np.abs(np.asarray(features) - d["features"]).max() < 1e-4


@pytest.mark.parametrize("name", NAMES)
def test_timm_layout_round_trip_is_exact(name):
    _, cfg, state, _ = load_fixture(name)
    params = convert.torch_to_flax(state, cfg, layout="timm")
    back = convert.flax_to_torch(params, "timm")
    assert set(back) == set(state)
    for key, value in state.items():
        assert back[key].dtype == value.dtype
        np.testing.assert_array_equal(back[key], value, err_msg=key)
    assert_trees_equal(convert.torch_to_flax(back, cfg), params)


@pytest.mark.parametrize("name", NAMES)
def test_official_layout_names_and_round_trip(name):
    _, cfg, state, _ = load_fixture(name)
    params = convert.torch_to_flax(state, cfg)
    official = convert.flax_to_torch(params, "official")
    assert set(official) == official_keys(cfg["depths"])
    # The official layout moves PatchMerging to the end of the previous stage and names the head.
    np.testing.assert_array_equal(
        official["layers.0.downsample.reduction.weight"],
        state["layers.1.downsample.reduction.weight"],
    )
    np.testing.assert_array_equal(official["head.weight"], state["head.fc.weight"])
    assert convert.detect_layout(official) == "official"
    assert_trees_equal(convert.torch_to_flax(official, cfg), params)
    assert_trees_equal(convert.torch_to_flax(official, cfg, layout="official"), params)


def test_official_buffers_equal_timm_buffers():
    _, cfg, state, buffers = load_fixture("swin_shifted")
    model = swin.create_model(cfg)
    official = convert.flax_to_torch(convert.torch_to_flax(state, model), "official", model=model)
    written = {
        k: v for k, v in official.items() if k.endswith(("relative_position_index", "attn_mask"))
    }
    assert set(written) == set(buffers)  # index for every block, mask for the shifted ones
    for key, value in buffers.items():
        assert written[key].dtype == value.dtype
        np.testing.assert_array_equal(written[key], value, err_msg=key)
    # Loading skips buffers, whichever layout wrote them.
    assert_trees_equal(convert.torch_to_flax(official, model), convert.torch_to_flax(state, model))


def torch_to_flax_scanned(state_dict, model):
    """`convert.torch_to_flax`, then stacked for a scan_blocks=True `model`."""
    return layout.stack_block_params(convert.torch_to_flax(state_dict, model), model)


def flax_to_torch_scanned(params, model, layout_name):
    """Params of a scan_blocks=True `model` -> a state_dict (as scripts/export.py converts)."""
    return convert.flax_to_torch(layout.unstack_block_params(params, model), layout_name, model)


def test_scanned_variant_round_trip(scan_every_stage):
    _, cfg, state, _ = load_fixture("swin_shifted")
    model = swin.create_model(cfg, scan_blocks=True)
    stacked = torch_to_flax_scanned(state, model)
    assert stacked["layers_0"]["blocks"]["regular"]["attn"]["qkv"]["kernel"].shape == (1, 32, 96)
    assert jax.tree.structure(stacked) == jax.tree.structure(summary.param_shapes(model))
    back = flax_to_torch_scanned(stacked, model, "timm")
    assert set(back) == set(state)
    for key, value in state.items():
        np.testing.assert_array_equal(back[key], value, err_msg=key)
    with pytest.raises(ValueError, match="unstack_block_params"):
        convert.flax_to_torch(stacked, "official")


def test_missing_unexpected_and_misshaped_keys_are_named():
    _, cfg, state, _ = load_fixture("swin_shifted")
    missing = dict(state)
    del missing["layers.1.blocks.0.mlp.fc2.bias"]
    with pytest.raises(ValueError, match=r"missing keys: layers\.1\.blocks\.0\.mlp\.fc2\.bias"):
        convert.torch_to_flax(missing, cfg)

    shaped = dict(state)
    shaped["layers.0.blocks.1.attn.qkv.weight"] = np.zeros((48, 32), np.float32)
    with pytest.raises(
        ValueError,
        match=r"layers\.0\.blocks\.1\.attn\.qkv\.weight: "
        r"expected shape \(96, 32\), found \(48, 32\)",
    ):
        convert.torch_to_flax(shaped, cfg)

    extra = {**state, "layers.1.blocks.2.norm1.weight": np.ones(64, np.float32)}
    with pytest.raises(ValueError, match=r"unexpected keys: layers\.1\.blocks\.2\.norm1\.weight"):
        convert.torch_to_flax(extra, cfg)

    with pytest.raises(ValueError, match="layout"):
        convert.torch_to_flax(state, cfg, layout="tf")


def test_layout_detection():
    _, cfg, state, _ = load_fixture("swin_clamped")
    assert convert.detect_layout(state) == "timm"
    params = convert.torch_to_flax(state, cfg)
    assert convert.detect_layout(convert.flax_to_torch(params, "official")) == "official"
    # timm before 0.9 named the classifier `head.*`; it still loads as the timm layout.
    old = {k.replace("head.fc.", "head."): v for k, v in state.items()}
    assert_trees_equal(convert.torch_to_flax(old, cfg, layout="timm"), params)


def test_torch_key_mapping():
    key = convert.torch_key
    assert key(("layers_2", "blocks_17", "attn", "qkv", "kernel"), "official") == (
        "layers.2.blocks.17.attn.qkv.weight"
    )
    assert (
        key(("layers_0", "downsample", "norm", "scale"), "official")
        == "layers.0.downsample.norm.weight"
    )
    assert (
        key(("layers_0", "downsample", "norm", "scale"), "timm")
        == "layers.1.downsample.norm.weight"
    )
    assert key(("layers_0", "blocks_1", "attn", "relative_position_bias_table"), "timm") == (
        "layers.0.blocks.1.attn.relative_position_bias_table"
    )
    assert key(("head", "bias"), "timm") == "head.fc.bias"
    assert key(("patch_embed", "proj", "kernel"), "official") == "patch_embed.proj.weight"


def test_load_torch_file_says_what_to_install(monkeypatch, tmp_path):
    for name in ("torch", "safetensors", "safetensors.numpy"):
        monkeypatch.setitem(sys.modules, name, None)  # `import torch` fails
    with pytest.raises(errors.CheckpointError, match="pip install torch"):
        convert.load_torch_file(tmp_path / "swin_tiny_patch4_window7_224.pth")
    with pytest.raises(errors.CheckpointError, match=r"pip install -e '\.\[pretrained\]'"):
        convert.load_torch_file(tmp_path / "model.safetensors")
    assert convert.require_package(tmp_path / "model.npz") is None
    with pytest.raises(ValueError, match=r"\.h5"):
        convert.load_torch_file(tmp_path / "model.h5")
