"""The project's error classes and exit statuses: entry points (`cli.py`) turn these into one
paragraph and an exit status; anything else is a bug and keeps its traceback."""

import re

EXIT_OUT_OF_MEMORY = 1  # device or host memory ran out: the message says what to make smaller
EXIT_USER_ERROR = 2  # bad config, data, checkpoint or workdir: fix the input and run again
EXIT_DIVERGED = 3  # NaN/inf loss: the last good checkpoint is kept
EXIT_PREEMPTED = 75  # EX_TEMPFAIL: stopped by a signal (after saving) or a lost process; run again
EXIT_INTERRUPTED = 130  # Ctrl-C before training started (128 + SIGINT, as a shell reports it)


class ConfigError(ValueError):
    """A config field holds a value that cannot run; the message names the field and the fix."""


class DataError(ValueError):
    """The requested data cannot be read; the message names the file or says how to supply it."""


def in_run_tool_flags(error: DataError) -> DataError:
    """A data error's advice in the flags of the tools that read a trained run's data
    (evaluate.py, show_augmentations.py --workdir: --archive, --data_dir), not training's."""
    said = str(error).replace("--config.archive", "--archive")
    said = re.sub(r"\n\s*3\. Synthetic data.*", "", said)  # no way to score a trained run's data
    said = re.sub(
        r"set --config\.dataset=\w+ --config\.model\.num_classes=\d+\.",
        "give an archive of that data set.",
        said,
    )
    return DataError(
        said.replace("--config.data_dir", "--data_dir").replace("three ways", "two ways")
    )


class CheckpointError(ValueError):
    """A checkpoint that cannot be used for this run; the message says why and what to do."""


class CheckpointWriteError(OSError):
    """A save failed (full disk, unwritable folder); the previous checkpoint is untouched."""


class WorkdirMoved(CheckpointWriteError):
    """A save of `step` not made, nor its step's saves queued behind it: the workdir was moved
    while the run trained (the save would recreate the old path, splitting the run in two)."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step


class TrainingDiverged(RuntimeError):
    """The loss became NaN or inf; the last good checkpoint is kept."""


class ProcessLost(RuntimeError):
    """Another process of a multi-process run stopped answering: this one cannot go on alone."""


def lost_peer(error: BaseException) -> bool:
    """Whether `error` (or one it wraps) is a gloo collective that failed as a peer went away, or
    one whose connections a peer never came to make (gone before the train step's first run)."""
    return any(
        re.search(r"Gloo [\w-]+ failed", str(e))
        and re.search(r"(closed|reset) by peer", str(e))
        or re.search(r"Gloo context initialization failed: DEADLINE_EXCEEDED", str(e))
        for e in chain(error)
    )


def chain(error: BaseException) -> list[BaseException]:
    """`error` and the exceptions it wraps (its cause, else its context), outermost first."""
    found = []
    while error is not None and error not in found:  # a chain may loop back
        found.append(error)
        error = error.__cause__ or error.__context__
    return found


class Preempted(Exception):
    """SIGTERM/SIGINT arrived and the state was saved; `by_user`: Ctrl-C, not a preemption."""

    def __init__(self, message: str, by_user: bool = False):
        super().__init__(message)
        self.by_user = by_user


# What a user can fix (the message says how): one paragraph and EXIT_USER_ERROR. OSError covers an
# unwritable or full disk and a missing file, whose messages name the path.
USER_ERRORS = (ConfigError, DataError, CheckpointError, OSError)
