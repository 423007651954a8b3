"""Shared behaviour of the entry points: known errors become one clear paragraph and an exit status."""

from __future__ import annotations

import contextlib
import sys
import textwrap
from collections.abc import Iterator, Mapping
from typing import NoReturn

EXIT_USER_ERROR = 2  # bad config, data, checkpoint or workdir: fix the input and run again
EXIT_DIVERGED = 3  # NaN/inf loss: the last good checkpoint is kept
EXIT_PREEMPTED = 75  # EX_TEMPFAIL: stopped by a signal after saving; run again to resume


def _say(kind: str, message: str) -> None:
    print("\n" + textwrap.fill(f"{kind}: {message}", width=100) + "\n", file=sys.stderr, flush=True)


def exit_user_error(message: str) -> NoReturn:
    """Prints `message` as the one-paragraph error and exits with EXIT_USER_ERROR."""
    _say("Error", message)
    sys.exit(EXIT_USER_ERROR)


@contextlib.contextmanager
def friendly_errors() -> Iterator[None]:
    """Turns the project's own errors into a message and an exit status; others propagate as-is."""
    from swin_flax import train  # noqa: PLC0415

    try:
        yield
    except train.Preempted as e:
        _say("Preempted", str(e))
        sys.exit(EXIT_PREEMPTED)
    except train.TrainingDiverged as e:
        _say("Training diverged", str(e))
        sys.exit(EXIT_DIVERGED)
    except (ValueError, FileNotFoundError, NotADirectoryError, PermissionError, OSError) as e:
        # The project raises ValueError subclasses (ConfigError, DataError, CheckpointError) whose
        # messages say what to do; OS errors (unwritable or full disk) name the path.
        if not _is_user_error(e):
            raise
        _say("Error", str(e))
        sys.exit(EXIT_USER_ERROR)


def _is_user_error(e: BaseException) -> bool:
    from swin_flax import checkpoints, config  # noqa: PLC0415
    from swin_flax.data import sources  # noqa: PLC0415

    user_errors = (config.ConfigError, checkpoints.CheckpointError, OSError)
    data_error = getattr(sources, "DataError", None)
    if data_error is not None:
        user_errors += (data_error,)
    return isinstance(e, user_errors)


def compilation_cache_dir(flag: str | None, workdir: str, environ: Mapping[str, str]) -> str | None:
    """Where JAX's persistent compilation cache should go, or None to leave JAX's setting alone.

    `flag` (--compilation_cache) wins: a folder, or '' for no cache. Unset, JAX_COMPILATION_CACHE_DIR
    (read by JAX itself) wins; otherwise WORKDIR/compilation_cache, so that a resumed or restarted
    run reuses the compiled train step instead of compiling it again.
    """
    if flag is not None:
        return flag
    if environ.get("JAX_COMPILATION_CACHE_DIR"):
        return None
    return workdir.rstrip("/") + "/compilation_cache"
