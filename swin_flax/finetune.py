"""Starting a run from a pretrained PyTorch Swin: load what fits, resize what can be, report the rest.

Bias tables of another window are resized per head on their offset grid ('bicubic' as the official
code, 'geometric' as timm's), `absolute_pos_embed` of another grid bicubically. The head stays new
unless `load_head`, the final norm too for fewer stages. Both resize methods keep the zero offset's
bias. Anything else that does not fit is a CheckpointError, which `read_pretrained` raises from the
shapes alone, before a run builds anything."""

from __future__ import annotations

import collections
import dataclasses
import math
import os
import pickle
import re
import zipfile
from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from swin_flax.config import pretrained_folder
from swin_flax.errors import CheckpointError, ConfigError
from swin_flax.models import convert, swin
from swin_flax.models import layout as scan_layout
from swin_flax.models.summary import param_shapes

BIAS_RESIZE_METHODS = ("bicubic", "geometric")


@dataclasses.dataclass(frozen=True)
class LoadReport:
    """What `load_pretrained` did. Paths are Flax param paths ('layers_0/blocks_1/attn/qkv/kernel')
    in the canonical (unscanned) layout; `skipped` holds source (PyTorch) keys."""

    source: str
    layout: str
    loaded: tuple[str, ...]
    resized: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...]  # (path, from, to)
    new: tuple[str, ...]
    skipped: tuple[str, ...]
    # The source's relative_position_index and attn_mask of blocks the model has (it makes its own).
    buffers: int = 0
    bias_resize: str = "bicubic"  # how bias tables were resized (absolute_pos_embed: bicubic)

    def summary(self) -> str:
        """Counts, then each resize, each new param, skipped groups."""
        buffers = f", {self.buffers} buffers not needed (the model makes its own)"
        lines = [
            f"pretrained {self.source} ({self.layout} layout): {len(self.loaded)} tensors loaded as "
            f"they are, {len(self.resized)} resized, {len(self.new)} left new, "
            f"{len(self.skipped)} source tensors skipped{buffers if self.buffers else ''}."
        ]
        method = lambda p: self.bias_resize if p.endswith("bias_table") else "bicubic"
        lines += [f"  resized {p}: {src} -> {dst} ({method(p)})" for p, src, dst in self.resized]
        lines += [f"  new (fresh init) {p}" for p in self.new]
        groups = collections.Counter(
            m[1] if (m := re.match(r"(layers\.\d+(?:\.downsample)?)\.", key)) else key.split(".")[0]
            for key in self.skipped
        )
        lines += [f"  skipped {g}.* ({n} tensors)" for g, n in groups.items()]
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Resizing (numpy; separable interpolation matrices)
# --------------------------------------------------------------------------------------------------


def bicubic_matrix(size_in: int, size_out: int) -> np.ndarray:
    """[size_out, size_in] matrix of torch's 1-D bicubic resize (align_corners=False, edge clamp)."""
    a = -0.75  # torch's cubic convolution coefficient
    near = lambda x: ((a + 2) * x - (a + 3)) * x * x + 1  # |x| <= 1
    far = lambda x: ((a * x - 5 * a) * x + 8 * a) * x - 4 * a  # 1 < |x| < 2
    w = np.zeros((size_out, size_in), np.float64)
    for i in range(size_out):
        src = size_in / size_out * (i + 0.5) - 0.5
        x0 = math.floor(src)
        t = src - x0  # weights of source pixels x0-1 .. x0+2
        for k, weight in enumerate((far(t + 1), near(t), near(1 - t), far(2 - t))):
            w[i, min(max(x0 - 1 + k, 0), size_in - 1)] += weight
    return w


def geometric_matrix(size_in: int, size_out: int) -> np.ndarray:
    """[size_out, size_in] matrix of timm's resize_rel_pos_bias_table along one axis: the source
    offsets spaced geometrically (BEiT: ratio q, so the table spans the target's range), linearly
    interpolated at the integer target offsets (edge clamp)."""
    left, right = 1.01, 1.5
    while right - left > 1e-6:
        q = (left + right) / 2.0
        if (1.0 - q ** (size_in // 2)) / (1.0 - q) > size_out // 2:
            right = q
        else:
            left = q
    dis = np.cumsum([q**i for i in range(size_in // 2)])  # 1, 1 + q, 1 + q + q^2, ...
    positions = np.concatenate([-dis[::-1], [0.0], dis])
    half = size_out // 2
    targets = np.arange(-half, half + 0.1, 1.0)
    return np.stack([np.interp(targets, positions, row) for row in np.eye(size_in)], axis=1)


def _resize_square(x: np.ndarray, out: Sequence[int], matrix, what: str) -> np.ndarray:
    """[S*S, C] (a square grid, row-major) -> [out_h * out_w, C] by `matrix`, in float64."""
    n, c = x.shape
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f"{what} of {n} rows is not a square grid.")
    grid = np.reshape(np.asarray(x, np.float64), (side, side, c))
    resized = np.einsum("ij,jkc,lk->ilc", matrix(side, out[0]), grid, matrix(side, out[1]))
    return resized.reshape(-1, c).astype(x.dtype)


def resize_bias_table(table: np.ndarray, window: int, method: str = "bicubic") -> np.ndarray:
    """A [(2W-1)^2, heads] bias table -> that of `window`, each head resized on its offset grid."""
    if math.isqrt(len(table)) % 2 == 0:
        raise ValueError(f"a bias table of {len(table)} rows is not the (2W-1)^2 grid of a window.")
    if len(table) == (2 * window - 1) ** 2:
        return np.asarray(table)
    matrix = {"bicubic": bicubic_matrix, "geometric": geometric_matrix}[method]
    return _resize_square(table, (2 * window - 1,) * 2, matrix, "a bias table")


def resize_pos_embed(embed: np.ndarray, grid: Sequence[int]) -> np.ndarray:
    """[1, S*S, C] absolute position embedding -> [1, h*w, C], as the official load_pretrained."""
    return _resize_square(embed[0], grid, bicubic_matrix, "absolute_pos_embed")[None]


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------


def _read(source: str | os.PathLike | Mapping[str, Any], name: str | None) -> tuple[str, dict]:
    """(a name for messages, the state_dict) of a file, or of a state_dict given as such."""
    if isinstance(source, Mapping):
        return name or "state_dict", dict(source)
    name = os.fspath(source)
    if not os.path.isfile(name):
        raise FileNotFoundError(
            f"pretrained checkpoint {name} does not exist: give the path of an official .pth "
            "(e.g. swin_tiny_patch4_window7_224.pth), a timm .safetensors / .pth file or an "
            ".npz of the state_dict."
        )
    try:
        return name, convert.load_torch_file(name)
    except CheckpointError:  # its reader package missing: the message says what to install
        raise
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, pickle.UnpicklingError) as e:
        raise CheckpointError(
            f"pretrained {name} cannot be read ({type(e).__name__}: {e}). A file cut short or "
            "damaged: download it again; a training checkpoint that holds more than tensors (which "
            "a safe load refuses): save its weights alone, e.g. torch.save(checkpoint['model'], "
            "path), or as an .npz of the state_dict."
        ) from e


_BLOCK = r"layers\.(\d+)\.blocks\.(\d+)\."  # a block's state_dict keys, in either layout


def _model_text(embed_dim, depths, num_heads, patch_size, mlp_ratio) -> str:
    """Swin's arguments that decide its params' shapes, in the words of the messages."""
    return (
        f"embed_dim {embed_dim}, depths {tuple(depths)}, num_heads {tuple(num_heads)}, "
        f"patch_size {patch_size}, mlp_ratio {mlp_ratio}"
    )


def _file_model(state: Mapping[str, Any]) -> str:
    """The Swin arguments a state_dict's shapes show (either layout), for a message; '' when it
    lacks a tensor they are read from."""
    blocks = [tuple(map(int, m.groups())) for k in state if (m := re.match(_BLOCK, k))]
    try:
        embed = state["patch_embed.proj.weight"].shape  # (embed_dim, 3, patch, patch)
        depths = [len({j for i, j in blocks if i == s}) for s in range(max(blocks)[0] + 1)]
        table = "layers.{}.blocks.0.attn.relative_position_bias_table"  # (positions, heads)
        heads = [state[table.format(s)].shape[1] for s in range(len(depths))]
        hidden = state["layers.0.blocks.0.mlp.fc1.weight"].shape[0]
    except (KeyError, IndexError, ValueError):
        return ""
    return _model_text(embed[0], depths, heads, embed[-1], hidden / embed[0])


def _match(
    name: str,
    state: Mapping[str, Any],
    model: swin.SwinTransformer,
    target: Mapping[tuple[str, ...], Any],
    bias_resize: str,
    load_head: bool,
) -> tuple[dict[tuple[str, ...], Any], LoadReport]:
    """Each canonical path of `target` -> the source's value, resized, or (new) the target's own."""
    layout = convert.detect_layout(state)
    pairs, skipped = convert.pair_params(state, target, layout)
    stages = [int(m[1]) for k in state if (m := re.match(_BLOCK, k))]
    fewer_stages = len(model.depths) < max(stages, default=-1) + 1
    out, loaded, resized, new, unfit = {}, [], [], [], []  # unfit: (top-level name, what)
    for pair in pairs:
        path, src, want = pair.path, pair.value, pair.shape
        flax_path, kind, found = "/".join(path), path[-1], src is not None
        # A fresh init: the head unless asked for, the norm of a shorter model, an
        # absolute_pos_embed the source lacks (ape added: as the official strict=False leaves it).
        renewable = (
            (path[0] == "head" and not load_head)
            or (path[0] == "norm" and fewer_stages)
            or (kind == "absolute_pos_embed" and not found)
        )
        if pair.fits and (path[0] != "head" or load_head):
            out[path] = pair.flax_value()
            loaded.append(flax_path)
        elif found and kind == "relative_position_bias_table" and src.shape[1:] == want[1:]:
            out[path] = resize_bias_table(src, (math.isqrt(want[0]) + 1) // 2, bias_resize)
            resized.append((flax_path, tuple(src.shape), want))
        elif found and kind == "absolute_pos_embed" and src.ndim == 3 and src.shape[2] == want[2]:
            out[path] = resize_pos_embed(src, model.stage_specs()[0].input_resolution)
            resized.append((flax_path, tuple(src.shape), want))
        elif renewable:  # a fresh init; the source tensor, if any, is reported as skipped
            out[path] = target[path]
            new.append(flax_path)
            if found:
                skipped.append(pair.key)
        elif not found:
            unfit.append((path[0], f"{pair.key} missing (the model needs {want})"))
        else:
            shape = tuple(src.shape)
            unfit.append((path[0], f"{pair.key} of shape {shape} where the model needs {want}"))
    errors = [what for _, what in unfit]
    if unfit and all(top == "head" for top, _ in unfit):  # the head alone, asked for (load_head)
        raise CheckpointError(
            f"config.pretrained_head: the head of pretrained {name} does not fit this model's "
            f"{model.num_classes} classes ({'; '.join(errors)}). Leave pretrained_head out for a "
            f"new head, or give a file of a model with {model.num_classes} classes."
        )
    if errors:
        m, theirs = model, _file_model(state)
        ours = _model_text(m.embed_dim, m.depths, m.num_heads, m.patch_size, m.mlp_ratio)
        shown = "; ".join(errors[:4]) + (f"; and {len(errors) - 4} more" if len(errors) > 4 else "")
        count = f"{len(errors)} params do" if len(errors) > 1 else "1 param does"
        raise CheckpointError(
            f"pretrained {name} ({layout} layout) does not fit the model of this config ({ours}"
            f"{f'; the file holds {theirs}' if theirs else ''}): {count} not fit: {shown}. Only bias "
            "tables, absolute_pos_embed and the head (unless config.pretrained_head) adapt; set "
            "config.model to the checkpoint's model (configs/finetune.py holds Swin-T's) or give a "
            "checkpoint of this one."
        )
    # The source's buffers: of a block this model has, not needed (it computes its own); of a
    # block it lacks (a stage left out), skipped with the rest of that block.
    ours = {f"layers.{i}.blocks.{j}." for i, depth in enumerate(model.depths) for j in range(depth)}
    theirs = [k for k in state if k.endswith(convert.BUFFER_SUFFIXES)]
    lacking = [k for k in theirs if k.rpartition("attn")[0] not in ours]  # 'layers.0.blocks.1.'
    skipped = tuple(sorted(skipped + lacking))
    buffers = len(theirs) - len(lacking)
    done = tuple(loaded), tuple(resized), tuple(new)
    return out, LoadReport(name, layout, *done, skipped, buffers, bias_resize)


def read_pretrained(
    path: str | os.PathLike, model: swin.SwinTransformer, *, load_head: bool = False
) -> dict[str, np.ndarray]:
    """The state_dict of config.pretrained's file, refused unless it fits `model` by shape alone:
    a run checks it before it builds anything, then passes it to `load_pretrained`."""
    if os.path.isdir(path):
        raise ConfigError(f"config.pretrained: {pretrained_folder(os.fspath(path))}")
    if not os.path.isfile(path):
        raise ConfigError(
            f"config.pretrained: {path} does not exist. Download a Swin checkpoint on a machine "
            "with internet (e.g. https://github.com/SwinTransformer/storage/releases/download/"
            "v1.0.0/swin_tiny_patch4_window7_224.pth) and pass its path, or unset it "
            "(--config.pretrained=) to train from scratch."
        )
    name, state = _read(path, None)
    target = traverse_util.flatten_dict(param_shapes(model.clone(scan_blocks=False, remat="none")))
    _match(name, state, model, target, "bicubic", load_head)
    return state


def load_pretrained(
    source: str | os.PathLike | Mapping[str, Any],
    model: swin.SwinTransformer,
    params: Any,
    *,
    bias_resize: str = "bicubic",
    load_head: bool = False,
    name: str | None = None,
) -> tuple[dict[str, Any], LoadReport]:
    """Pretrained weights in place of `params` (the fresh init of `model`, in its own layout).

    source: a state_dict file (`convert.load_torch_file`) or dict, of either layout.
    bias_resize: 'bicubic' (official Swin) or 'geometric' (timm), for bias tables of another window.
    load_head: copy the source classifier, which must fit (default: a new head, fresh init).
    name: what the report and errors call a state_dict given as such.
    Returns (params in `model`'s layout, as jax arrays; the report, whose `summary()` a run logs).
    """
    if bias_resize not in BIAS_RESIZE_METHODS:
        raise ValueError(f"bias_resize must be one of {BIAS_RESIZE_METHODS}, got {bias_resize!r}.")
    name, state = _read(source, name)
    init = scan_layout.unstack_block_params(params, model) if model.scan_blocks else params
    target = traverse_util.flatten_dict(dict(init))
    out, report = _match(name, state, model, target, bias_resize, load_head)
    result = traverse_util.unflatten_dict(
        {p: jnp.asarray(np.asarray(v), dtype=target[p].dtype) for p, v in out.items()}
    )
    if model.scan_blocks:
        result = scan_layout.stack_block_params(result, model)
    return result, report
