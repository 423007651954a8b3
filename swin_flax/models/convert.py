"""PyTorch Swin state_dicts <-> canonical Flax params (`layout.py`), official or timm layout:

  official (microsoft/Swin-Transformer)    timm (>= 0.9)
  layers.{i}.downsample.*  (end of i)      layers.{i+1}.downsample.*  (start of i+1)
  head.weight / head.bias                  head.fc.weight / head.fc.bias  (head.* also read)

Everything else maps by name; Linear weights are transposed, the conv goes OIHW <-> HWIO. The model
recomputes the buffers (relative_position_index, attn_mask): skipped on load, written for the
official layout, whose model keeps them persistent. Files: .pth/.pt/.bin/.ckpt (torch),
.safetensors (no torch), .npz (numpy)."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
from flax import traverse_util

from swin_flax.config import PRETRAINED_SUFFIXES
from swin_flax.errors import CheckpointError, CheckpointWriteError
from swin_flax.models import swin
from swin_flax.models.ops import relative_position_index, shifted_window_mask
from swin_flax.models.summary import param_shapes

LAYOUTS = ("official", "timm")
BUFFER_SUFFIXES = ("relative_position_index", "attn_mask")  # recomputed by the model
# Prefixes a wrapper puts on every key: DistributedDataParallel, a training module, torch.compile.
WRAPPER_PREFIXES = ("module.", "model.", "_orig_mod.")
_INSTALL = {
    "torch": "PyTorch: pip install torch (the CPU wheel is enough: "
    "--index-url https://download.pytorch.org/whl/cpu)",
    "safetensors.numpy": "the safetensors package: pip install -e '.[pretrained]' "
    "(or pip install safetensors)",
}


def _resolve_model(model: swin.SwinTransformer | Mapping[str, Any]) -> swin.SwinTransformer:
    """`model` itself, or the SwinTransformer its official arguments build."""
    return model if isinstance(model, swin.SwinTransformer) else swin.create_model(model)


def detect_layout(state_dict: Mapping[str, Any]) -> str:
    """'official' or 'timm', from where PatchMerging sits or else the head's name; 'official' when
    both read the same (one stage, a plain head)."""
    official = any(k.startswith("layers.0.downsample.") for k in state_dict)
    timm = any(re.match(r"layers\.\d+\.downsample\.|head\.fc\.", k) for k in state_dict)
    return "timm" if timm and not official else "official"


def torch_key(path: tuple[str, ...], layout: str) -> str:
    """The PyTorch state_dict key of the Flax param at `path` (canonical layout) in `layout`."""
    *modules, leaf = path
    names = [re.sub(r"^(layers|blocks)_(\d+)$", r"\1.\2", m) for m in modules]
    if layout == "timm" and "downsample" in modules:  # at the start of the next stage
        names[0] = f"layers.{int(modules[0].removeprefix('layers_')) + 1}"
    if layout == "timm" and modules == ["head"]:
        names.append("fc")
    return ".".join([*names, {"kernel": "weight", "scale": "weight"}.get(leaf, leaf)])


def _torch_axes(path: tuple[str, ...], ndim: int) -> tuple[int, ...]:
    """The transpose from the Flax param at `path` to its PyTorch tensor (HWIO -> OIHW, Dense's)."""
    if path[-1] != "kernel":
        return tuple(range(ndim))
    return (3, 2, 0, 1) if ndim == 4 else (1, 0)


@dataclasses.dataclass(frozen=True)
class Pair:
    """A target param's Flax `path`, PyTorch `key` and `shape`, and the source `value` or None."""

    path: tuple[str, ...]
    key: str
    shape: tuple[int, ...]
    value: np.ndarray | None

    @property
    def fits(self) -> bool:
        return self.value is not None and tuple(self.value.shape) == self.shape

    def flax_value(self) -> np.ndarray:
        return np.transpose(self.value, np.argsort(_torch_axes(self.path, self.value.ndim)))


def pair_params(
    state_dict: Mapping[str, Any], target: Mapping[tuple[str, ...], Any], layout: str
) -> tuple[list[Pair], list[str]]:
    """A `Pair` per param of flattened canonical `target` ({path: array or ShapeDtypeStruct}), and
    the sorted source keys none takes (buffers left out). timm < 0.9's `head` read for `head.fc`."""
    pairs = []
    for path, leaf in target.items():
        key = torch_key(path, layout)
        if key not in state_dict and key.startswith("head.fc."):
            key = key.replace("head.fc.", "head.", 1)
        value = np.asarray(state_dict[key]) if key in state_dict else None
        shape = tuple(leaf.shape[a] for a in _torch_axes(path, len(leaf.shape)))
        pairs.append(Pair(path, key, shape, value))
    taken = {p.key for p in pairs}
    unused = sorted(k for k in state_dict if k not in taken and not k.endswith(BUFFER_SUFFIXES))
    return pairs, unused


def torch_to_flax(
    state_dict: Mapping[str, np.ndarray],
    model: swin.SwinTransformer | Mapping[str, Any],
    layout: str = "auto",
) -> dict[str, Any]:
    """A PyTorch Swin state_dict -> canonical Flax params for `model` (or its official arguments).
    `layout`: 'auto', 'official' or 'timm'. ValueError naming every key that does not fit."""
    model = _resolve_model(model)
    if layout not in ("auto", *LAYOUTS):
        raise ValueError(f"layout must be 'auto' or one of {LAYOUTS}, got {layout!r}.")
    layout = detect_layout(state_dict) if layout == "auto" else layout
    target = traverse_util.flatten_dict(param_shapes(model.clone(scan_blocks=False, remat="none")))
    pairs, unused = pair_params(state_dict, target, layout)
    missing = ", ".join(f"{p.key} {p.shape}" for p in pairs if p.value is None)
    mismatched = "; ".join(
        f"{p.key}: expected shape {p.shape}, found {tuple(p.value.shape)}"
        for p in pairs
        if p.value is not None and not p.fits
    )
    kinds = (("missing", missing), ("mis-shaped", mismatched), ("unexpected", ", ".join(unused)))
    problems = [f"{kind} keys: {keys}" for kind, keys in kinds if keys]
    if problems:
        raise ValueError(
            f"state_dict does not fit the model ({layout} layout, "
            f"{model.official_arguments()}): " + " | ".join(problems)
        )
    flat = {p.path: p.flax_value().astype(target[p.path].dtype) for p in pairs}
    return traverse_util.unflatten_dict(flat)


def flax_to_torch(
    params: Mapping[str, Any],
    layout: str = "official",
    model: swin.SwinTransformer | Mapping[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    """Canonical Flax params -> a PyTorch state_dict (numpy arrays) in `layout`; with `model`
    given and the official layout, the official persistent buffers too (`official_buffers`)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}.")
    flat = traverse_util.flatten_dict(dict(params))
    if scanned := next((p for p in flat if "blocks" in p or "blocks_tail" in p), None):
        raise ValueError(
            f"param {'/'.join(scanned)} is in the scanned layout; convert canonical params "
            "(layout.unstack_block_params(params, model) first)."
        )
    out = {
        torch_key(p, layout): np.array(np.transpose(np.asarray(v), _torch_axes(p, np.ndim(v))))
        for p, v in flat.items()
    }
    if model is not None and layout == "official":
        out.update(official_buffers(_resolve_model(model)))
    return out


def official_buffers(model: swin.SwinTransformer) -> dict[str, np.ndarray]:
    """The official model's persistent buffers: relative_position_index (int64) for every block,
    attn_mask (float32, 0 / -100) for every block that shifts."""
    out = {}
    for i, spec in enumerate(model.stage_specs()):
        index = relative_position_index(spec.window_size).astype(np.int64)
        for j in range(spec.depth):
            out[f"layers.{i}.blocks.{j}.attn.relative_position_index"] = index
            if j % 2 == 1 and spec.shift_size:
                out[f"layers.{i}.blocks.{j}.attn_mask"] = shifted_window_mask(
                    spec.input_resolution, spec.window_size, spec.shift_size
                )
    return out


def _state_dict_of(obj: Any) -> Any:
    """Official checkpoints hold {'model': state_dict, ...}; others {'state_dict': ...}."""
    for key in ("model", "state_dict", "model_state"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            return _state_dict_of(obj[key])
    return obj


def require_package(path: str | os.PathLike, action: str = "reading") -> Any:
    """The module that reads and writes `path`'s format, imported (None for .npz: numpy), or a
    CheckpointError saying what to install, so callers can check before any work."""
    path = os.fspath(path)
    if not path.endswith(PRETRAINED_SUFFIXES):
        raise ValueError(f"path {path!r}: expected one of {', '.join(PRETRAINED_SUFFIXES)}.")
    if path.endswith(".npz"):
        return None
    name = "safetensors.numpy" if path.endswith(".safetensors") else "torch"
    try:
        return importlib.import_module(name)
    except ImportError:
        raise CheckpointError(
            f"{action} {path} needs {_INSTALL[name]}. An .npz of the state_dict needs nothing more."
        ) from None


def load_torch_file(path: str | os.PathLike, weights_only: bool = True) -> dict[str, np.ndarray]:
    """A state_dict file (.npz: np.savez of {key: tensor.numpy()}) -> numpy dict, unwrapped from
    {'model': ...} and `WRAPPER_PREFIXES`. `weights_only=False`: for trusted files only."""
    path = os.fspath(path)
    module = require_package(path)
    if module is None:
        with np.load(path) as f:
            return _unwrapped({k: f[k] for k in f.files})
    if path.endswith(".safetensors"):
        from safetensors import SafetensorError  # noqa: PLC0415

        try:
            return _unwrapped({k: np.asarray(v) for k, v in module.load_file(path).items()})
        except SafetensorError as e:  # a damaged file: as numpy's and torch's, a ValueError
            raise ValueError(str(e)) from e
    torch = module
    try:
        obj = torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as e:  # torch raises UnpicklingError subclasses that vary by version
        if weights_only:
            raise ValueError(
                f"torch.load({path!r}, weights_only=True) failed ({e}); if the file is trusted, "
                "pass weights_only=False."
            ) from e
        raise
    return _unwrapped(
        {  # numpy has no bfloat16: such tensors become float32
            k: (v.float() if v.dtype == torch.bfloat16 else v).detach().cpu().numpy()
            for k, v in _state_dict_of(obj).items()
            if isinstance(v, torch.Tensor)
        }
    )


def _unwrapped(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The state_dict of the model inside a wrapper that put its prefix on every key (a
    `WRAPPER_PREFIXES` one, or several: DDP around torch.compile), without it."""
    for prefix in WRAPPER_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            return _unwrapped({k.removeprefix(prefix): v for k, v in state.items()})
    return state


def save_state_dict(
    state: Mapping[str, np.ndarray],
    path: str | os.PathLike,
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Writes a state_dict of numpy arrays to `path` (.pth etc.: torch.save of {key: tensor}),
    its package checked before the file is opened; .safetensors keeps `metadata` beside "format".
    Written to a temporary file in the same folder, then renamed over `path`: a write that fails
    (a full disk) leaves the file that was there as it was (CheckpointWriteError)."""
    path = os.fspath(path)
    module = require_package(path, "writing")
    arrays = {k: np.ascontiguousarray(v) for k, v in state.items()}
    torch_state = None  # made before the write: only the write's own errors are a failed write
    if module is not None and not path.endswith(".safetensors"):
        torch_state = {k: module.from_numpy(v) for k, v in arrays.items()}
    folder, name = os.path.split(os.path.abspath(path))
    temporary = os.path.join(folder, f".{name}.{os.getpid()}.tmp")
    try:
        with os.fdopen(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666), "wb") as f:
            if module is None:
                np.savez(f, **arrays)
            elif path.endswith(".safetensors"):
                f.write(module.save(arrays, metadata={**(metadata or {}), "format": "pt"}))
            else:
                module.save(torch_state, f)
        os.replace(temporary, path)
    except (OSError, RuntimeError) as e:  # torch.save reports a full disk as a RuntimeError
        kept = "the file there is untouched" if os.path.exists(path) else "nothing was written"
        raise CheckpointWriteError(
            f"could not write {path} ({getattr(e, 'strerror', None) or e}): {kept}. Make room "
            "there (disk space, a file-size limit), or give another path."
        ) from e
    finally:  # a write cut short leaves no part behind (after os.replace: nothing to remove)
        with contextlib.suppress(OSError):
            os.remove(temporary)
