"""A finished run's config and checkpoint, scored on the test split: one run, or several stacked
runs' ensemble (the mean of their softmax probabilities). TensorFlow is imported only to read data
or write summaries, so that a wrong --workdir or --checkpoint is reported in seconds."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import json
import os
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from etils import epath

from swin_flax import build, checkpoints, runfiles, runs, steps
from swin_flax.config import DATASETS, PRETRAINED_SUFFIXES, default_config, from_record
from swin_flax.errors import CheckpointError, DataError, in_run_tool_flags


@dataclasses.dataclass(frozen=True)
class Choice:
    """Of a checkpoint's stacked runs `names` (none for a single run's), the `indices` used (several:
    their ensemble); `each_run`: each one's scores wanted too."""

    names: tuple[str, ...] = ()
    indices: tuple[int, ...] = ()
    each_run: bool = False

    def describe(self, best_epochs: Sequence[int] | None = None) -> str:
        """The runs used, for a header line ('' for a single run's), with their `best_epochs`."""
        if not self.names:
            return ""
        if len(self.indices) == 1:
            k = self.indices[0]
            text = f"run {k} (of 0-{len(self.names) - 1}), {self.names[k]}"
            return text + (f", its best epoch {best_epochs[k]}" if best_epochs else "")
        used = f"its {len(self.names)} runs"
        if len(self.indices) < len(self.names):  # some of them: a sweep point's seeds
            used = f"{len(self.indices)} of {used}, {self.label()}"
        text = f"the ensemble of {used} (the mean of their probabilities)"
        epochs = ", ".join(str(best_epochs[k]) for k in self.indices) if best_epochs else ""
        return text + (f", their best epochs {epochs}" if epochs else "")

    def used(self) -> dict[str, Any]:
        """For a report file: {"run": name}, {"ensemble": names}, or {} (a single run's)."""
        if len(self.indices) == 1:
            return {"run": self.names[self.indices[0]]}
        return {"ensemble": [self.names[k] for k in self.indices]} if self.indices else {}

    def label(self) -> str:
        """The name parts the chosen runs share (a sweep point's 'learning_rate=0.001'); '' for all."""
        if len(self.indices) == len(self.names):
            return ""
        chosen = [self.names[k].split(",") for k in self.indices]
        return ",".join(p for p in chosen[0] if all(p in parts for parts in chosen))


@dataclasses.dataclass(frozen=True)
class Run:
    """A run's folder and config, a checkpoint step folder with its record (`meta`), the runs used."""

    workdir: epath.Path
    checkpoint: epath.Path
    config: ml_collections.ConfigDict = dataclasses.field(repr=False)  # a notebook shows the rest
    meta: dict[str, Any] = dataclasses.field(repr=False)
    choice: Choice = Choice()

    def describe(self) -> str:
        """The scripts' checkpoint line: its epoch and step and the runs used (of a best/ checkpoint
        of several runs, each one's best epoch, whose params it holds)."""
        if best_epochs := self._best_epochs():
            return f"{self.checkpoint}, {self.choice.describe(best_epochs)}"
        used = f", {self.choice.describe()}" if self.choice.names else ""
        step, per_epoch = self.meta.get("step"), self.meta.get("steps_per_epoch")
        when = f"epoch {self.meta.get('epoch')}, step {step}"
        if step and per_epoch and step % per_epoch:  # saved by a stop within an epoch
            when = f"step {step % per_epoch} of epoch {step // per_epoch + 1}, global step {step}"
        return f"{self.checkpoint} ({when}){used}"

    def step(self) -> int:
        """The scores' TensorBoard step: the checkpoint's; of one run of a best/ checkpoint of several,
        the end of its best epoch (the checkpoint's step is the last epoch any run improved)."""
        best_epochs, per_epoch = self._best_epochs(), self.meta.get("steps_per_epoch")
        if best_epochs and len(self.choice.indices) == 1 and per_epoch:
            return int(best_epochs[self.choice.indices[0]]) * int(per_epoch)
        return int(self.meta.get("step") or 0)

    def _best_epochs(self) -> list[int] | None:
        """Each run's best epoch, whose params a best/ checkpoint of several runs holds."""
        best_epochs = self.meta.get("best_epoch")
        best = self.checkpoint.parent.name == "best" and self.choice.names
        return best_epochs if best and isinstance(best_epochs, list) else None

    def members(self) -> list[Any]:
        """One params tree per chosen run, read now, in the model's own layout."""
        params, _ = load_params(self.checkpoint)
        if not self.choice.names:
            return [params]
        return [jax.tree.map(lambda x, k=k: np.asarray(x)[k], params) for k in self.choice.indices]


def choose_runs(
    run: Run, which: str | None = None, ensemble: bool = False, several: bool = True
) -> Choice:
    """The runs that --run (`which`: an index, a name, or part of one such as a swept value) and
    --ensemble choose (all by default); CheckpointError, before any params are read, if none (its
    advice offers a part of a name only if the caller uses `several` runs: export.py does not)."""
    names = tuple(run.meta.get("runs") or [])  # the stacked runs: none for a single run's
    which = which or None  # --run= (empty): not given
    if not names:
        if which is None and not ensemble:
            return Choice()
        flag = "--ensemble" if ensemble else "--run"
        raise CheckpointError(
            f"{flag} chooses among the runs of a checkpoint of several (config.num_runs, "
            f"config.sweep), but {run.checkpoint} holds the params of a single run: leave {flag} "
            "out."
        )
    if which is None:
        return Choice(names, tuple(range(len(names))), each_run=not ensemble)
    if which.isdecimal():
        chosen = (int(which),) if int(which) < len(names) else ()
    else:  # the runs whose names hold every part given
        wanted = _name_parts(which)
        chosen = tuple(k for k, n in enumerate(names) if wanted <= _name_parts(n))
    if not chosen:
        listing = ", ".join(f"{k} {n!r}" for k, n in enumerate(names))
        fix = f"an index from 0 to {len(names) - 1} or a name ({listing}), e.g. --run "
        fix += _like(which, names)
        split = [n.split(",") for n in names]  # a part of names held by several runs:
        shared = [p for p in dict.fromkeys(sum(split, [])) if sum(p in n for n in split) > 1]
        if several and shared:
            fix += f", or a part of one for the runs holding it, e.g. --run {_like(which, shared)}"
        raise CheckpointError(
            f"--run {which} names none of the {len(names)} runs of the checkpoint "
            f"{run.checkpoint}: give {fix}."
        )
    if ensemble and len(chosen) == 1:
        raise CheckpointError(
            f"--run {which} chooses one run and --ensemble the mean of several: leave --ensemble "
            "out to use that run alone, or give --run a part of a name that several runs hold (a "
            "swept value) for their ensemble alone."
        )
    return Choice(names, chosen, each_run=len(chosen) > 1 and not ensemble)


def _like(which: str, options: Sequence[str]) -> str:
    """Of `options` (run names or parts), one that holds the value --run gave (`0.002`, `lr=2e-3`:
    'learning_rate=0.002'), else the first: the example of a refusal."""
    value = _name_parts("=" + which.replace(",", "=").rpartition("=")[2]).pop()  # '=0.002'
    return next((o for o in options if any(p.endswith(value) for p in _name_parts(o))), options[0])


def _name_parts(name: str) -> set[str]:
    """A run's name as --run is matched against it: its parts in any order, its numbers written in
    any way ('seed=1,learning_rate=1e-3' names the run 'learning_rate=0.001,seed=1')."""
    parts = set()
    for part in name.split(","):
        field, eq, value = (p.strip() for p in part.partition("="))
        with contextlib.suppress(ValueError):
            value = runs.number_text(float(value))
        parts.add(field + eq + value)
    return parts


def open_run(
    workdir: str | None,
    checkpoint: str | None = None,
    which: str | None = None,
    ensemble: bool = False,
    several: bool = True,
) -> Run:
    """The run, checkpoint and runs the flags name, checked before any params are read (`several`:
    whether the caller can use several runs, as `choose_runs`)."""
    run, ckpt = resolve_checkpoint(workdir, checkpoint)
    config = load_run_config(run)
    _, meta = load_params(ckpt, meta_only=True)
    saved = meta.get("model") or {}  # a record without a field (an older one) is not refused for it
    recorded = {k: v for k, v in config.model.to_dict().items() if k in saved}
    if diffs := checkpoints.model_differences(meta, recorded, label="config.json"):
        fix = "give the --workdir of the run that wrote it, or leave --checkpoint out."
        if not checkpoint:
            fix = "a run's own config.json and checkpoints disagree only when one of them was "
            fix += "edited or copied in: restore the run's config.json."
        raise CheckpointError(
            f"the checkpoint {ckpt} was written for another model than {run}/config.json "
            f"({'; '.join(diffs)}): {fix}"
        )
    opened = Run(runfiles.absolute(run), runfiles.absolute(ckpt), config, meta)
    return dataclasses.replace(opened, choice=choose_runs(opened, which, ensemble, several))


def resolve_checkpoint(
    workdir: str | None, checkpoint: str | None
) -> tuple[epath.Path, epath.Path]:
    """(run folder, checkpoint step folder): the given checkpoint, else the run's best, else its
    latest; CheckpointError naming the flag when one names no run or no checkpoint."""
    if checkpoint:
        ckpt = epath.Path(checkpoint)
        if not ckpt.exists():
            if workdir and (meant := _within_run(epath.Path(workdir), ckpt)) is not None:
                raise CheckpointError(  # `--workdir RUN --checkpoint latest/96` (as flax's step=)
                    f"--checkpoint {ckpt} does not exist (it is a path of its own, not one within "
                    f"--workdir): did you mean --checkpoint {shlex.quote(str(meant))}?"
                )
            series = ckpt.parent  # a step's series, if it holds step folders
            held = _step_folders(series)
            if workdir and not held:  # `--workdir RUN --checkpoint [best/]100`
                named = ckpt.parent.name if ckpt.parent.name in runfiles.SERIES else "latest"
                series = epath.Path(workdir) / runfiles.CHECKPOINTS / named
                held = _step_folders(series)
            if not held:
                raise CheckpointError(f"--checkpoint {ckpt} does not exist.")
            many = len(held) > 1
            listing = f"steps {', '.join(map(str, held[:-1]))} and " if many else "step "
            raise CheckpointError(  # a step its series no longer (or never) held
                f"--checkpoint {ckpt} does not exist; {series} holds {listing}{held[-1]}: give "
                f"{'one of them, such as ' if many else ''}--checkpoint "
                f"{shlex.quote(str(series / str(held[-1])))}."
            )
        if ckpt.is_file() and ckpt.name.endswith(PRETRAINED_SUFFIXES):
            use = (  # an export of scripts/export.py, or a downloaded state_dict
                f"leave --checkpoint out (the best checkpoint of --workdir {workdir} is read)"
                if workdir
                else "give the folder of the run it came from as --workdir (its best checkpoint "
                "is read), or a step folder such as --checkpoint WORKDIR/checkpoints/best/STEP"
            )
            raise CheckpointError(
                f"--checkpoint {ckpt} is a state_dict file (as scripts/export.py writes, for "
                f"PyTorch or to fine-tune from), not a checkpoint of a run: {use}. To fine-tune "
                f"from it: scripts/main.py --config CONFIG --config.pretrained={shlex.quote(str(ckpt))}."
            )
        if not runfiles.is_step_folder(ckpt):
            up = itertools.islice(runfiles.absolute(ckpt).parents, 3)  # STEP/state/x/y
            if inside := next((p for p in up if p.name and runfiles.is_step_folder(p)), None):
                raise CheckpointError(  # its state/ or meta/, or deeper
                    f"--checkpoint {ckpt} is not a checkpoint step folder but lies inside one: "
                    f"give that folder, --checkpoint {shlex.quote(str(inside))}."
                )
            held = _step_folders(ckpt)  # a series folder's
            hint = (
                f" (its newest step: --checkpoint {shlex.quote(f'{ckpt}/{held[-1]}')})"
                if held
                else ""
            )
            raise CheckpointError(
                f"--checkpoint {ckpt} is not a checkpoint step folder: give one that holds state/ "
                f"and meta/, such as WORKDIR/checkpoints/best/STEP{hint}."
            )
        if not runfiles.absolute(ckpt).name.isdigit():  # a step folder copied under a new name
            raise CheckpointError(
                f"--checkpoint {ckpt} holds a checkpoint, but orbax reads a checkpoint's step from "
                f"its folder's name: copy it to {runfiles.absolute(ckpt).parent / 'STEP'}, STEP the "
                "global step it was saved at (its name in checkpoints/best or checkpoints/latest)."
            )
        if workdir:
            run, owner = run_folder(workdir), runfiles.enclosing_run(ckpt)
            in_a_run = owner is not None and runfiles.is_run_folder(owner)
            if in_a_run and os.path.realpath(owner) != os.path.realpath(run):  # URLs: as text
                raise CheckpointError(  # its scores would be written as this run's
                    f"--checkpoint {ckpt} belongs to the run in {owner}, not to --workdir "
                    f"{workdir}: leave --workdir out (the checkpoint's own run is read), or give "
                    "a checkpoint of that workdir."
                )
            return run, ckpt
        series = runfiles.absolute(ckpt).parent  # `cd RUN/checkpoints/best; --checkpoint 160`
        run = series.parent.parent  # WORKDIR/checkpoints/{best,latest}/STEP
        if not runfiles.is_run_folder(run):
            where = "not in a run's checkpoints/best or checkpoints/latest"
            if series.parent.name == runfiles.CHECKPOINTS:
                where = f"{run} holds no config.json"
            raise CheckpointError(
                f"--checkpoint {ckpt} is not inside a run folder ({where}): give the folder of "
                "the run that wrote it as --workdir too."
            )
        return run, ckpt
    if not workdir:
        raise CheckpointError(
            "give --workdir (the folder of a run of scripts/main.py) or --checkpoint (a checkpoint "
            "step folder such as WORKDIR/checkpoints/best/STEP)."
        )
    run = run_folder(workdir)
    for series in (checkpoints.series_dir(run, which) for which in ("best", "latest")):
        if (step := checkpoints.newest_step(series)) is not None:
            return run, series / str(step)
    raise CheckpointError(
        f"--workdir {workdir} holds no checkpoint yet (checkpoints/best or checkpoints/latest): "
        "a run writes best/ after its first epoch. Still training: wait for that epoch's end. "
        "Ended before it (killed, or a second Ctrl-C): run its command again. Or give --checkpoint."
    )


def _within_run(run: epath.Path, ckpt: epath.Path) -> epath.Path | None:
    """The step folder that a --checkpoint relative to the run (`96`, `latest`, `latest/96`,
    `checkpoints/best`) names, if one does: a series' newest step; None otherwise."""
    for base in (run, *(run / runfiles.CHECKPOINTS / s for s in ("", *runfiles.SERIES))):
        meant = base / ckpt
        if runfiles.is_step_folder(meant):
            return meant
        if held := _step_folders(meant):
            return meant / str(held[-1])
    return None


def _step_folders(series: epath.Path) -> list[int]:
    """The steps of `series` whose folders are checkpoint step folders, in order (a stray
    numbered folder is none); none for a file or an unreadable folder."""
    with contextlib.suppress(OSError):
        return sorted(
            s for s in checkpoints.steps_held(series) if runfiles.is_step_folder(series / str(s))
        )
    return []


def run_folder(workdir: str) -> epath.Path:
    """`workdir` as a run's folder, or a CheckpointError that says what it is instead."""
    run = epath.Path(workdir)
    if not run.exists():
        problem = "does not exist"
    elif not run.is_dir():
        problem = "is a file"
    elif not runfiles.is_run_folder(run):
        problem = "holds no config.json"
        if (run / "compilation_cache").is_dir():  # the scripts' first file: a run starting
            problem += " (a run writes it when its training starts: if one is starting there, wait)"
    else:
        return run
    inside = runfiles.enclosing_run(run)
    raise CheckpointError(
        f"--workdir {workdir} {problem}: give the folder of a run (the --workdir that "
        "scripts/main.py trained in)"
        + (f", here --workdir {shlex.quote(str(inside))}." if inside is not None else ".")
    )


def load_run_config(workdir: str | epath.Path) -> ml_collections.ConfigDict:
    """The config a run wrote into its workdir (config.json), over the defaults."""
    path = epath.Path(workdir) / "config.json"
    config = default_config()
    config.unlock()
    try:
        config.update_from_flattened_dict(from_record(json.loads(path.read_text())))
        # The one field read here that the checkpoint's record cannot check.
        if config.dataset not in DATASETS:
            raise ValueError(f"dataset {config.dataset!r} is not one of {DATASETS}")
        if config.archive:  # what a run recorded with both read (config.validate now refuses it)
            config.data_dir = None
    except (ValueError, KeyError, AttributeError, TypeError) as e:
        raise CheckpointError(
            f"{path} is not a config that scripts/main.py wrote ({type(e).__name__}: {e})."
        ) from None
    return config


def with_data(
    config: ml_collections.ConfigDict, *, archive: str | None = None, data_dir: str | None = None
) -> ml_collections.ConfigDict:
    """A run's config reading its data from `archive` or the tfds `data_dir` (one of the two, made
    absolute as the run recorded its own: the reports name it), for data moved since it trained."""
    config = config.copy_and_resolve_references()
    path = runfiles.config_path(archive or data_dir)
    config.archive, config.data_dir = (path, None) if archive else (None, path)
    return config


def load_params(checkpoint: epath.Path, meta_only: bool = False) -> tuple[Any, dict[str, Any]]:
    """(params as float32, whatever best_params_dtype wrote, or None when `meta_only`; JSON record)
    of one checkpoint step folder."""
    state, meta = checkpoints.read_step(checkpoint, meta_only, lambda: _other_steps(checkpoint))
    return (None if meta_only else checkpoints.as_dtype(state["params"], np.float32)), meta


def _other_steps(checkpoint: epath.Path) -> str:
    """The advice closing a damaged step's error: the other step folders its run keeps."""
    step = runfiles.absolute(checkpoint)
    root = step.parent.parent  # RUN/checkpoints, for a step of one of its series
    kept = [root / s / str(n) for s in runfiles.SERIES for n in _step_folders(root / s)]
    if not (others := [str(p) for p in kept if p != step]):
        return "No other step of its run is kept to give with --checkpoint instead."
    return f"Give another step with --checkpoint: {', '.join(others)}."


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """int64 [num_classes, num_classes]: entry (t, p) counts examples of true class t predicted p."""
    labels, predictions = np.asarray(labels).reshape(-1), np.asarray(predictions).reshape(-1)
    assert labels.shape == predictions.shape, (labels.shape, predictions.shape)
    for name, v in (("labels", labels), ("predictions", predictions)):
        if v.size and (v.min() < 0 or v.max() >= num_classes):
            raise ValueError(f"{name} must lie in [0, {num_classes}), got {v.min()}..{v.max()}.")
    counts = np.bincount(labels * num_classes + predictions, minlength=num_classes**2)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """In numpy, at the logits' own precision (float64 for exact figures)."""
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def combined_logits(logits: np.ndarray) -> np.ndarray:
    """[members, examples, classes] -> [examples, classes]: the log of the members' mean softmax
    probability (float64), whose cross-entropy is the ensemble's loss; a single member's own."""
    if len(logits) == 1:
        return logits[0]
    log_probs = log_softmax(np.asarray(logits, np.float64))
    return np.logaddexp.reduce(log_probs, axis=0) - np.log(len(logits))


def scores(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> dict[str, Any]:
    """Accuracy, top-5 accuracy, mean cross-entropy, per-class accuracy and the confusion matrix
    (rows: true)."""
    pred = logits.argmax(-1)
    confusion = confusion_matrix(labels, pred, num_classes)
    return {
        "accuracy": float((pred == labels).mean()),
        "top5_accuracy": float(steps.top_k_correct(logits, labels).mean()),
        "loss": float(-log_softmax(logits)[np.arange(len(labels)), labels].mean()),
        "num_examples": int(len(labels)),
        "per_class_accuracy": (confusion.diagonal() / np.maximum(confusion.sum(1), 1)).tolist(),
        "confusion": confusion,
    }


def eval_logits(
    config: ml_collections.ConfigDict, members: Sequence[Any]
) -> tuple[np.ndarray, np.ndarray]:
    """(logits [members, examples, classes], labels [examples]) of the test split, each image once."""
    from swin_flax.data import inputs, sources  # noqa: PLC0415 (TensorFlow: only to read data)

    n_dev = jax.local_device_count()
    config = config.copy_and_resolve_references()
    config.eval_batch_size = max(n_dev, config.eval_batch_size - config.eval_batch_size % n_dev)
    try:
        images, labels = sources.load_config_split(config, "test")
    except DataError as e:
        raise DataError(
            f"{in_run_tool_flags(e)} The test data are read where the run's config.json says "
            "(dataset, archive, data_dir) unless scripts/evaluate.py's --archive PATH or "
            "--data_dir DIR gives another place (in Python: evaluate.with_data)."
        ) from None
    test_only = inputs.Data(images[:0], labels[:0], images, labels, steps_per_epoch=0)
    apply_fn = build.model_from_config(config).apply
    logits_fn = jax.pmap(functools.partial(steps.logits, apply_fn=apply_fn), axis_name=steps.AXIS)
    replicated = [steps.replicate(params) for params in members]
    all_logits, all_labels = [], []
    for batch in inputs.eval_batches(config, test_only):
        mask = np.asarray(batch["mask"]).reshape(-1) > 0
        each = [np.asarray(logits_fn(params, batch["image"])) for params in replicated]
        all_logits.append(np.stack([x.reshape(-1, x.shape[-1])[mask] for x in each]))
        all_labels.append(np.asarray(batch["label"]).reshape(-1)[mask])
    return np.concatenate(all_logits, axis=1), np.concatenate(all_labels)


def evaluate_checkpoint(
    config: ml_collections.ConfigDict, members: Sequence[Any], choice: Choice = Choice()
) -> dict[str, Any]:
    """`scores` of `members` (`Run.members`) on the test split, with `choice.used()` and, with
    choice.each_run, "runs": each run's name, accuracy, top-5 accuracy, loss and per-class accuracy."""
    logits, labels = eval_logits(config, members)
    num_classes = config.model.num_classes
    result = scores(combined_logits(logits), labels, num_classes) | choice.used()
    if choice.each_run:
        figures = ("accuracy", "top5_accuracy", "loss", "per_class_accuracy")
        result["runs"] = []
        for k, run_logits in zip(choice.indices, logits):
            each = scores(run_logits, labels, num_classes)
            result["runs"].append({"name": choice.names[k]} | {f: each[f] for f in figures})
    return result


def runs_table(result: Mapping[str, Any]) -> str:
    """Text table of each run's test accuracy, top-5 accuracy and loss (`result["runs"]`), then the
    ensemble's, said to span the swept values when its runs hold several (names
    'learning_rate=0.001,seed=0')."""
    named = [(r["name"], r) for r in result["runs"]] + [("ensemble", result)]
    rows = [(name, r["accuracy"], r["top5_accuracy"], r["loss"]) for name, r in named]
    width = max(8, *(len(row[0]) for row in rows))
    lines = [f"{'run':<{width}}  {'accuracy':>8}  {'top-5':>8}  {'loss':>8}"]
    lines += [f"{name:<{width}}  {a:>8.4f}  {a5:>8.4f}  {loss:>8.4f}" for name, a, a5, loss in rows]
    values = [runs.values(r["name"]) for r in result["runs"]]
    swept = [k for k in values[0] if k != "seed"]
    if spans := [k for k in swept if len({v[k] for v in values}) > 1]:
        held = lambda k: "VALUE" if k in spans else runs.number_text(values[0][k])
        point = ",".join(f"{k}={held(k)}" for k in swept)
        lines.append(
            f"(the ensemble spans the swept {' and '.join(spans)} values: --run {point} scores "
            "one sweep point's runs and their ensemble)"
        )
    return "\n".join(lines)


FEW_CLASSES = 20  # up to this many: every class in the console's table, names in confusion.png
SHOWN = 5  # more classes: the console shows this many worst and best


def per_class_table(confusion: np.ndarray, class_names: Sequence[str], short: bool = False) -> str:
    """Text table: per class its index (the confusion matrix's row and column, predict's index),
    name, accuracy (recall), correct, total and most common mistake, in index order; `short`, above
    FEW_CLASSES classes: a line saying where all are, then the SHOWN worst and best by accuracy."""
    confusion = np.asarray(confusion)
    n, totals = len(class_names), confusion.sum(1)
    width = max(8, *(len(name) for name in class_names))
    lines = [
        f"{'index':>5}  {'class':<{width}}  {'accuracy':>8}  {'correct':>8}  {'total':>6}  "
        "most confused with"
    ]
    for t, name in enumerate(class_names):
        row = confusion[t]
        total, correct = int(row.sum()), int(row[t])
        most = int(np.argmax(np.where(np.arange(len(row)) == t, -1, row)))  # off the diagonal
        acc = f"{correct / total:.4f}" if total else "-"
        confused = f"{class_names[most]} ({row[most]})" if total and row[most] > 0 else "-"
        lines.append(f"{t:>5}  {name:<{width}}  {acc:>8}  {correct:>8}  {total:>6}  {confused}")
    if short and n > FEW_CLASSES:  # classes without a test image have no accuracy to rank by
        ranked = sorted(np.flatnonzero(totals), key=lambda t: confusion[t, t] / totals[t])
        worst, best = ranked[:SHOWN], ranked[SHOWN:][-SHOWN:]  # a class in one of them at most
        lines = [
            f"the {len(worst)} worst and the {len(best)} best of {n} classes by accuracy "
            f"(per_class.txt lists all {n}):",
            lines[0],
            *(lines[1 + t] for t in worst),
            f"{'...':>5}  ({n - len(worst) - len(best)} classes more)",
            *(lines[1 + t] for t in best),
        ]
    return "\n".join(lines)


def confusion_image(
    confusion: np.ndarray, class_names: Sequence[str], cell: int | None = None
) -> np.ndarray:
    """The row-normalised confusion matrix as a uint8 RGB heat map (white 0 -> dark blue 1), class
    names on both axes and percentages in the cells; above FEW_CLASSES classes, a tick per class,
    every 5th class index written (its tick longer) and a grey line before every 10th class."""
    from PIL import Image, ImageDraw, ImageFont  # noqa: PLC0415

    confusion = np.asarray(confusion, np.float64)
    n = len(confusion)
    fractions = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
    few = n <= FEW_CLASSES
    cell = cell or (44 if few else max(6, 800 // n))
    font = ImageFont.load_default(size=13)
    # Long names lose their middle, not their ends (which tell similar names apart).
    short = lambda s: s if len(s) <= 24 else s[:10] + ".." + s[-12:]
    labels = (
        dict(enumerate(map(short, class_names))) if few else {i: str(i) for i in range(0, n, 5)}
    )
    text_w = lambda s: int(np.ceil(font.getlength(s)))
    line, pad = 16, 6  # text line height, margin
    label_w = max(text_w(s) for s in labels.values())
    left = top = pad + line + pad + label_w + pad
    img = Image.new("RGB", (left + n * cell + 1, top + n * cell + 1), "white")
    draw = ImageDraw.Draw(img)

    def upright(text: str, x: int, y: int) -> None:  # text turned 90 degrees, read bottom to top
        tile = Image.new("L", (text_w(text) + 2, line), 0)
        ImageDraw.Draw(tile).text((1, 0), text, fill=255, font=font)
        tile = tile.rotate(90, expand=True)
        img.paste(Image.new("RGB", tile.size, "black"), (x, y - tile.size[1]), tile)

    white, blue = np.array([255.0, 255.0, 255.0]), np.array([8.0, 48.0, 107.0])
    grey = (200, 200, 200) if few else None  # small cells: the colour, not the lines
    for (t, p), f in np.ndenumerate(fractions):
        colour = tuple(int(round(c)) for c in white + f * (blue - white))
        x, y = left + p * cell, top + t * cell
        draw.rectangle([x, y, x + cell, y + cell], fill=colour, outline=grey)
        if few and confusion[t, p] > 0:
            ink = "white" if f > 0.5 else "black"
            xy = (x + cell / 2, y + cell / 2)
            draw.text(xy, f"{100 * f:.0f}%", fill=ink, font=font, anchor="mm")  # not a count
    centre = lambda i: int(i * cell + cell / 2)
    for i in [] if few else range(n):  # ticks outside the grid; lines through it every 10th
        x, y, length = left + centre(i), top + centre(i), pad - 1 if i in labels else 2
        draw.line([left - length, y, left - 1, y], fill="black")
        draw.line([x, top - length, x, top - 1], fill="black")
        if i % 10 == 0 and i:
            x, y, end = left + i * cell, top + i * cell, n * cell
            draw.line([x, top, x, top + end], fill=(170, 170, 170))
            draw.line([left, y, left + end, y], fill=(170, 170, 170))
    for i, s in labels.items():
        draw.text((left - pad, top + centre(i)), s, fill="black", font=font, anchor="rm")
        upright(s, left + centre(i) - line // 2, top - pad)
    draw.text((left + n * cell / 2, pad), "predicted class", fill="black", font=font, anchor="mt")
    upright("true class", pad, top + (n * cell + text_w("true class")) // 2)
    return np.asarray(img, np.uint8)


def write_report(
    result: Mapping[str, Any],
    class_names: Sequence[str],
    out_dir: str | epath.Path,
    step: int = 0,
    title: str = "",
) -> dict[str, epath.Path]:
    """Writes `result` (`scores`) into `out_dir` as per_class.txt (under `title`), confusion.png,
    scores.json and TensorBoard summaries at `step`, replacing a report there; returns the paths."""
    from clu import metric_writers  # noqa: PLC0415
    from PIL import Image  # noqa: PLC0415

    out = epath.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table, png, as_json = out / "per_class.txt", out / "confusion.png", out / "scores.json"
    if as_json.exists() and not runfiles.is_run_folder(out):  # a report written here before
        for old in out.glob("events.out.tfevents.*"):  # (not a run's own, which --eval_dir may be)
            old.unlink()
    confusion = np.asarray(result["confusion"])
    image = confusion_image(confusion, class_names)
    table.write_text(
        "".join(f"{t}\n" for t in (title, per_class_table(confusion, class_names)) if t)
    )
    with png.open("wb") as f:
        Image.fromarray(image).save(f, format="PNG")
    plain = {**result, "confusion": confusion.tolist(), "class_names": list(class_names)}
    as_json.write_text(json.dumps(plain, indent=2))
    writer = metric_writers.SummaryWriter(str(out))
    writer.write_images(step, {"confusion_matrix": image[None]})
    figures = ("accuracy", "top5_accuracy", "loss")
    writer.write_scalars(step, {f"eval_{k}": result[k] for k in figures})
    writer.close()
    return {"table": table, "confusion_png": png, "scores": as_json}
