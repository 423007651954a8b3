"""PyTorch Swin state_dicts <-> Flax params, in the official and in timm's layout.

The two layouts differ only in where PatchMerging sits and how the classifier is named:

  official (microsoft/Swin-Transformer)    timm (>= 0.9)
  layers.{i}.downsample.*  (end of i)      layers.{i+1}.downsample.*  (start of i+1)
  head.weight / head.bias                  head.fc.weight / head.fc.bias  (head.* also read)

Everything else maps by name: `layers.i.blocks.j.attn.qkv.weight` <-> params
`layers_i/blocks_j/attn/qkv/kernel`. Linear weights are transposed ([out, in] -> [in, out]), the
patch-embedding conv goes OIHW -> HWIO, LayerNorm weight <-> scale. The buffers
`relative_position_index` and `attn_mask` are recomputed by the model, so they are skipped on
load; `flax_to_torch(..., model=...)` writes them for the official layout, whose model registers
them as persistent buffers (so `load_state_dict(strict=True)` accepts the result); timm's are
non-persistent and never written.

Both directions work on the canonical (unscanned) params; for a `scan_blocks=True` model use
`swin.stack_block_params` / `swin.unstack_block_params` around them.

Files: `load_torch_file` / `save_state_dict` read and write .pth/.pt/.bin/.ckpt (needs torch),
.safetensors (needs safetensors, not torch) and .npz (numpy only); a missing package is a
CheckpointError saying what to install (`require_package`).
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from swin_flax.errors import CheckpointError
from swin_flax.models import swin

LAYOUTS = ("official", "timm")
TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
FILE_SUFFIXES = (*TORCH_SUFFIXES, ".safetensors", ".npz")
_BUFFER_SUFFIXES = ("relative_position_index", "attn_mask")
_INSTALL = {
    "torch": "PyTorch: pip install torch (the CPU wheel is enough: "
    "--index-url https://download.pytorch.org/whl/cpu)",
    "safetensors.numpy": "the safetensors package: pip install -e '.[pretrained]' "
    "(or pip install safetensors)",
}


def _as_model(model: swin.SwinTransformer | Mapping[str, Any]) -> swin.SwinTransformer:
    if isinstance(model, swin.SwinTransformer):
        return model
    return swin.create_model(model)


def detect_layout(state_dict: Mapping[str, Any]) -> str:
    """'official' or 'timm', from where PatchMerging sits (or, lacking one, the head's name)."""
    keys = list(state_dict)
    if any(k.startswith("layers.0.downsample.") for k in keys):
        return "official"
    if any(re.match(r"layers\.\d+\.downsample\.", k) for k in keys):
        return "timm"
    if any(k.startswith("head.fc.") for k in keys):
        return "timm"
    return "official"  # one stage and a plain head: both layouts name everything alike


def _module_name(part: str, stage_offset: int) -> str:
    """Flax module name -> torch module name: 'layers_3' -> 'layers.{3 + stage_offset}'."""
    m = re.fullmatch(r"(layers|blocks)_(\d+)", part)
    if m:
        offset = stage_offset if m.group(1) == "layers" else 0
        return f"{m.group(1)}.{int(m.group(2)) + offset}"
    return part


def torch_key(path: tuple[str, ...], layout: str) -> str:
    """The PyTorch state_dict key of the Flax param at `path` (canonical layout)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}.")
    *modules, leaf = path
    if "blocks" in modules or "blocks_tail" in modules:
        raise ValueError(
            f"param {'/'.join(path)} is in the scanned layout; convert canonical params "
            "(swin.unstack_block_params(params, model) first)."
        )
    # timm runs stage i's PatchMerging at the start of stage i + 1.
    offset = 1 if layout == "timm" and "downsample" in modules else 0
    names = [_module_name(m, offset) for m in modules]
    if layout == "timm" and names == ["head"]:
        names = ["head", "fc"]
    torch_leaf = {"kernel": "weight", "scale": "weight", "bias": "bias"}.get(leaf, leaf)
    return ".".join([*names, torch_leaf])


def _to_torch_value(path: tuple[str, ...], value: np.ndarray) -> np.ndarray:
    if path[-1] == "kernel":
        if value.ndim == 4:  # conv HWIO -> OIHW
            return np.transpose(value, (3, 2, 0, 1))
        return np.transpose(value)  # Dense [in, out] -> Linear [out, in]
    return value


def _to_flax_value(path: tuple[str, ...], value: np.ndarray) -> np.ndarray:
    if path[-1] == "kernel":
        if value.ndim == 4:  # conv OIHW -> HWIO
            return np.transpose(value, (2, 3, 1, 0))
        return np.transpose(value)
    return value


def _torch_shape(path: tuple[str, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
    if path[-1] == "kernel":
        if len(shape) == 4:
            h, w, i, o = shape
            return (o, i, h, w)
        return tuple(reversed(shape))
    return tuple(shape)


def _flat(tree: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    out = {}
    for k, v in tree.items():
        if isinstance(v, Mapping):
            out.update(_flat(v, (*prefix, k)))
        else:
            out[(*prefix, k)] = v
    return out


def _nest(flat: Mapping[tuple[str, ...], Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, value in flat.items():
        node = out
        for k in path[:-1]:
            node = node.setdefault(k, {})
        node[path[-1]] = value
    return out


def torch_to_flax(
    state_dict: Mapping[str, np.ndarray],
    model: swin.SwinTransformer | Mapping[str, Any],
    layout: str = "auto",
) -> dict[str, Any]:
    """A PyTorch Swin state_dict (numpy arrays) -> canonical Flax params for `model`.

    `model` is a SwinTransformer or its official arguments. `layout`: 'auto' (see
    `detect_layout`), 'official' or 'timm'. Buffers are skipped. Raises ValueError naming every
    missing, unexpected or mis-shaped key (with expected vs found torch shapes).
    """
    model = _as_model(model)
    if layout == "auto":
        layout = detect_layout(state_dict)
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be 'auto' or one of {LAYOUTS}, got {layout!r}.")
    canonical = model.clone(scan_blocks=False, remat=False)
    expected = _flat(swin.param_shapes(canonical))
    remaining = {k: v for k, v in state_dict.items() if not k.endswith(_BUFFER_SUFFIXES)}

    out, missing, mismatched = {}, [], []
    for path, struct in expected.items():
        key = torch_key(path, layout)
        if key not in remaining and layout == "timm" and key.startswith("head.fc."):
            key = key.replace("head.fc.", "head.", 1)  # timm < 0.9 named the classifier `head`
        if key not in remaining:
            missing.append(f"{key} {_torch_shape(path, struct.shape)}")
            continue
        value = np.asarray(remaining.pop(key))
        want = _torch_shape(path, struct.shape)
        if tuple(value.shape) != want:
            mismatched.append(f"{key}: expected shape {want}, found {tuple(value.shape)}")
            continue
        out[path] = _to_flax_value(path, value).astype(struct.dtype)
    problems = []
    if missing:
        problems.append("missing keys: " + ", ".join(missing))
    if mismatched:
        problems.append("mis-shaped keys: " + "; ".join(mismatched))
    if remaining:
        problems.append("unexpected keys: " + ", ".join(sorted(remaining)))
    if problems:
        raise ValueError(
            f"state_dict does not fit the model ({layout} layout, "
            f"{model.official_arguments()}): " + " | ".join(problems)
        )
    return _nest(out)


def flax_to_torch(
    params: Mapping[str, Any],
    layout: str = "official",
    model: swin.SwinTransformer | Mapping[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    """Canonical Flax params -> a PyTorch state_dict (numpy arrays) in `layout`.

    With `model` given and the official layout, also writes the official persistent buffers
    (`relative_position_index` per block, `attn_mask` per shifted block).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}.")
    out = {}
    for path, value in _flat(params).items():
        out[torch_key(path, layout)] = np.array(_to_torch_value(path, np.asarray(value)))
    if model is not None and layout == "official":
        out.update(official_buffers(_as_model(model)))
    return out


def official_buffers(model: swin.SwinTransformer) -> dict[str, np.ndarray]:
    """The official model's persistent buffers: relative_position_index (int64) for every block,
    attn_mask (float32, 0 / -100) for every block that shifts."""
    out = {}
    for i, spec in enumerate(model.stage_specs()):
        index = swin.relative_position_index(spec.window_size).astype(np.int64)
        for j in range(spec.depth):
            out[f"layers.{i}.blocks.{j}.attn.relative_position_index"] = index
            if j % 2 == 1 and spec.shift_size:
                out[f"layers.{i}.blocks.{j}.attn_mask"] = swin.shifted_window_mask(
                    spec.input_resolution, spec.window_size, spec.shift_size
                )
    return out


def torch_to_flax_scanned(
    state_dict: Mapping[str, np.ndarray],
    model: swin.SwinTransformer | Mapping[str, Any],
    layout: str = "auto",
) -> dict[str, Any]:
    """`torch_to_flax`, then stacked for `model.clone(scan_blocks=True)`."""
    model = _as_model(model)
    return swin.stack_block_params(torch_to_flax(state_dict, model, layout), model)


def flax_to_torch_scanned(
    params: Mapping[str, Any],
    model: swin.SwinTransformer | Mapping[str, Any],
    layout: str = "official",
) -> dict[str, np.ndarray]:
    """`flax_to_torch` for params of a scan_blocks=True model."""
    model = _as_model(model)
    return flax_to_torch(swin.unstack_block_params(params, model), layout, model)


def _unwrap(obj: Any) -> Any:
    """Official checkpoints hold {'model': state_dict, ...}; others {'state_dict': ...}."""
    while isinstance(obj, Mapping):
        for key in ("model", "state_dict", "model_state"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
        else:
            return obj
    return obj


def require_package(path: str | os.PathLike, action: str = "reading") -> Any:
    """The module that reads and writes `path`'s format, imported: torch for .pth/.pt/.bin/.ckpt,
    safetensors.numpy for .safetensors, None for .npz (numpy). Raises CheckpointError saying what
    to install when it is missing, so callers can check before any work."""
    path = os.fspath(path)
    if path.endswith(".npz"):
        return None
    if path.endswith(".safetensors"):
        name = "safetensors.numpy"
    elif path.endswith(TORCH_SUFFIXES):
        name = "torch"
    else:
        raise ValueError(f"path {path!r}: expected one of {', '.join(FILE_SUFFIXES)}.")
    try:
        return importlib.import_module(name)
    except ImportError:
        raise CheckpointError(
            f"{action} {path} needs {_INSTALL[name]}. An .npz of the state_dict needs neither."
        ) from None


def load_torch_file(path: str | os.PathLike, weights_only: bool = True) -> dict[str, np.ndarray]:
    """A .pth / .pt / .bin / .ckpt (needs torch) or .safetensors (needs safetensors) file -> numpy
    dict.

    Official checkpoints ({'model': ...}) are unwrapped. `weights_only=False` is needed for
    pickles holding other objects (e.g. the official training config); use it on trusted files.
    """
    path = os.fspath(path)
    if path.endswith(".npz"):
        raise ValueError(f"path {path!r}: expected a .pth, .pt, .bin, .ckpt or .safetensors file.")
    if path.endswith(".safetensors"):
        return {k: np.asarray(v) for k, v in require_package(path).load_file(path).items()}
    torch = require_package(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as e:  # torch raises UnpicklingError subclasses that vary by version
        if weights_only:
            raise ValueError(
                f"torch.load({path!r}, weights_only=True) failed ({e}); if the file is trusted, "
                "pass weights_only=False."
            ) from e
        raise
    state = _unwrap(obj)
    out = {}
    for key, value in state.items():
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu()
            if value.dtype == torch.bfloat16:
                value = value.float()
            out[key] = value.numpy()
    return out


def save_state_dict(state: Mapping[str, np.ndarray], path: str | os.PathLike) -> None:
    """Writes a state_dict of numpy arrays to `path`: .npz (np.savez), .safetensors (safetensors'
    numpy API, no torch) or .pth/.pt/.bin/.ckpt (torch.save of the plain {key: tensor} dict).
    The package is checked before the file is opened."""
    path = os.fspath(path)
    module = require_package(path, "writing")
    arrays = {k: np.ascontiguousarray(v) for k, v in state.items()}
    if module is None:
        with open(path, "wb") as f:
            np.savez(f, **arrays)
    elif path.endswith(".safetensors"):
        module.save_file(arrays, path, metadata={"format": "pt"})
    else:
        module.save({k: module.from_numpy(v) for k, v in arrays.items()}, path)
