"""Exporting Flax params as PyTorch state_dicts (official and timm layouts) and scripts/export.py.

tests/fixtures/export_keys.json (scripts/fixtures/make_export_fixtures.py) holds the state_dict keys, shapes
and dtypes of the official microsoft/Swin-Transformer SwinTransformer and of timm's, at tiny
configs: what `load_state_dict(strict=True)` requires of an export.
"""

import errno
import importlib.util
import json
import os
import pathlib
import re
import resource
import signal
import subprocess
import sys
import types

import jax
import numpy as np
import pytest

from swin_flax import build, checkpoints, cli, errors, finetune, rundir
from swin_flax.config import default_config
from swin_flax.models import convert, layout, summary, swin

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "export_keys.json"
LAYOUTS = ("official", "timm")


def random_params(model, seed=0):
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda s: rng.standard_normal(s.shape).astype(s.dtype), summary.param_shapes(model)
    )


@pytest.fixture(scope="module")
def reference():
    return json.loads(FIXTURE.read_text())


@pytest.mark.parametrize("layout", LAYOUTS)
def test_export_has_the_reference_keys_shapes_and_dtypes(reference, layout):
    expected = reference[layout]
    model = swin.create_model(expected["config"])
    state = convert.flax_to_torch(random_params(model), layout, model)
    got = {k: [list(v.shape), str(v.dtype)] for k, v in state.items()}
    assert sorted(got) == sorted(expected["state_dict"])
    assert got == expected["state_dict"]


@pytest.mark.parametrize(
    "suffix, package", [(".npz", None), (".safetensors", "safetensors"), (".pth", "torch")]
)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_round_trip_through_a_file_is_exact(reference, tmp_path, layout, suffix, package):
    if package:
        pytest.importorskip(package)
    model = swin.create_model(reference[layout]["config"])
    params = random_params(model, seed=1)
    path = tmp_path / f"swin{suffix}"
    convert.save_state_dict(convert.flax_to_torch(params, layout, model), path)
    umask = os.umask(0o22)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # as any new file: others may read it
    zeros = jax.tree.map(np.zeros_like, params)
    loaded, report = finetune.load_pretrained(path, model, zeros, load_head=True)
    assert report.layout == layout and report.new == () and report.skipped == ()
    assert jax.tree.structure(loaded) == jax.tree.structure(params)
    jax.tree.map(np.testing.assert_array_equal, loaded, params)


@pytest.fixture
def no_packages(monkeypatch):
    """`import torch` and `import safetensors` fail, as where neither is installed."""
    for name in ("torch", "safetensors", "safetensors.numpy"):
        monkeypatch.setitem(sys.modules, name, None)


def test_missing_packages_are_user_errors_and_write_nothing(no_packages, tmp_path):
    state = {"head.bias": np.zeros(3, np.float32)}
    with pytest.raises(errors.CheckpointError, match="pip install torch"):
        convert.save_state_dict(state, tmp_path / "swin.pth")
    with pytest.raises(errors.CheckpointError, match=r"pip install -e '\.\[pretrained\]'"):
        convert.save_state_dict(state, tmp_path / "swin.safetensors")
    assert list(tmp_path.iterdir()) == []
    convert.save_state_dict(state, tmp_path / "swin.npz")  # numpy alone
    with np.load(tmp_path / "swin.npz") as f:
        np.testing.assert_array_equal(f["head.bias"], state["head.bias"])


def test_a_write_that_fails_midway_leaves_the_previous_file(tmp_path, monkeypatch):
    """A full disk while exporting: the file there before is byte for byte as it was, no part of
    the new one is left, and the error names the path, the cause and that the old file is kept (it
    was written straight into the target, destroyed). Found by a predict/export user trial."""
    path = tmp_path / "swin.npz"
    path.write_bytes(b"the previous export")

    def full_disk(f, **arrays):
        f.write(b"PK\x03\x04 the first bytes of the new file")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np, "savez", full_disk)
    with pytest.raises(errors.CheckpointWriteError) as e:
        convert.save_state_dict({"head.bias": np.zeros(3, np.float32)}, path)
    assert path.read_bytes() == b"the previous export"
    assert list(tmp_path.iterdir()) == [path]
    assert str(e.value) == (
        f"could not write {path} (No space left on device): the file there is untouched. Make "
        "room there (disk space, a file-size limit), or give another path."
    )
    assert isinstance(e.value, errors.USER_ERRORS)  # one paragraph, exit 2
    path.unlink()  # no file there before: none after, and the message does not speak of one
    with pytest.raises(errors.CheckpointWriteError, match=r"\): nothing was written\. Make room"):
        convert.save_state_dict({"head.bias": np.zeros(3, np.float32)}, path)
    assert not any(tmp_path.iterdir())


def test_a_torch_write_that_fails_midway_leaves_the_previous_file(tmp_path, monkeypatch):
    """torch.save to a file object reports a full disk as a RuntimeError, not an OSError: the
    same error and cleanup as numpy's (found by a review). A stand-in for torch writes part of the
    file, then raises what torch 2's PytorchStreamWriter raises."""
    path = tmp_path / "swin.pth"
    path.write_bytes(b"the previous export")
    failure = "[enforce fail at inline_container.cc:603] . PytorchStreamWriter failed writing file"

    def full_disk(state, f):
        f.write(b"PK\x03\x04 the first bytes of the new file")
        raise RuntimeError(failure)

    torch = types.SimpleNamespace(save=full_disk, from_numpy=lambda v: v)
    monkeypatch.setattr(convert, "require_package", lambda path, action: torch)
    with pytest.raises(errors.CheckpointWriteError) as e:
        convert.save_state_dict({"head.bias": np.zeros(3, np.float32)}, path)
    assert path.read_bytes() == b"the previous export"
    assert list(tmp_path.iterdir()) == [path]
    assert str(e.value).startswith(f"could not write {path} ({failure}): the file there is")


# --------------------------------------------------------------------------------------------------
# scripts/export.py
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny run as train.py leaves it: config.json, `best` at epoch 2 and `latest` at epoch 3.
    Two stages (PatchMerging, a shifted block), the first scanned as in a default config."""
    workdir = tmp_path_factory.mktemp("run")
    c = default_config()
    c.dataset = "synthetic"
    c.model.update(
        img_size=32, patch_size=4, embed_dim=8, depths=(4, 2), num_heads=(1, 2), window_size=4
    )
    model = build.model_from_config(c)
    assert model.scan_blocks and swin.scans_stage(4, True)
    params = {which: random_params(model, seed) for seed, which in enumerate(("best", "latest"))}
    rundir.write_config(c, workdir)
    ckpts = checkpoints.Checkpoints(workdir)
    ckpts.save("best", 20, {"params": params["best"], "step": 20}, {"epoch": 2, "step": 20})
    ckpts.save("latest", 30, {"params": params["latest"], "step": 30}, {"epoch": 3, "step": 30})
    ckpts.close()
    return workdir, model, params["best"]


def export(*args, preexec_fn=None):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "export.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        preexec_fn=preexec_fn,
    )


def test_export_script_writes_the_best_checkpoint(run, tmp_path):
    workdir, model, best = run
    out = tmp_path / "sub" / "swin.npz"  # in a new folder: said, as a typo in it would go unseen
    result = export(f"--workdir={workdir}", "--layout=official", f"--out={out}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith(f"wrote {out} (created {tmp_path / 'sub'}/): official layout, ")
    assert "/checkpoints/best/" in result.stdout and "(epoch 2, step " in result.stdout
    again = export(f"--workdir={workdir}", "--layout=official", f"--out={out}")
    assert again.stdout.startswith(f"wrote {out} (replacing the file there): official layout, ")
    # The model it loads into: the run's config, in the official constructor's names.
    assert result.stdout.splitlines()[1] == (
        "load it with strict=True into SwinTransformer(img_size=32, patch_size=4, in_chans=3, "
        "num_classes=10, embed_dim=8, depths=(4, 2), num_heads=(1, 2), window_size=4, "
        "mlp_ratio=4.0, qkv_bias=True) (microsoft/Swin-Transformer, models/swin_transformer.py)"
    )
    # timm's, with the options that give the official window rule and masks (as the fixture
    # generator builds it: scripts/fixtures/_common.py, timm_swin).
    timm = export(f"--workdir={workdir}", "--layout=timm", f"--out={tmp_path / 'timm.npz'}")
    assert timm.stdout.startswith(f"wrote {tmp_path / 'timm.npz'}: timm layout, ")  # folder known
    assert timm.stdout.splitlines()[1] == (
        "load it with strict=True into timm.models.swin_transformer.SwinTransformer(img_size=32, "
        "patch_size=4, in_chans=3, num_classes=10, embed_dim=8, depths=(4, 2), num_heads=(1, 2), "
        "window_size=4, mlp_ratio=4.0, qkv_bias=True, always_partition=False, strict_img_size=True)"
    )
    with np.load(out) as f:
        state = {k: f[k] for k in f.files}
    canonical = layout.unstack_block_params(best, model)
    assert result.stdout.split(", ")[1] == f"{len(state)} tensors"
    assert set(state) == set(convert.flax_to_torch(canonical, "official", model))
    jax.tree.map(np.testing.assert_array_equal, convert.torch_to_flax(state, model), canonical)


def test_a_failed_export_leaves_no_folder_it_created(run, tmp_path):
    """`--out new/sub/swin.npz` and a write that fails midway (a file size limit: EFBIG, as a full
    disk fails): exit 2, and the folders export.py created for it are gone, nothing is left written
    (found by a review)."""
    workdir, _, _ = run
    (tmp_path / "kept").mkdir()  # a folder there before: not removed
    out = tmp_path / "kept" / "new" / "sub" / "swin.npz"

    def small_files():  # in the child: the write fails with EFBIG instead of the signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))

    result = export(f"--workdir={workdir}", f"--out={out}", preexec_fn=small_files)
    assert result.returncode == cli.EXIT_USER_ERROR, result.stderr[-2000:]
    assert f"could not write {out} (File too large)" in " ".join(result.stderr.split())
    assert list(tmp_path.iterdir()) == [tmp_path / "kept"]
    assert list((tmp_path / "kept").iterdir()) == []


def test_the_export_says_the_input_and_classes_it_was_trained_on(tmp_path):
    """A PyTorch user needs the input size, the normalisation and the classes' order besides the
    constructor: the closing line says them, a .safetensors keeps them in its metadata (JSON
    strings; "format": "pt" as before). Found by a predict/export user trial."""
    from safetensors import safe_open  # noqa: PLC0415

    c = default_config()
    c.dataset = "cifar10"
    c.normalize_mean, c.normalize_std = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
    c.model.update(img_size=32, patch_size=4, embed_dim=8, depths=(2,), num_heads=(1,))
    c.model.update(window_size=4)
    workdir = saved_run(c, tmp_path / "run")
    out = tmp_path / "swin.safetensors"
    result = export(f"--workdir={workdir}", f"--out={out}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[2] == (
        "its input: RGB images resized to 32x32, pixels / 255 normalized with mean (0.49, 0.48, "
        "0.45) and std (0.25, 0.24, 0.26); its outputs: the classes' logits by index (0 airplane, "
        "1 automobile, 2 bird, 3 cat, 4 deer, 5 dog, 6 frog, 7 horse, 8 ship, 9 truck) (also in "
        "the file's metadata: img_size, normalize_mean, normalize_std, class_names)"
    )
    with safe_open(out, "np") as f:
        metadata = f.metadata()
    assert metadata.pop("format") == "pt"
    assert {k: json.loads(v) for k, v in metadata.items()} == {
        "img_size": 32,
        "normalize_mean": [0.49, 0.48, 0.45],
        "normalize_std": [0.25, 0.24, 0.26],
        "class_names": [
            "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
            "truck",
        ],
    }  # fmt: skip


def saved_run(config, workdir):
    """A run folder of `config` whose best/ holds random params at step 2 (epoch 1)."""
    rundir.write_config(config, workdir)
    ckpts = checkpoints.Checkpoints(workdir)
    params = random_params(build.model_from_config(config))
    ckpts.save("best", 2, {"params": params, "step": 2}, {"epoch": 1, "step": 2})
    ckpts.close()
    return workdir


def test_a_model_timm_cannot_build_exports_for_the_official_one_only(tmp_path):
    """qk_scale, ape and patch_norm off: the official constructor call names them (qk_scale
    changes no shape, only the outputs); timm's SwinTransformer has none of them: refused."""
    c = default_config()
    c.dataset = "synthetic"
    c.model.update(img_size=16, patch_size=4, embed_dim=8, depths=(2,), num_heads=(1,))
    c.model.update(window_size=4, qk_scale=0.5, ape=True, patch_norm=False)
    workdir = saved_run(c, tmp_path / "run")
    official = export(f"--workdir={workdir}", f"--out={tmp_path / 'official.npz'}")
    assert official.returncode == 0, official.stderr[-2000:]
    assert official.stdout.splitlines()[1].endswith(
        "qkv_bias=True, qk_scale=0.5, ape=True, patch_norm=False) (microsoft/Swin-Transformer, "
        "models/swin_transformer.py)"
    )
    timm = export(f"--workdir={workdir}", "--layout=timm", f"--out={tmp_path / 'timm.npz'}")
    message = " ".join(timm.stderr.split())
    assert (
        timm.returncode == 2
        and "(ape=True, patch_norm=False, qk_scale=0.5) exports only" in message
    )
    assert not (tmp_path / "timm.npz").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--layout=torch", "--out={out}"], "--layout 'torch' is not"),
        (["--layout=timm", "--out={tmp}/swin.h5"], r"ending in .* \(got '.*swin\.h5'\)"),
        (["--layout=timm"], r"--out \(The file to write: .*\) is missing"),
        (
            ["--workdir={tmp}/missing", "--out={out}"],
            "missing (does not exist|holds no checkpoint)",
        ),
        pytest.param(
            ["--out={tmp}/swin.pth"],
            r"writing .*swin\.pth needs PyTorch: pip install torch",
            marks=pytest.mark.skipif(bool(importlib.util.find_spec("torch")), reason="has torch"),
        ),
        (
            ["--out={workdir}/checkpoints/swin.npz"],
            r"--out .*/swin\.npz is among the files of .*, the run this",
        ),
        (
            ["--out={workdir}/config.json/swin.npz"],
            "is not a file path in a folder that exists or can be created",
        ),
        pytest.param(  # a folder the system will not make: root passes the earlier check
            ["--out=/proc/swin_flax_x/swin.npz"],
            r"its folder cannot be created \(No such file",
            marks=pytest.mark.skipif(os.geteuid() != 0, reason="others are refused /proc earlier"),
        ),
    ],
    ids=[
        "layout",
        "suffix",
        "no_out",
        "no_workdir",
        "pth_without_torch",
        "in_the_run",
        "under_a_file",
        "uncreatable_folder",
    ],  # fmt: skip
)
def test_export_script_bad_arguments_exit_2_and_write_nothing(run, tmp_path, args, message):
    workdir, _, _ = run
    out = tmp_path / "swin.npz"
    args = [a.format(out=out, tmp=tmp_path, workdir=workdir) for a in args]
    if not any(a.startswith("--workdir") for a in args):
        args.append(f"--workdir={workdir}")
    result = export(*args)
    assert result.returncode == cli.EXIT_USER_ERROR, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    paragraph = result.stderr.strip()
    assert paragraph.startswith("Error: ") and "\n\n" not in paragraph
    assert re.search(message, " ".join(paragraph.split()))
    assert list(tmp_path.iterdir()) == []


def test_export_script_takes_one_run_of_several(tmp_path):
    """A checkpoint of 2 runs exports the run --run names (by index or name): exactly that slice of
    the stack; without --run it is refused (a state_dict holds one model), writing nothing."""
    from tests.test_evaluate import random_params as random_run_params  # noqa: PLC0415
    from tests.test_evaluate import save_runs, tiny_config  # noqa: PLC0415

    c = tiny_config()
    c.num_runs = 2
    each = [random_run_params(c, seed) for seed in (0, 1)]
    save_runs(tmp_path / "run", c, each)
    model = build.model_from_config(c)
    for which in ("1", "seed=1"):
        out = tmp_path / f"run{which}.npz"
        result = export(f"--workdir={tmp_path / 'run'}", f"--run={which}", f"--out={out}")
        assert result.returncode == 0, result.stderr[-2000:]
        assert result.stdout.splitlines()[0].endswith("run 1 (of 0-1), seed=1, its best epoch 1")
        with np.load(out) as f:
            state = {k: f[k] for k in f.files}
        canonical = layout.unstack_block_params(each[1], model) if model.scan_blocks else each[1]
        jax.tree.map(np.testing.assert_array_equal, convert.torch_to_flax(state, model), canonical)
    result = export(f"--workdir={tmp_path / 'run'}", f"--out={tmp_path / 'all.npz'}")
    assert result.returncode == cli.EXIT_USER_ERROR
    paragraph = " ".join(result.stderr.split())
    assert "holds the params of 2 runs" in paragraph and "(0 'seed=0', 1 'seed=1')" in paragraph
    assert not (tmp_path / "all.npz").exists()
