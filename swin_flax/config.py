"""The schema of a swin-flax run: every field and its default (`configs/` override them), and
`validate()`, run once at the entry point so that a bad value fails in seconds naming the field."""

from __future__ import annotations

import copy
import difflib
import itertools
import math
import os
import re
import shlex
import sys
from collections.abc import Callable, Mapping
from typing import Any

from ml_collections import ConfigDict, config_dict

from swin_flax.errors import ConfigError

SWEEPABLE = ("learning_rate", "weight_decay", "warmup_lr_init", "lr_min")


def not_sweepable(field: str) -> str:
    """Why config.sweep.<field> is refused, and what to give instead."""
    if field == "seed":
        return (
            "seeds are not swept: --config.num_runs=N trains N runs of seeds seed, seed + 1, ... "
            "(with a sweep, N for each value)."
        )
    close = difflib.get_close_matches(field, SWEEPABLE, n=1)  # for a field there is none of
    known = field in flatten(default_config().to_dict())
    guess = f" (did you mean {close[0]}?)" if close and not known else ""
    return (
        f"only {', '.join(SWEEPABLE)} can be swept in one process{guess}: each run's value lives in "
        "the optimiser's state. Any other field needs a run of its own (one process per value, "
        "each with its own --workdir)."
    )


def default_config() -> ConfigDict:
    """All fields with the defaults of the PyTorch originals (torch.optim.AdamW, official Swin)."""
    c = ConfigDict()
    # Model initialisation and dropout / stochastic depth; run k of num_runs uses seed + k.
    c.seed = 0
    # Data order, RandAugment and mixing draws; None: `seed`. Shared by every run unless per_run_data.
    c.data_seed = config_dict.placeholder(int)

    # Many runs in one process (vmapped over a leading run axis): num_runs seeds, each crossed with
    # every combination of the sweep's values. Only the optimiser's numbers can be swept: anything
    # that changes a shape (model, batch) needs a process of its own.
    c.num_runs = 1
    c.sweep = ConfigDict({f: () for f in SWEEPABLE})
    c.per_run_data = False  # True: run k reads its own stream (data_seed + k): N input pipelines

    # Data: source, preprocessing, augmentation.
    c.dataset = "cifar10"  # 'cifar10' | 'cifar100' | 'synthetic'
    c.data_dir = config_dict.placeholder(str)  # tfds data directory (None: tfds' default)
    # A local CIFAR archive or folder; when set, tfds is unused.
    c.archive = config_dict.placeholder(str)
    c.synthetic_train_examples = 50_000
    c.synthetic_test_examples = 10_000
    c.normalize_mean = (0.5, 0.5, 0.5)  # applied after /255 (train and test)
    c.normalize_std = (0.5, 0.5, 0.5)
    c.randaugment = ""  # timm RandAugment config string, e.g. 'rand-m9-mstd0.5'; '' turns it off
    c.randaugment_img_mean = (124, 116, 104)  # fill colour of geometric ops (timm hparams img_mean)
    # timm hparams translate_const: pixels of TranslateX/Y at magnitude 10. The default op set uses
    # TranslateX/YRel (translate_pct 0.45) instead, so, as in timm, it changes nothing there.
    c.randaugment_translate_const = 117
    c.mix = config_dict.create(
        mixup_alpha=0.0,  # timm Mixup arguments; mixing is on when either alpha is > 0
        cutmix_alpha=0.0,
        cutmix_minmax=config_dict.placeholder(tuple),
        prob=1.0,
        switch_prob=0.5,
        mode="batch",
        label_smoothing=0.0,  # also applied to the one-hot targets when mixing is off
    )

    # Model: the official SwinTransformer's constructor arguments, by name.
    c.model = config_dict.create(
        img_size=32,
        patch_size=4,
        in_chans=3,
        num_classes=10,
        embed_dim=96,
        depths=(2, 2, 18),
        num_heads=(3, 6, 12),
        window_size=8,
        mlp_ratio=4.0,
        qkv_bias=True,
        qk_scale=config_dict.placeholder(float),
        drop_rate=0.0,
        attn_drop_rate=0.0,
        drop_path_rate=0.1,
        ape=False,
        patch_norm=True,
    )
    c.dtype = "float32"  # compute dtype: 'float32' | 'bfloat16' (parameters stay float32)
    # What each block keeps for the backward pass: 'dots' the outputs of its dense layers, the
    # element-wise ops recomputed (less memory than 'none' and faster here: docs/benchmarks.md);
    # 'full' only its input (least memory, each block computed twice); 'none' everything.
    c.remat = "dots"
    c.scan_blocks = True  # nn.scan over the blocks of stages of 3+ blocks: compile flat in depth

    # Starting point: None trains from scratch; else a PyTorch Swin checkpoint (.pth / .safetensors,
    # official or timm layout) loaded into the model, the head and mismatched tables handled.
    c.pretrained = config_dict.placeholder(str)
    c.pretrained_head = False  # True: keep its classifier too (it must fit: as many classes)

    # Optimiser: torch.optim.AdamW semantics.
    c.learning_rate = 1e-3
    c.b1 = 0.9
    c.b2 = 0.999
    c.eps = 1e-8
    c.weight_decay = 0.01
    c.weight_decay_exempt = False  # True: no decay on norms, biases and bias tables (official Swin)
    c.grad_clip_norm = 0.0  # 0 turns clipping off
    # Layer-wise lr decay for fine-tuning (BEiT / Swin-v2 style); 1.0 turns it off.
    c.layer_decay = 1.0

    # Schedule: 'constant' | 'cosine_epoch' (timm CosineLRScheduler stepped once per epoch)
    # | 'cosine_step' (the same curve evaluated every step).
    c.schedule = "constant"
    c.warmup_epochs = 0
    c.warmup_lr_init = 0.0
    c.lr_min = 0.0
    c.cosine_epochs = 300  # timm t_initial
    c.warmup_prefix = True

    # Loop.
    c.batch_size = 1024  # global, over all hosts and devices
    c.eval_batch_size = 1024
    c.num_epochs = 300
    c.prefetch_batches = 2

    # Logging and checkpoints.
    c.log_every_steps = 50
    c.checkpoint_every_epochs = 1
    c.keep_checkpoints = 3
    # best/ holds the best epoch's params (what evaluate, predict and export read, as float32):
    # 'bfloat16' halves it on disk, each weight rounded to bfloat16; latest/ stays exact.
    c.best_params_dtype = "float32"
    # A jax.profiler trace of this many train steps (those after the process's first three, which
    # compile and warm up) in WORKDIR/plugins/profile, for TensorBoard's profile tab; 0: none.
    c.profile_steps = 0
    return c


DATASETS = ("cifar10", "cifar100", "synthetic")
SCHEDULES = ("constant", "cosine_epoch", "cosine_step")
DTYPES = ("float32", "bfloat16")


def run_grid(c: ConfigDict) -> list[dict[str, Any]]:
    """Each run's own field values, in run order: every combination of the swept values (the first
    slowest), each for seeds seed + k, k < num_runs, with the data seed (+ k with per_run_data)."""
    swept = [f for f in SWEEPABLE if c.sweep[f]]
    grid = [dict(zip(swept, v)) for v in itertools.product(*(c.sweep[f] for f in swept))]
    data = data_seed(c)
    return [
        {**point, "seed": c.seed + k, "data_seed": data + k if c.per_run_data else data}
        for point in grid
        for k in range(c.num_runs)
    ]


def data_seed(c: ConfigDict) -> int:
    """The seed of the data order and augmentation draws: config.data_seed, else config.seed."""
    return c.seed if c.data_seed is None else c.data_seed


def single_run(c: ConfigDict, values: Mapping[str, Any]) -> ConfigDict:
    """The config of one run of `c` (`values`: one entry of run_grid) as a process of its own."""
    single = copy.deepcopy(c)
    single.update(values, num_runs=1, sweep={f: () for f in SWEEPABLE})
    return single


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'mix': {'prob': 1.0}} -> {'mix.prob': 1.0}; lists (JSON's tuples) become tuples again."""
    out = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = tuple(v) if isinstance(v, list) else v
    return out


def from_record(recorded: Mapping[str, Any]) -> dict[str, Any]:
    """A run's config.json flattened over the defaults (an older run's missing field ran as its
    default); a boolean `remat`, from before it named a policy, reads as "full" / "none"."""
    flat = {**flatten(default_config().to_dict()), **flatten(recorded)}
    if isinstance(flat["remat"], bool):
        flat["remat"] = "full" if flat["remat"] else "none"
    return flat


def _with_sub_dicts(fields: set[str]) -> set[str]:
    """Dotted field names with their sub-dicts' names added ('mix.prob': 'mix' too)."""
    return fields | {k.rsplit(".", 1)[0] for k in fields if "." in k}


def _did_you_mean(field: str, fields: set[str]) -> str:
    """' (did you mean config.X?)': closest last name (of two, the shallower), else whole name."""
    by_name = {f.rpartition(".")[2]: f for f in sorted(fields, key=lambda f: -f.count("."))}
    close = difflib.get_close_matches(field.rpartition(".")[2], by_name, n=1)
    close = [by_name[c] for c in close] or difflib.get_close_matches(field, fields, n=1)
    return f" (did you mean config.{close[0]}?)" if close else ""


def _is_int(value: Any) -> bool:
    """An integer, and not a bool (True is an int to Python, and passes ConfigDict's int fields)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _require(ok: bool, field: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"config.{field}: {message}")


PRETRAINED_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".safetensors", ".npz")  # state_dict files


def pretrained_folder(path: str) -> str:
    """Why a folder given as config.pretrained is refused, naming the checkpoint files it holds
    (a download saved as e.g. swin-tiny/model.safetensors)."""
    said = f"{path} is a folder: give the checkpoint file itself ({', '.join(PRETRAINED_SUFFIXES)})"
    try:
        held = sorted(f for f in os.listdir(path) if f.endswith(PRETRAINED_SUFFIXES))
    except OSError:  # a folder this user may not list: said as a folder all the same
        held = []
    if held:
        said += f" (it holds {', '.join(held[:3])}{', ...' if len(held) > 3 else ''}: e.g. "
        said += f"--config.pretrained={shlex.quote(os.path.join(path, held[0]))})"
    return said + "."


def _not_a_state_dict(path: str) -> str:
    """Why config.pretrained's `path` is refused; for a run of scripts/main.py (its folder, or
    anything in its checkpoints/), how to export it first."""
    from swin_flax import runfiles  # noqa: PLC0415 (etils: only for this message)

    def shown(folder) -> str:  # relative as given, unless that climbs out of the current folder
        relative = "://" not in path and not os.path.isabs(path)
        text = os.path.relpath(folder) if relative else str(folder)
        return text if not text.startswith(".") else str(folder)

    # A run holds checkpoints/ beside its config.json (a model hub's download holds a config.json).
    if runfiles.is_run_folder(path) and os.path.isdir(os.path.join(path, runfiles.CHECKPOINTS)):
        run = shown(runfiles.absolute(path))
        what, source = "a run", f"--workdir {shlex.quote(run)}"
    elif (owner := runfiles.enclosing_run(path)) is not None and runfiles.is_run_folder(owner):
        run = shown(owner)
        what, source = f"in the checkpoints of the run {run}", f"--workdir {shlex.quote(run)}"
        parts = runfiles.absolute(path).relative_to(owner / runfiles.CHECKPOINTS).parts
        step = owner / runfiles.CHECKPOINTS / parts[0] / parts[1] if len(parts) > 1 else None
        if step and runfiles.is_step_folder(step):
            source = f"--checkpoint {shlex.quote(shown(step))}"
    elif os.path.isdir(path):
        return pretrained_folder(path)
    else:
        return (
            f"{path} is not a PyTorch checkpoint ({', '.join(PRETRAINED_SUFFIXES[:-1])}) or an "
            ".npz of a state_dict."
        )
    return (
        f"{path} is {what} of scripts/main.py, not a state_dict file: export its weights first "
        f"(python scripts/export.py {source} --out {run}.safetensors) and give that file."
    )


def mixes(mix: Any) -> bool:
    """Whether timm's Mixup mixes batches at all; `mix`: config.mix or a data.mix.MixConfig."""
    return mix.prob > 0 and (
        mix.mixup_alpha > 0 or mix.cutmix_alpha > 0 or mix.cutmix_minmax is not None
    )


def _check(field: str, check: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """`check(*args, **kwargs)`, a ValueError it raises as a ConfigError naming `field`."""
    try:
        check(*args, **kwargs)
    except ValueError as e:
        raise ConfigError(f"config.{field}: {e}") from None


def validate(c: ConfigDict, *, num_devices: int | None = None, num_hosts: int = 1) -> None:
    """ConfigError naming the first bad field, before any data or compile; `num_devices`,
    `num_hosts`: of the process group that trains (None: any device count)."""
    leaves, known_leaves = set(flatten(c.to_dict())), set(flatten(default_config().to_dict()))
    keys, known = _with_sub_dicts(leaves), _with_sub_dicts(known_leaves)
    if swept := sorted(k for k in keys if k.startswith("sweep.") and k[6:] not in SWEEPABLE):
        raise ConfigError(f"config.{swept[0]}: {not_sweepable(swept[0][6:])}")
    # A misspelt sub-dict is named once, not with each of its fields.
    if unknown := sorted(k for k in keys - known if k.rpartition(".")[0] not in keys - known):
        named = ", ".join(
            f"config.{k}{_did_you_mean(k, known_leaves if k in leaves else known - known_leaves)}"
            for k in unknown
        )
        raise ConfigError(
            f"unknown config field(s) {named}: check the spelling against "
            "swin_flax/config.py, which lists every field."
        )
    if missing := sorted(known - keys):
        owner = missing[0].rpartition(".")[0]
        if owner in keys:  # the sub-dict is there, without this field: a whole dict replaced it
            given = min((k for k in leaves if k.startswith(f"{owner}.")), default=missing[0])
            raise ConfigError(
                f"config.{missing[0]}: missing: config.{owner} was replaced by a dict without it. "
                f"Set the fields you change one by one (c.{given} = ...) rather than replacing "
                f"c.{owner}."
            )
        raise ConfigError(f"config.{missing[0]}: missing; start configs from default_config().")

    _require(c.dataset in DATASETS, "dataset", f"{c.dataset!r} is not one of {DATASETS}.")
    if c.archive:
        from swin_flax.data import archives  # noqa: PLC0415 (lazy: keeps config import light)

        _require(
            c.dataset in archives.DATASETS,
            "archive",
            f"{c.archive} is set but dataset={c.dataset!r} is not read from archives (only "
            f"{', '.join(archives.DATASETS)} are): unset it (--config.archive=), or set "
            "--config.dataset to one of those to read the archive.",
        )
        _require(
            "://" not in c.archive,
            "archive",
            f"{c.archive} is a URL, but archives are read from local paths only: copy it to this "
            "machine and give its local path.",
        )
        _require(
            not c.data_dir,
            "data_dir",
            f"{c.data_dir} is set with config.archive, which is read instead (tensorflow-datasets "
            "and its data_dir are unused then): give one of the two (--config.data_dir= or "
            "--config.archive= unsets one).",
        )
    positive = (
        "num_epochs batch_size eval_batch_size log_every_steps checkpoint_every_epochs "
        "keep_checkpoints synthetic_train_examples synthetic_test_examples prefetch_batches num_runs"
    )
    for f in positive.split():
        v = c[f]
        _require(_is_int(v) and v > 0, f, f"must be a positive integer, got {v!r}.")
    if num_devices is not None:
        for f in ("batch_size", "eval_batch_size"):
            _require(
                c[f] % num_devices == 0,
                f,
                f"{c[f]} is not divisible by the {num_devices} devices JAX sees; choose a multiple "
                f"of {num_devices}.",
            )
    for f, v in (("seed", c.seed), ("data_seed", data_seed(c))):
        _require(
            _is_int(v) and v >= 0 and v + c.num_runs <= 2**32,
            f,
            f"must be an integer in [0, 2**32 - num_runs] (numpy's and JAX's seed range), got {v!r}.",
        )
    for f in ("normalize_mean", "normalize_std", "randaugment_img_mean"):
        _require(len(c[f]) == 3, f, f"needs 3 values (one per RGB channel), got {c[f]!r}.")
    pixel_scale = [f for f in ("normalize_mean", "normalize_std") if max(c[f]) > 1]  # both named
    _require(
        not pixel_scale,
        " and config.".join(pixel_scale),
        "values apply to pixels scaled to [0, 1] (after /255), got "
        f"{' and '.join(repr(tuple(c[f])) for f in pixel_scale)}. For pixel-scale values (as "
        "flax's ImageNet example gives them) divide by 255: "
        f"{' and '.join(repr(tuple(round(v / 255, 4) for v in c[f])) for f in pixel_scale)}.",
    )
    _require(all(s > 0 for s in c.normalize_std), "normalize_std", "values must be > 0.")
    _require(
        c.randaugment_translate_const >= 0,
        "randaugment_translate_const",
        f"is in pixels (TranslateX/Y at magnitude 10): must be >= 0, got "
        f"{c.randaugment_translate_const!r}.",
    )
    _require(
        all(0 <= v <= 255 for v in c.randaugment_img_mean),
        "randaugment_img_mean",
        f"values are pixel values in [0, 255], got {c.randaugment_img_mean!r}.",
    )

    for f in (
        "learning_rate", "b1", "b2", "eps", "weight_decay", "grad_clip_norm", "lr_min",
        "warmup_lr_init", "mix.mixup_alpha", "mix.cutmix_alpha",
    ):  # fmt: skip
        _require(math.isfinite(c[f]), f, f"must be a finite number, got {c[f]!r}.")
    _require(c.learning_rate > 0, "learning_rate", f"must be > 0, got {c.learning_rate}.")
    _require(
        0 <= c.b1 < 1 and 0 <= c.b2 < 1, "b1", f"b1 and b2 must lie in [0, 1), got {c.b1}, {c.b2}."
    )
    _require(c.eps > 0, "eps", f"must be > 0, got {c.eps}.")
    _require(c.weight_decay >= 0, "weight_decay", f"must be >= 0, got {c.weight_decay}.")
    _require(c.grad_clip_norm >= 0, "grad_clip_norm", "must be >= 0 (0 turns clipping off).")
    _require(c.schedule in SCHEDULES, "schedule", f"{c.schedule!r} is not one of {SCHEDULES}.")
    _require(c.warmup_epochs >= 0, "warmup_epochs", f"must be >= 0, got {c.warmup_epochs}.")
    unread = [f for f in ("warmup_epochs", "warmup_lr_init", "lr_min") if c[f]]
    if c.schedule == "constant" and unread:  # all named at once
        also = "".join(f"; nor has {f}={c[f]}" for f in unread[1:])
        raise ConfigError(
            f"config.{unread[0]}: {c[unread[0]]} has no effect with schedule='constant'{also}: set "
            f"{'them' if also else 'it'} to 0, or schedule='cosine_epoch' / 'cosine_step' for a "
            "warmup and a decay."
        )
    _require(c.cosine_epochs > 0, "cosine_epochs", f"must be > 0, got {c.cosine_epochs}.")
    _require(
        c.lr_min >= 0 and c.warmup_lr_init >= 0, "lr_min", "lr_min and warmup_lr_init must be >= 0."
    )
    for f in ("dtype", "best_params_dtype"):
        _require(c[f] in DTYPES, f, f"{c[f]!r} is not one of {DTYPES}.")

    m = c.mix
    _require(m.mode == "batch", "mix.mode", f"only 'batch' is supported, got {m.mode!r}.")
    _require(m.mixup_alpha >= 0 and m.cutmix_alpha >= 0, "mix.mixup_alpha", "alphas must be >= 0.")
    for f in ("prob", "switch_prob"):
        _require(0 <= m[f] <= 1, f"mix.{f}", f"must lie in [0, 1], got {m[f]}.")
    _require(0 <= m.label_smoothing < 1, "mix.label_smoothing", "must lie in [0, 1).")
    minmax = m.cutmix_minmax
    _require(
        minmax is None or (len(minmax) == 2 and 0 <= minmax[0] < minmax[1] <= 1),
        "mix.cutmix_minmax",
        f"must be (min, max) with 0 <= min < max <= 1 (or None), got {minmax!r}.",
    )
    per_host = c.batch_size // num_hosts
    if mixes(m) and per_host % 2:
        what = (
            f"gives each of the {num_hosts} hosts {per_host} images" if num_hosts > 1 else "is odd"
        )
        raise ConfigError(
            f"config.batch_size: {c.batch_size} {what}, and CutMix/Mixup mix each host's batch with "
            "itself reversed (timm's Mixup asserts an even batch): choose an even batch per host, or "
            "leave mixing off (config.mix)."
        )

    _require(
        _is_int(c.profile_steps) and c.profile_steps >= 0,
        "profile_steps",
        f"must be an integer >= 0 (0: no profile), got {c.profile_steps!r}.",
    )
    for f in SWEEPABLE:
        values = c.sweep[f]
        # A command-line tuple that is no Python literal ('(nan,1)') arrives as a 1-tuple of its text.
        one_text = isinstance(values, tuple) and len(values) == 1 and isinstance(values[0], str)
        _require(
            isinstance(values, tuple | list)
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
            and all(abs(v) <= sys.float_info.max for v in values)  # finite; no float overflow
            and len(set(values)) == len(values),
            f"sweep.{f}",
            f"must be a tuple of distinct finite numbers, e.g. --config.sweep.{f}='(5e-4,1e-3)' "
            f"(an empty tuple: not swept), got {(values[0] if one_text else values)!r}.",
        )
    if c.num_runs > 1 or any(c.sweep.values()):
        # Each sweep point's numbers, checked as a single run's would be (the runs of one point
        # differ only in seeds, whose range is checked above).
        for values in run_grid(c)[:: c.num_runs]:
            try:
                validate(single_run(c, values), num_devices=num_devices, num_hosts=num_hosts)
            except ConfigError as e:
                field, _, reason = str(e).removeprefix("config.").partition(": ")
                if field not in c.sweep:
                    raise
                reason = re.sub(r", got [^,]*\.$", ".", reason)  # the value is named first
                value = f"{values[field]!r} "
                raise ConfigError(
                    f"config.sweep.{field}: {value}{reason.removeprefix(value)}"
                ) from None
        return

    from swin_flax.data import sources  # noqa: PLC0415 (lazy: keeps config import light)

    n_classes = sources.num_classes(c.dataset)
    _require(
        c.model.num_classes == n_classes,
        "model.num_classes",
        f"{c.dataset} has {n_classes} classes but the model has {c.model.num_classes}; set "
        f"--config.model.num_classes={n_classes}.",
    )
    _require(
        c.model.in_chans == 3,
        "model.in_chans",
        f"{c.dataset} images have 3 channels (RGB) but the model takes {c.model.in_chans}; set "
        "--config.model.in_chans=3.",
    )
    if c.randaugment:
        from swin_flax.data import randaugment_params as randaugment  # noqa: PLC0415

        _check("randaugment", randaugment.parse_config_str, c.randaugment)

    from swin_flax.models import plan  # noqa: PLC0415 (the model's checks, without jax)

    _check("remat", plan.check_remat, c.remat)
    _check("model", plan.check_arguments, **c.model.to_dict())
    size = c.model.img_size  # CutMix cuts the resized images
    _require(
        minmax is None or not mixes(c.mix) or int(size * minmax[0]) < int(size * minmax[1]),
        "mix.cutmix_minmax",
        f"{tuple(minmax or ())} leaves no box size for a {size}x{size} image (int(size * min) "
        "must be < int(size * max)); widen the range.",
    )

    # Fine-tuning from a pretrained checkpoint.
    _require(
        isinstance(c.layer_decay, int | float) and 0 < c.layer_decay <= 1,
        "layer_decay",
        f"must lie in (0, 1] (1.0 turns layer-wise lr decay off), got {c.layer_decay!r}.",
    )
    # The file itself is checked where a starting run reads it (finetune.read_pretrained): tools
    # and resumed runs never read it.
    if c.pretrained and not c.pretrained.endswith(PRETRAINED_SUFFIXES):
        raise ConfigError(f"config.pretrained: {_not_a_state_dict(c.pretrained)}")
    _require(
        c.pretrained or not c.pretrained_head,
        "pretrained_head",
        "keeps the classifier of config.pretrained, which is not set: set both, or leave "
        "pretrained_head out.",
    )
