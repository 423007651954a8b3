"""The Flax Swin Transformer against the official model's facts and timm's buffers.

References: the recipe's per-part parameter counts (seed-recipe.md, the official model), timm's
relative_position_index / attn_mask buffers and drop-path rates stored in tests/fixtures/swin_*.npz
(scripts/fixtures/make_model_fixtures.py), and PyTorch's init formulas. Logit parity with timm is in
test_convert.py.
"""

import json
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from swin_flax import steps
from swin_flax.models import convert, layout, ops, plan, summary, swin

FIXTURES = pathlib.Path(__file__).parent / "fixtures"

RECIPE = dict(
    img_size=32,
    num_classes=10,
    embed_dim=96,
    depths=(2, 2, 18),
    num_heads=(3, 6, 12),
    window_size=8,
)
# Stage 0: 8x8 grid, window 4 -> shifts, depth 3 -> one (regular, shifted) pair plus a tail block.
# Stage 1: 4x4 grid, window clamped to 4, no shift -> all blocks scanned alike.
# Stage 2: 2 blocks, under swin.SCAN_MIN_DEPTH -> never scanned.
ODD = dict(
    img_size=16,
    patch_size=2,
    in_chans=3,
    num_classes=5,
    embed_dim=16,
    depths=(3, 3, 2),
    num_heads=(1, 2, 2),
    window_size=4,
    drop_path_rate=0.5,
)


def load_fixture(name):
    d = np.load(FIXTURES / f"{name}.npz")
    cfg = json.loads(str(d["config"]))
    state = {k[len("state/") :]: d[k] for k in d.files if k.startswith("state/")}
    buffers = {k[len("buffer/") :]: d[k] for k in d.files if k.startswith("buffer/")}
    return d, cfg, state, buffers


def random_params(model, seed=0):
    """Params of the right shapes without running init (no compile): N(0, 0.1), LN scales ~1."""
    rng = np.random.default_rng(seed)

    def fill(path, s):
        v = rng.normal(0.0, 0.1, s.shape).astype(np.float32)
        return v + 1.0 if path[-1].key == "scale" else v

    return jax.tree_util.tree_map_with_path(fill, summary.param_shapes(model))


# ------------------------------------------------------------------------------------------------
# Parameter counts (jax.eval_shape, nothing compiled)
# ------------------------------------------------------------------------------------------------


def test_recipe_parameter_count_and_parts():
    shapes = summary.param_shapes(swin.create_model(RECIPE))
    count = summary.count_params
    assert count(shapes) == 33_438_100
    assert count(shapes["patch_embed"]["proj"]) == 4_704
    assert count(shapes["patch_embed"]["norm"]) == 192
    blocks = [
        sum(count(v) for k, v in shapes[f"layers_{i}"].items() if k.startswith("blocks_"))
        for i in range(3)
    ]
    assert blocks == [225_030, 890_316, 31_942_296]
    assert count(shapes["layers_0"]["downsample"]) == 74_496
    assert count(shapes["layers_1"]["downsample"]) == 296_448
    assert "downsample" not in shapes["layers_2"]  # official layout: merging ends stages 0 and 1
    assert count(shapes["norm"]) == 768
    assert count(shapes["head"]) == 3_850
    # The bias tables torchinfo once left out: 2x15^2x3 + 2x7^2x6 + 18x3^2x12 = 3,882.
    tables = sum(
        math.prod(leaf.shape)
        for path, leaf in jax.tree_util.tree_flatten_with_path(shapes)[0]
        if path[-1].key == "relative_position_bias_table"
    )
    assert tables == 3_882


def test_scanned_layout_has_the_same_parameters_stacked():
    model = swin.create_model(RECIPE, scan_blocks=True)
    shapes = summary.param_shapes(model)
    assert summary.count_params(shapes) == 33_438_100
    # No stage of the recipe shifts (window clamped to each grid): stage 3's 18 blocks stacked;
    # the two-block stages stay unscanned (swin.SCAN_MIN_DEPTH).
    assert shapes["layers_2"]["blocks"]["attn"]["qkv"]["kernel"].shape == (18, 384, 1152)
    assert set(shapes["layers_0"]) == {"blocks_0", "blocks_1", "downsample"}


def test_summary_table_lists_shapes_and_total():
    table = summary.summary_table(swin.create_model(RECIPE), depth=2)
    assert "Total params: 33,438,100" in table
    lines = table.splitlines()
    row = lambda name: next(line for line in lines if line.strip().startswith(name))
    assert "[1, 64, 96]" in row("patch_embed") and "4,896" in row("patch_embed")
    assert "[1, 16, 192]" in row("layers_0") and "[1, 4, 384]" in row("layers_1")
    assert "74,496" in row("downsample") and "3,850" in row("head") and "[1, 10]" in row("head")


# ------------------------------------------------------------------------------------------------
# Argument checks
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "override, name",
    [
        (dict(window_size=3), "window_size"),  # 8x8 grid, window 3
        (dict(img_size=96), "window_size"),  # grids 24 (8 divides), then 12 (8 does not)
        (dict(patch_size=3), "patch_size"),  # 32 % 3
        (dict(embed_dim=100), "num_heads"),  # 200 % 6 at stage 1
        (dict(num_heads=(3, 6)), "num_heads"),  # lengths differ
        (dict(depths=(2, 0, 2)), "depths"),
        (dict(embed_dim=0), "embed_dim"),
        (dict(window_size=0), "window_size"),
        (dict(img_size=24, depths=(2, 2, 2, 2), num_heads=(3, 6, 12, 24)), "odd"),  # 6->3->1.5
        (dict(drop_path_rate=1.5), "drop_path_rate"),
        (dict(mlp_ratio=-1.0), "mlp_ratio"),
        (dict(mlp_ratio=float("inf")), "mlp_ratio"),  # int(dim * inf) would overflow
        (dict(mlp_ratio=1e308), "mlp_ratio"),  # finite, but dim * ratio is not
        (dict(drop_rate=10**400), "drop_rate"),  # an int too large for a float
        (dict(qk_scale=float("nan")), "qk_scale"),
        (dict(num_classes=-1), "num_classes"),
        (dict(qk_scale=0.0), "qk_scale"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(override, name):
    args = {**RECIPE, **override}
    with pytest.raises(ValueError, match=name):
        plan.check_arguments(**args)
    with pytest.raises(ValueError, match=name):
        swin.create_model(args)
    with pytest.raises(ValueError, match=name):
        swin.SwinTransformer(**args)  # at construction, before any trace or compile


def test_recipe_arguments_pass_and_unknown_names_are_refused():
    plan.check_arguments(**RECIPE)
    with pytest.raises(ValueError, match="windowsize"):
        swin.create_model({**RECIPE, "windowsize": 8})


def test_official_defaults():
    m = swin.SwinTransformer()
    assert (m.img_size, m.patch_size, m.in_chans, m.num_classes, m.embed_dim) == (
        224,
        4,
        3,
        1000,
        96,
    )
    assert (m.depths, m.num_heads, m.window_size, m.mlp_ratio) == (
        (2, 2, 6, 2),
        (3, 6, 12, 24),
        7,
        4.0,
    )
    assert (m.qkv_bias, m.qk_scale, m.drop_rate, m.attn_drop_rate) == (True, None, 0.0, 0.0)
    assert (m.drop_path_rate, m.ape, m.patch_norm) == (0.1, False, True)
    # Swin-T at 224: 56, 28, 14, 7 grids; window 7 everywhere, shifted except the last stage.
    specs = m.stage_specs()
    assert [s.input_resolution for s in specs] == [(56, 56), (28, 28), (14, 14), (7, 7)]
    assert [(s.window_size, s.shift_size) for s in specs] == [(7, 3), (7, 3), (7, 3), (7, 0)]


# ------------------------------------------------------------------------------------------------
# Window helpers against the rule and timm's buffers
# ------------------------------------------------------------------------------------------------


def test_window_rule():
    assert plan.window_rule((8, 8), 8, 4) == (8, 0)  # grid == window: whole grid, no shift
    assert plan.window_rule((4, 4), 8, 4) == (4, 0)  # grid < window: clamp
    assert plan.window_rule((16, 16), 4, 2) == (4, 2)
    assert plan.window_rule((16, 16), 4, 0) == (4, 0)
    recipe = [(s.window_size, s.shift_size) for s in swin.create_model(RECIPE).stage_specs()]
    assert recipe == [(8, 0), (4, 0), (2, 0)]  # seed-recipe.md: every stage one window, no shift


@pytest.mark.parametrize("name", ["swin_shifted", "swin_clamped"])
def test_index_and_mask_equal_timm_buffers(name):
    _, cfg, _, buffers = load_fixture(name)
    specs = swin.create_model(cfg).stage_specs()
    masks = 0
    for i, spec in enumerate(specs):
        for j in range(spec.depth):
            prefix = f"layers.{i}.blocks.{j}"
            index = buffers[f"{prefix}.attn.relative_position_index"]
            np.testing.assert_array_equal(ops.relative_position_index(spec.window_size), index)
            window, shift = plan.window_rule(
                spec.input_resolution, cfg["window_size"], j % 2 * (cfg["window_size"] // 2)
            )
            assert window == spec.window_size
            if f"{prefix}.attn_mask" in buffers:
                masks += 1
                mask = ops.shifted_window_mask(spec.input_resolution, window, shift)
                np.testing.assert_array_equal(mask, buffers[f"{prefix}.attn_mask"])
            else:
                assert shift == 0
    assert masks == (2 if name == "swin_shifted" else 0)


def test_window_partition_and_reverse():
    x = np.arange(2 * 8 * 12 * 3).reshape(2, 8, 12, 3)
    w = ops.window_partition(x, 4)
    assert w.shape == (2 * 2 * 3, 4, 4, 3)
    np.testing.assert_array_equal(w[1], x[0, 0:4, 4:8])  # row-major windows per image
    np.testing.assert_array_equal(w[6 + 3], x[1, 4:8, 0:4])
    np.testing.assert_array_equal(ops.window_reverse(w, 4, 8, 12), x)


def test_relative_position_index_formula():
    w = 3
    index = ops.relative_position_index(w)
    for i in range(w * w):
        for j in range(w * w):
            dh, dw = i // w - j // w, i % w - j % w
            assert index[i, j] == (dh + w - 1) * (2 * w - 1) + (dw + w - 1)


# ------------------------------------------------------------------------------------------------
# Stochastic depth
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["swin_shifted", "swin_clamped"])
def test_drop_path_rates_equal_timm(name):
    d, cfg, _, _ = load_fixture(name)
    rates = np.concatenate([s.drop_path for s in swin.create_model(cfg).stage_specs()])
    np.testing.assert_allclose(rates, d["drop_path_rates"], atol=1e-7)


def test_drop_path_drops_whole_samples_and_rescales_the_rest():
    x = jnp.ones((4000, 3, 2))
    y = np.asarray(ops.drop_path(x, 0.25, jax.random.key(0)))
    per_sample = y.reshape(4000, -1)
    kept = per_sample[:, 0] != 0
    assert np.all(per_sample == per_sample[:, :1])  # one decision per sample
    np.testing.assert_allclose(per_sample[kept], 1 / 0.75, rtol=1e-6)  # timm scale_by_keep
    assert abs(1 - kept.mean() - 0.25) < 0.03  # 4 sigma
    assert not np.array_equal(y, np.asarray(ops.drop_path(x, 0.25, jax.random.key(1))))


def test_stochastic_depth_varies_with_key_only_in_training(odd):
    # Scanned + remat: per-block rates travel as scanned inputs, `deterministic` stays static.
    apply = odd["scanned_apply"]
    train_a, train_b = apply(jax.random.key(0), False), apply(jax.random.key(1), False)
    assert np.abs(np.asarray(train_a) - np.asarray(train_b)).max() > 1e-3
    np.testing.assert_array_equal(apply(jax.random.key(0), False), train_a)  # same key, same drops
    eval_a, eval_b = apply(jax.random.key(0), True), apply(jax.random.key(1), True)
    np.testing.assert_array_equal(eval_a, eval_b)
    np.testing.assert_allclose(eval_a, odd["logits_plain"], rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------------
# Initialisation (official: trunc_normal(.02) Linear and tables, zero biases, LN 1/0, conv default)
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["model.init", "steps.create_train_state"])
def test_initialisation_statistics(path):
    """Both ways to initialise (create_train_state draws with another threefry layout)."""
    model = swin.create_model(
        dict(
            img_size=8,
            patch_size=2,
            num_classes=10,
            embed_dim=128,
            depths=(1,),
            num_heads=(4,),
            window_size=4,
        )
    )
    if path == "model.init":
        params = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))["params"]
    else:
        state = steps.create_train_state(jax.random.key(0), model, optax.adamw(1e-3), (8, 8, 3))
        params = state.params
        mu = state.opt_state[0].mu
        assert jax.tree.all(jax.tree.map(lambda m: not np.any(np.asarray(m)), mu))
    block = params["layers_0"]["blocks_0"]
    fc1 = np.asarray(block["mlp"]["fc1"]["kernel"])  # 128 x 512
    assert abs(fc1.std() - 0.02) < 0.0005 and abs(fc1.mean()) < 0.0005
    # Truncation at +-2 (absolute) is invisible at std .02: the tails are a normal's.
    assert 0.002 < np.mean(np.abs(fc1) > 0.05) < 0.02  # P(|z| > 2.5 sigma) = 0.0124
    table = np.asarray(block["attn"]["relative_position_bias_table"])
    assert table.shape == (49, 4) and abs(table.std() - 0.02) < 0.005
    for name in ("qkv", "proj"):
        np.testing.assert_array_equal(block["attn"][name]["bias"], 0.0)
    for name in ("fc1", "fc2"):
        np.testing.assert_array_equal(block["mlp"][name]["bias"], 0.0)
    np.testing.assert_array_equal(params["head"]["bias"], 0.0)
    for ln in (block["norm1"], block["norm2"], params["norm"], params["patch_embed"]["norm"]):
        np.testing.assert_array_equal(ln["scale"], 1.0)
        np.testing.assert_array_equal(ln["bias"], 0.0)
    # Conv2d keeps PyTorch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = 3 * 2 * 2.
    bound = 1 / math.sqrt(12)
    for leaf in (params["patch_embed"]["proj"]["kernel"], params["patch_embed"]["proj"]["bias"]):
        leaf = np.asarray(leaf)
        assert np.abs(leaf).max() <= bound and np.abs(leaf).max() > 0.9 * bound
    kernel = np.asarray(params["patch_embed"]["proj"]["kernel"])
    assert abs(kernel.std() - bound / math.sqrt(3)) < 0.01  # a uniform's std


# ------------------------------------------------------------------------------------------------
# bfloat16 compute
# ------------------------------------------------------------------------------------------------


def test_bfloat16_computes_in_bf16_with_float32_params_and_close_logits():
    d, cfg, state, _ = load_fixture("swin_shifted")
    model = swin.create_model(cfg, dtype="bfloat16")
    assert all(s.dtype == jnp.float32 for s in jax.tree.leaves(summary.param_shapes(model)))
    params = convert.torch_to_flax(state, model)
    jaxpr = jax.make_jaxpr(lambda p, x: model.apply({"params": p}, x))(params, d["images"])
    matmuls = [
        e for e in jaxpr.jaxpr.eqns if e.primitive.name in ("dot_general", "conv_general_dilated")
    ]
    assert matmuls and all(v.aval.dtype == jnp.bfloat16 for e in matmuls for v in e.invars)
    logits = jax.jit(model.apply)({"params": params}, d["images"])
    assert logits.dtype == jnp.float32
    # Float32 logits span about +-0.3 here; bf16 carries 8 bits of mantissa.
    np.testing.assert_allclose(logits, d["logits"], atol=1e-2)


# ------------------------------------------------------------------------------------------------
# Scanned blocks and remat: same numbers as the plain model
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def odd():
    """ODD plain and scanned + remat, with the same (random) params; the plain logits."""
    plain = swin.create_model(ODD)
    scanned = swin.create_model(ODD, scan_blocks=True, remat="full")
    params = random_params(plain)
    stacked = layout.stack_block_params(params, plain)
    images = jax.random.normal(jax.random.key(0), (2, 16, 16, 3))
    logits_plain = jax.jit(plain.apply)({"params": params}, images)
    scanned_apply = jax.jit(
        lambda key, det: scanned.apply({"params": stacked}, images, det, rngs={"dropout": key}),
        static_argnums=1,
    )
    return dict(
        plain=plain,
        scanned=scanned,
        params=params,
        stacked=stacked,
        logits_plain=logits_plain,
        scanned_apply=scanned_apply,
    )


def test_scanned_blocks_match_the_plain_model(odd):
    params, stacked = odd["params"], odd["stacked"]
    assert set(stacked["layers_0"]) == {"blocks", "blocks_tail", "downsample"}
    assert set(stacked["layers_0"]["blocks"]) == {"regular", "shifted"}
    assert stacked["layers_1"]["blocks"]["norm1"]["scale"].shape == (3, 32)
    assert set(stacked["layers_2"]) == {"blocks_0", "blocks_1"}
    assert jax.tree.structure(stacked) == jax.tree.structure(summary.param_shapes(odd["scanned"]))
    back = layout.unstack_block_params(stacked, odd["plain"])
    assert jax.tree.structure(back) == jax.tree.structure(params)
    jax.tree.map(np.testing.assert_array_equal, back, params)
    # Same arithmetic, different XLA fusion: equal up to float32 rounding.
    logits_scan = odd["scanned_apply"](jax.random.key(0), True)
    np.testing.assert_allclose(logits_scan, odd["logits_plain"], rtol=1e-5, atol=1e-6)


def test_remat_gives_the_plain_models_gradients():
    """What a block keeps for the backward pass changes the memory, not the gradients: those of a
    scanned stage (a regular + shifted pair under nn.scan, then the tail block) under each remat
    policy equal the plain model's, up to float32 rounding."""
    plain = swin.create_model(dict(ODD, depths=(3,), num_heads=(1,)))
    params = random_params(plain)
    images = jax.random.normal(jax.random.key(1), (2, 16, 16, 3))

    def grads(model, params):
        loss = lambda p: jnp.sum(model.apply({"params": p}, images, True) ** 2)  # noqa: E731
        return jax.grad(loss)(params)

    stacked = layout.stack_block_params(params, plain)
    policies = ("dots", "full")

    @jax.jit  # one compile for the three
    def all_grads(params, stacked):
        scanned = [grads(plain.clone(scan_blocks=True, remat=r), stacked) for r in policies]
        return grads(plain, params), scanned

    expected, scanned = all_grads(params, stacked)
    scale = max(float(jnp.abs(g).max()) for g in jax.tree.leaves(expected))
    for got in scanned:
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * scale),
            layout.unstack_block_params(got, plain),
            expected,
        )


def test_remat_policies_keep_what_they_name():
    """The activations one block keeps for its backward pass (the residuals in its vjp, params
    aside), by policy: "full" only its input; "dots" its input and the outputs of the dense layers
    the backward pass reads (qkv, proj, fc1; fc2's output only feeds the residual sum); "none"
    more than that, the attention probabilities among them."""
    dim, side, heads, batch, window = 32, 4, 2, 3, 2
    num_windows = (side // window) ** 2
    x = jax.random.normal(jax.random.key(0), (batch, side * side, dim))
    kw = dict(dim=dim, input_resolution=(side, side), num_heads=heads, window_size=window)
    params = swin.SwinBlock(**kw).init(jax.random.key(1), x)

    def kept(remat):
        block = swin.block_class(remat, scanned=False)(**kw)
        vjp = jax.jit(lambda x: jax.vjp(lambda x: block.apply(params, x, True), x)[1])(x)
        leaves = jax.tree.leaves(vjp)
        return sorted(
            r.shape for r in leaves if r.ndim and r.shape[0] in (batch, batch * num_windows)
        )

    tokens, windowed = (batch, side * side), (batch * num_windows, window * window)
    assert kept("full") == [(*tokens, dim)]
    assert kept("dots") == sorted(
        [(*tokens, dim), (*windowed, 3 * dim), (*windowed, dim), (*tokens, 4 * dim)]
    )
    probabilities = (batch * num_windows, heads, window * window, window * window)
    assert probabilities in kept("none")
    assert sum(map(math.prod, kept("none"))) > sum(map(math.prod, kept("dots")))


@pytest.mark.parametrize("remat", [True, False, "dot"])
def test_remat_outside_its_names_is_refused_by_the_constructor(remat):
    """A bool (what `remat` was before it named a policy) or a typo fails when the model is built,
    not later inside a trace."""
    with pytest.raises(ValueError, match="is not one of"):
        swin.SwinTransformer(**dict(ODD), remat=remat)
    with pytest.raises(ValueError, match="is not one of"):
        swin.create_model(ODD).clone(remat=remat)
