"""What every entry point shares (`cli.start()` first, `cli.run(main)` last): flag parsing, a quiet
console, known errors and Ctrl-C as one message and exit status. Standard library and absl only."""

from __future__ import annotations

import contextlib
import logging as py_logging
import os
import re
import shlex
import signal
import sys
import textwrap
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NoReturn

from swin_flax import errors
from swin_flax.errors import EXIT_INTERRUPTED, EXIT_USER_ERROR


def _exit_saying(kind: str, message: str, status: int, now: bool = False) -> NoReturn:
    print(f"\n{_wrapped(f'{kind}: {message}')}\n", file=sys.stderr, flush=True)
    if now:
        sys.stdout.flush()
        os._exit(status)
    sys.exit(status)


def _wrapped(text: str, width: int = 100) -> str:
    """`text` wrapped line by line (its own lines stay), a list item's next lines under its text."""
    # Neither at hyphens nor within words: a path or URL stays whole, to be copied.
    wrapper = textwrap.TextWrapper(width, break_on_hyphens=False, break_long_words=False)
    lines = []
    for line in text.splitlines():
        wrapper.subsequent_indent = " " * re.match(r"\s*(\d+\.|-)?\s*", line).end()
        lines.append(wrapper.fill(line))
    return "\n".join(lines)


def exit_user_error(message: str, now: bool = False) -> NoReturn:
    """Prints `message` as the one-paragraph error and exits with EXIT_USER_ERROR; `now`: without
    Python's shutdown, where a half-started jax.distributed would log its teardown in C++."""
    _exit_saying("Error", message, EXIT_USER_ERROR, now)


def config_or_run(config: Any, workdir: str | None, what: str) -> Any:
    """The config a tool shows `what` of: --config's (its overrides applied) or a trained run's
    (--workdir, its config.json), checked as scripts/main.py checks it (any device count); exit 2
    unless exactly one of the two is given."""
    if (config is None) == (not workdir):
        exit_user_error(
            f"give --config FILE (a config's {what}, e.g. configs/strong.py, with any --config.* "
            f"overrides) or --workdir DIR (a trained run's {what}, from its config.json): one of "
            "the two."
        )
    from swin_flax.config import validate  # noqa: PLC0415 (after cli.start)

    if workdir:
        from swin_flax import evaluate  # noqa: PLC0415 (orbax: only for a run)

        config = evaluate.load_run_config(evaluate.run_folder(workdir))
    validate(config)
    return config


def command_line() -> str:
    """This process's command as typed, after a cd to the folder it ran in, quoted for the shell:
    what a run records of each session that trains it. Not all it ran with: the environment's
    variables are not recorded, a --flagfile by its name (not its lines), and config.txt writes a
    `python -c` program's newlines as \\n."""
    return f"cd {shlex.quote(os.getcwd())} && {shlex.join(sys.orig_argv)}"


def define_moved_data_flags() -> None:
    """--archive and --data_dir of the tools that read a trained run's data (moved_data), listed by
    the calling script's --helpshort as its own flags."""
    from absl import flags  # noqa: PLC0415

    flags.disclaim_key_flags()
    flags.DEFINE_string(
        "archive",
        None,
        "With --workdir: the run's CIFAR archive (or the folder of its extraction), if it moved "
        "since the run trained; default: where the run's config.json says.",
    )
    flags.DEFINE_string(
        "data_dir",
        None,
        "With --workdir: the tensorflow-datasets data_dir of the run's data, if it moved.",
    )


def moved_data(config: Any, workdir: str | None, archive: str | None, data_dir: str | None) -> Any:
    """A trained run's `config` reading its data from --archive or --data_dir when it moved since
    the run trained (evaluate.py, show_augmentations.py); exit 2 for both, a path that does not
    exist, either without --workdir or for a run on synthetic data."""
    if not (archive or data_dir):
        return config
    flag, path = ("--archive", archive) if archive else ("--data_dir", data_dir)
    if archive and data_dir:
        exit_user_error(
            "give the data's new place as --archive PATH (a CIFAR archive or its folder) or "
            "--data_dir DIR (a tensorflow-datasets data_dir): one of the two."
        )
    if not workdir:
        exit_user_error(
            f"{flag} gives a trained run's data (--workdir) a new place; with --config, set "
            f"--config.{flag[2:]}."
        )
    from swin_flax import runfiles  # noqa: PLC0415

    if "://" not in path and not os.path.exists(runfiles.config_path(path)):
        exit_user_error(f"{flag} {path} does not exist: give the data's new place.")
    if config.dataset == "synthetic":
        exit_user_error(
            f"{flag}: {workdir} trained on the synthetic data set, which reads no files: leave "
            f"{flag} out."
        )
    from swin_flax import evaluate  # noqa: PLC0415 (orbax: only for a run)

    return evaluate.with_data(config, archive=archive, data_dir=data_dir)


# The checkout this package runs from (an editable install), whose configs/ holds the recipes.
_CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# What a tool's `wrote PATH` line adds for a file it replaced (export.py, predict.py, evaluate.py).
REPLACING = " (replacing the file there)"


def check_output_file(
    flag: str, path: str | None, create_folder: bool = False, *, keep: Iterable[str | None] = ()
) -> str:
    """Exit 2 unless `path` (of --`flag`) is unset or a file path this user can write, in a folder
    that exists (or, with `create_folder`, can be created), that replaces nothing in `keep` (what
    the command reads: see `_refuse_replacing`): checked before the work, not after it. Returns
    what the `wrote` line adds: REPLACING for a file already there, else ''."""
    if not path:
        return ""
    missing = missing_folders(path) if create_folder else []
    folder = os.path.dirname(missing[0] if missing else os.path.abspath(path))  # the one that holds
    if os.path.isdir(path):
        exit_user_error(f"--{flag} {path} is a folder: give a file path in it, or another path.")
    if not os.path.isdir(folder):
        exit_user_error(
            f"--{flag} {path} is not a file path in a folder that exists"
            f"{' or can be created' if create_folder else ''}: "
            f"{'create the folder, or ' if not create_folder else ''}give another path."
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        exit_user_error(
            f"--{flag} {path}: the folder {folder} cannot be written by this user; give another "
            "path."
        )
    _refuse_replacing(flag, path, keep)
    if os.path.exists(path) and not os.access(path, os.W_OK):
        exit_user_error(
            f"--{flag} {path} is a file this user cannot write (a read-only file, or another "
            "user's): give another path."
        )
    return REPLACING if os.path.exists(path) else ""


def missing_folders(path: str) -> list[str]:
    """The folders, outermost first, that would be created for file `path`'s folder to exist (none
    when it exists; a file in the way ends the list, for check_output_file to refuse)."""
    missing, folder = [], os.path.dirname(os.path.abspath(path))
    while not os.path.lexists(folder):
        missing.insert(0, folder)
        folder = os.path.dirname(folder)
    return missing


def _refuse_replacing(flag: str, path: str, keep: Iterable[str | None]) -> None:
    """Exit 2 if --`flag` `path` is among the files of a run that `keep` names (a --workdir, or a
    --checkpoint in it: runfiles.is_run_file), or is a file that `keep` names (an input: an image,
    an archive). A file in a folder given is not refused: predict.py reads only its images,
    evaluate.py's --data_dir holds tfds' files."""
    from swin_flax import runfiles  # noqa: PLC0415 (etils: only for an output flag given)

    out = os.path.realpath(path)
    for given in (k for k in keep if k and "://" not in k and os.path.exists(k)):
        run = given if runfiles.is_run_folder(given) else runfiles.enclosing_run(given)
        if run is not None and runfiles.is_run_folder(run):
            real = os.path.realpath(run)
            if runfiles.is_run_file(out, real):  # a path outside the run is none of its files
                folders = ", ".join(os.path.join(f, "") for f in runfiles.FOLDERS)
                exit_user_error(
                    f"--{flag} {path} is among the files of {run}, the run this command reads (its "
                    f"config.json, records and folders {folders} are the run's own): give another "
                    f"path, e.g. a new name in {run} or a path in "
                    f"{os.path.join(run, runfiles.EVAL_DIR, '')}."
                )
        elif out == os.path.realpath(given):
            exit_user_error(
                f"--{flag} {path} is an input of this command ({given}): give another path, or it "
                "would be replaced."
            )


def _exit_interrupted(e: object = None, status: int = EXIT_INTERRUPTED) -> NoReturn:
    sys.stdout.flush()
    print(f"\nInterrupted ({str(e or '') or 'Ctrl-C'}).", file=sys.stderr, flush=True)
    os._exit(status)  # no atexit work: a second Ctrl-C could interrupt it


def _end_on_sigterm(status: int) -> None:
    """SIGTERM while Python shuts down (JAX's and orbax's teardown take seconds) ends the process
    at once with `status`, the script's own, and no line: the work is done (a scheduler's SIGTERM
    after the summary is not a killed job). Ctrl-C still ends it as SIGINT's default action, so that
    a shell script of several commands stops."""
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN:
        signal.signal(signal.SIGTERM, lambda *_: _flushed_exit(status))


def _flushed_exit(status: int) -> NoReturn:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a signal that landed mid-print: reentrant call
            stream.flush()
    os._exit(status)


def _excepthook(kind, value, tb) -> None:
    if issubclass(kind, KeyboardInterrupt):
        _exit_interrupted(value)
    if kind.__name__ == "CantOpenFlagFileError":  # read as a script defines --config, at import
        said = str(value).partition("flagfile: ")[2]
        exit_user_error(f"--flagfile cannot be read ({said}): give a file to read.")
    sys.__excepthook__(kind, value, tb)


def _unraisablehook(unraisable) -> None:
    # Ctrl-C that landed in a callback Python cannot raise from (JAX's garbage-collection callback)
    # would be lost: it is sent again, for the handler to act on where it can.
    error = unraisable.exc_value
    if isinstance(error, KeyboardInterrupt):
        main = threading.main_thread().ident
        threading.Timer(0.01, signal.pthread_kill, (main, signal.SIGINT)).start()
        return
    # A checkpoint read that failed (a damaged file: reported as a CheckpointError) leaves reads in
    # flight whose completion callbacks find orbax's event loop closed; their errors say nothing new.
    closed_loop = isinstance(error, RuntimeError) and str(error) == "Event loop is closed"
    if not (closed_loop and unraisable.object is None):
        sys.__unraisablehook__(unraisable)


class _Stdout:
    """sys.stdout that, once its reader has gone (`| head`, quitting `| less`), writes to os.devnull
    instead of raising BrokenPipeError: training goes on and saves (its lines still reach the log
    on stderr, `rundir.announce`), and the tools still write their files."""

    def __init__(self, stream: Any):
        self._stream = stream

    def write(self, text: str) -> int:
        self._unless_gone(self._stream.write, text)
        return len(text)  # as a text stream's write returns, whole or to os.devnull

    def flush(self) -> None:
        self._unless_gone(self._stream.flush)

    def _unless_gone(self, call: Callable[..., Any], *args: Any) -> None:
        try:
            call(*args)
        except BrokenPipeError:
            os.dup2(os.open(os.devnull, os.O_WRONLY), self._stream.fileno())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def start() -> None:
    """Called first by every script: Ctrl-C from then on (even in imports) ends with one line and
    exit 130, SIGTERM with 143; TensorFlow's C++ start-up lines are hidden; a stdout closed by its
    reader (`| head`) is not an error."""
    sys.excepthook = _excepthook
    # SIGTERM's default action (exit status 128 + 15, as a shell reports it) with one line; the
    # training loop replaces it while it runs, to save first (errors.EXIT_PREEMPTED).
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN:  # as the parent left it ignored
        signal.signal(signal.SIGTERM, lambda signum, _: _exit_interrupted("SIGTERM", 128 + signum))
    sys.stdout = _Stdout(sys.stdout)
    sys.unraisablehook = _unraisablehook
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def multi_process_console(process_index: int) -> None:
    """The console of one process of several: C++ libraries' stdout (gloo's `[Gloo] Rank 0 is
    connected ...` lines) goes to stderr, Python's (what a `| tee` keeps) stays; a process other
    than 0 logs only errors (its own failures): its other lines, warnings too, would repeat
    process 0's, once per host."""
    from absl import logging  # noqa: PLC0415

    sys.stdout.flush()
    ours = os.dup(1)
    os.dup2(2, 1)
    stream = sys.stdout._stream if isinstance(sys.stdout, _Stdout) else sys.stdout
    kept = (ours, "w") if process_index == 0 else (os.devnull, "w")
    sys.stdout = _Stdout(
        open(*kept, encoding=stream.encoding, errors=stream.errors, buffering=1)  # noqa: SIM115
    )
    if process_index:
        os.close(ours)
        logging.set_verbosity(logging.ERROR)


def parse_flags(argv: list[str], takes_arguments: bool = False) -> list[str]:
    """absl's flag parsing, a bad flag, config override or stray argument ending in one paragraph
    and exit status 2 instead of a traceback or a usage dump; then the console is set up."""
    from absl import flags, logging  # noqa: PLC0415
    from ml_collections.config_flags import config_path  # noqa: PLC0415

    program = os.path.basename(argv[0])
    see = f"See `{program} --helpshort` for the flags."
    with contextlib.suppress(flags.Error):  # --flagfile's lines (unread: FLAGS(argv) says why;
        # where the script defines --config, ml_collections read them first: _excepthook says it)
        argv = [argv[0], *flags.FLAGS.read_flags_from_files(argv[1:], force_gnu=False)]
    argv = [argv[0], *map(_home_expanded, argv[1:])]
    given = _check_config_files(flags.FLAGS, argv)
    # A config file's folder importable as a package, as in flax's examples (`from configs import
    # base`); then the recipes of the checkout this package runs from (`from configs import demo`).
    roots = [os.path.dirname(os.path.dirname(os.path.abspath(path))) for path in given.values()]
    for root in roots + [_CHECKOUT] * os.path.isdir(os.path.join(_CHECKOUT, "configs")):
        if root not in sys.path:
            sys.path.append(root)
    argv, nones = _take_nones(argv, given)
    # ml_collections' warning of a get_config() that returned None: the paragraph below says it.
    logging.get_absl_logger().addFilter(lambda r: "returned None, did" not in r.getMessage())
    try:
        rest = flags.FLAGS(argv)
    except SystemExit as e:  # absl's --help / --helpshort / --helpfull print the usage, exit 1
        sys.exit(0 if e.code == 1 and any(a.startswith(("--help", "-?")) for a in argv) else e.code)
    except Exception as e:  # noqa: BLE001 (a config file runs user code while it loads)
        if said := _config_file_error(e, given.values()):
            exit_user_error(said)
        if not isinstance(e, flags.Error | AttributeError | KeyError | TypeError | ValueError):
            raise
        if order := re.match(r"Found (\S+) in argv before a value for --(\w+) ", str(e)):
            exit_user_error(
                f"{order[1]} comes before --{order[2]} FILE, whose config it changes: give "
                f"--{order[2]} FILE first, then its overrides."
            )
        unknown = isinstance(e, flags.UnrecognizedFlagError)
        # No --config given: its fields are no flags.
        if unknown and (config := e.flagname.partition(".")[0]) in _config_flags(flags.FLAGS):
            exit_user_error(
                f"--{e.flagname} changes a field of the config file that --{config} gives, but "
                f"no --{config} FILE is given: give --{config} FILE (e.g. configs/strong.py) "
                "first, then its overrides."
            )
        if unknown and "config" in flags.FLAGS:
            from swin_flax.config import default_config, flatten  # noqa: PLC0415 (on this error)

            if e.flagname in flatten(default_config().to_dict()):  # --config. left out
                given = e.flagvalue.lstrip("-") + ("" if "=" in e.flagvalue else " VALUE")
                exit_user_error(
                    f"--{e.flagname} is a config field, not a flag of {program}: set it as "
                    f"--config.{given}."
                )
        if missing := re.findall(r"^flag --(\w+)=None: Flag --\1 must have a value", str(e), re.M):
            _refuse_what_is_no_config(flags.FLAGS, missing)  # a required config flag
            said = [f"--{name} ({flags.FLAGS[name].help.rstrip('.')})" for name in missing]
            exit_user_error(  # required flags left out: absl names each on a line of its own
                f"{' and '.join(said)} {'is' if len(said) == 1 else 'are'} missing. {see}"
            )
        # ml_collections quotes a whole traceback: its last line says it.
        head, quoted, trace = str(e).partition("Traceback (most recent call last)")
        message = head + trace.strip().splitlines()[-1] if quoted else head
        if isinstance(e, KeyError | AttributeError):
            field, said = _no_such_field(message)
            field_re = rf"--?\w+\.sweep\.({re.escape(field)}(?:\.[\w.]*)?)(?:=|$)"
            swept = (re.match(field_re, a) for a in argv[1:])
            if found := next(filter(None, swept), None):  # the whole name: model.drop_path_rate
                from swin_flax.config import not_sweepable  # noqa: PLC0415 (only on this error)

                exit_user_error(f"--config.sweep.{found[1]}: {not_sweepable(found[1])}")
            message = said
        if "--config." in message or isinstance(e, KeyError | AttributeError):
            see = (  # the config's fields are not flags that --helpshort lists
                "Every --config.FIELD must name a field of swin_flax/config.py (each with its "
                "default and meaning) with a value of its type."
            )
        exit_user_error(
            f"bad command line ({type(e).__name__}: {' '.join(message.split())}). {see}"
        )
    _refuse_what_is_no_config(flags.FLAGS, _config_flags(flags.FLAGS))  # one not required
    for flag, _, field in (name.partition(".") for name in nones):
        config_path.set_value(field, flags.FLAGS[flag].value, None)
    _refuse_a_tuple_given_twice(flags.FLAGS, argv)
    _refuse_a_swept_field_also_given(flags.FLAGS, argv)
    if len(rest) > 1 and not takes_arguments:
        flag = argv[argv.index(rest[1]) - 1].lstrip("-")  # `--config.weight_decay_exempt False`
        if flag in flags.FLAGS and flags.FLAGS[flag].boolean:
            exit_user_error(
                f"unexpected argument {rest[1]} after --{flag}, a true/false flag, which takes "
                f"its value after '=': write --{flag}={rest[1].lower()}."
            )
        exit_user_error(
            f"unexpected argument(s) {' '.join(rest[1:])}: every option is a --flag (see "
            f"`{program} --helpshort`)."
        )
    if not flags.FLAGS["verbosity"].present:  # --verbosity (0: INFO, 1: DEBUG): absl's own lines
        project_console(script=argv[0])
    return rest


def project_console(script: str | None = None) -> None:
    """The scripts' console, also for a notebook: the INFO lines of the package and of the running
    `script`'s folder, short, and every library's warnings (not its INFO lines). Without `script`
    (a notebook) absl's logger gets a handler of its own: the notebook's logging stays as it is."""
    from absl import flags, logging  # noqa: PLC0415

    if script is not None:  # a script: absl's handler on the root logger, as app.run sets it
        logging.use_absl_handler()
        handler = logging.get_absl_handler()
    else:  # a notebook: absl's defaults (no "before flag parsing" line)
        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()
        absl_logger = py_logging.getLogger("absl")
        absl_logger.propagate = False  # not a second time, through the notebook's handlers
        handler = next((h for h in absl_logger.handlers if isinstance(h, _Console)), None)
        if handler is None:
            absl_logger.addHandler(handler := _Console())
    logging.set_verbosity(logging.INFO)
    handler.filters = [_ProjectLines(script)]  # set, not added: a second call changes nothing
    handler.setFormatter(_ShortFormat())


class _Console(py_logging.StreamHandler):
    """project_console's handler in a notebook (to stderr, as absl's)."""


def _home_expanded(arg: str) -> str:
    """`--flag=~/path` with `~` expanded, as the shell does for `--flag ~/path` (not after `=`)."""
    name, eq, value = arg.partition("=")  # expanduser changes only a value that starts with `~`
    return f"{name}={os.path.expanduser(value)}" if arg.startswith("--") and eq else arg


def _config_flags(flag_values) -> set[str]:
    """The names of the config flags (ml_collections' DEFINE_config_file)."""
    return {n for n in flag_values if type(flag_values[n]).__name__ == "_ConfigFlag"}


def _refuse_what_is_no_config(flag_values, names: Iterable[str]) -> None:
    """Exit 2 if a config flag of `names` loaded None (ml_collections only warns) or anything else
    that is no ConfigDict (a dict); one that failed to load raises at its first use."""
    from ml_collections import ConfigDict  # noqa: PLC0415 (what config flags load)

    for name in names:
        flag = flag_values[name]  # config_filename: only once parsed
        got, path = flag.value, getattr(flag, "config_filename", "") if flag.present else ""
        if path and not isinstance(got, ConfigDict) and type(got).__name__ != "_ErrorConfig":
            got = "None" if got is None else f"a {type(got).__name__}, not a ConfigDict"
            exit_user_error(
                f"the config file {path}: get_config() returned {got}. Make it return the config "
                "(a ConfigDict, e.g. default_config() with its changes), as configs/strong.py does."
            )


def _refuse_a_tuple_given_twice(flag_values, argv: list[str]) -> None:
    """Exit 2 if a tuple field is set by two or more whole tuples (`--config.model.depths='(2,2)'`
    twice, as when a line of overrides is extended): ml_collections joins them, (2, 2, 2, 2)."""
    given: dict[str, list[str]] = {}
    for name, value, _ in _flags_in(argv, _config_flags(flag_values)):
        if "." in name:
            given.setdefault(name, []).append(value or "")
    for name, values in given.items():
        flag, *path = name.split(".")
        field = flag_values[flag].value
        for key in path:
            field = getattr(field, key, None)
        if len(values) > 1 and isinstance(field, tuple) and any("," in v for v in values):
            exit_user_error(
                f"--{name} is given {len(values)} times ({' and '.join(values)}): ml_collections "
                f"joins a tuple field's values, here into {field}. Give it once, with the whole "
                "tuple."
            )


def _refuse_a_swept_field_also_given(flag_values, argv: list[str]) -> None:
    """Exit 2 for `--config.learning_rate=X` on the command line of a config that sweeps it (by
    the file or a --config.sweep flag): the sweep sets every run's value, so X would be unused."""
    given = {a.lstrip("-").split("=")[0] for a in argv[1:] if a.startswith("-")}
    for flag in _config_flags(flag_values):
        sweep = getattr(flag_values[flag].value, "sweep", None) or {}
        for field in sorted(f for f in sweep if sweep[f] and f"{flag}.{f}" in given):
            exit_user_error(
                f"--{flag}.{field} is given, but config.sweep.{field} {tuple(sweep[field])} sets "
                f"every run's {field}: it would be unused. Give one of the two."
            )


def _check_config_files(flag_values, argv: list[str]) -> dict[str, str]:
    """The file each config flag names (by flag), after refusing one missing or no Python file (a
    run's config.json): now, as ml_collections defers that failure to the config's first use."""
    names, given = _config_flags(flag_values), {}
    for name, value, _ in _flags_in(argv, names):
        path = (value or "").split(":", 1)[0]
        if name not in names or not path:  # a field's override, or no file
            continue
        give = "Give a Python file whose get_config() returns the config, e.g. configs/strong.py."
        if not os.path.isfile(path):
            what = (
                "is a folder, not a config file" if os.path.isdir(path) else "no such config file"
            )
            if os.path.isfile(f"{path}.py"):
                give = f"Did you mean --{name} {path}.py?"
            exit_user_error(f"--{name} {path}: {what}. {give}")
        if not path.endswith(".py"):
            exit_user_error(
                f"--{name} {path} is not a Python config file. {give} (A run's config.json and "
                "config.txt record the settings it ran with: resume a run with the config file and "
                "overrides that started it.)"
            )
        if name in given:
            exit_user_error(
                f"--{name} is given twice ({given[name]} and {path}): give one config file, and "
                f"change its fields with --{name}.FIELD=VALUE."
            )
        given[name] = path
    return given


def _flags_in(argv: list[str], names: Iterable[str]) -> Iterator[tuple[str, str | None, list[str]]]:
    """Each argument after the program as (name, value, its arguments): a flag of `names` or a
    field of one (`--config.seed`; absl takes -flag as --flag) with its value after '=', else the
    next argument (None: at the end, or a field's before a flag, as a true/false field takes none);
    any other as ('', None, [it])."""
    pairs = iter(zip(argv[1:], [*argv[2:], None]))
    for arg, following in pairs:
        name, eq, value = arg.lstrip("-").partition("=")
        if not arg.startswith("-") or name.partition(".")[0] not in names:
            yield "", None, [arg]
        elif eq or following is None or "." in name and following.startswith("-"):
            yield name, value if eq else None, [arg]
        else:
            next(pairs)  # its value
            yield name, following, [arg, following]


def _config_file_error(e: BaseException, paths: Iterable[str]) -> str | None:
    """The paragraph for `e` when it or one it wraps (absl and ml_collections re-raise) came from a
    config file in `paths` (its file and line, its own error), or the file has no get_config()."""
    files = {os.path.abspath(p) for p in paths}
    for err in reversed(errors.chain(e)):  # the innermost first: the config file's own exception
        frames = traceback.extract_tb(err.__traceback__)
        if isinstance(err, SyntaxError) and err.filename and os.path.abspath(err.filename) in files:
            where = f"{err.filename} line {err.lineno}"
            break
        if mine := [f for f in frames if os.path.abspath(f.filename) in files]:
            where = f"{mine[-1].filename} line {mine[-1].lineno}"
            break
    else:
        if isinstance(e, AttributeError) and "get_config" in str(e) and files:
            return (
                f"the config file {', '.join(paths)} defines no get_config(): give it one that "
                "returns the config (a ConfigDict, e.g. default_config() with its changes), as "
                "configs/strong.py does."
            )
        return None
    said = f"{type(err).__name__}: {' '.join(str(err).split())}"
    if frames and f"{os.sep}ml_collections{os.sep}" in frames[-1].filename:  # config misused
        cast = re.match(r"Could not override field '(\w+)' \(reference\)\. (.*) is of original "
                        r"type <class '(\w+)'> and cannot be casted to type <class '(\w+)'>",
                        str(err), re.S)  # fmt: skip
        if isinstance(err, KeyError | AttributeError):
            said = f"{type(err).__name__}: {_no_such_field(str(err))[1]}"
        elif cast:
            field, value, given, wanted = cast.groups()
            from swin_flax.config import default_config, flatten  # noqa: PLC0415 (on this error)

            named = [f for f in flatten(default_config().to_dict()) if f.split(".")[-1] == field]
            value = repr(value) if given == "str" else value
            field = named[0] if len(named) == 1 else field
            article = "an" if wanted[0] in "aeiou" else "a"
            said = f"config.{field}: {value} is a {given}; the field takes {article} {wanted}"
    if isinstance(err, ImportError) and (err.name or "").split(".")[0] == "configs":  # or hidden
        said += (
            "; the recipes in configs/ are importable when swin_flax runs from the repository's "
            "checkout (pip install -e .), else put the folder that holds configs/ on PYTHONPATH"
        )
    return (
        f"the config file {where} failed to load ({said}). Fix it, or give another --config, e.g. "
        "configs/strong.py (a Python file whose get_config() returns the config)."
    )


def _no_such_field(said: str) -> tuple[str, str]:
    """The field a ConfigDict's KeyError or AttributeError names (its text quotes a repr, escapes
    and all), and the error said plainly: `no such field 'mdoel' (did you mean "model" ...?)`."""
    text = " ".join(said.replace("\\'", "'").replace("\\n", " ").split())
    field, _, guess = text.partition(" Did you mean")
    field, guess = field.strip("\"' "), guess.rstrip("'")
    return field, f"no such field '{field}'" + (f" (did you mean{guess})" if guess else "")


def _take_nones(argv: list[str], given: Iterable[str]) -> tuple[list[str], list[str]]:
    """`argv` less the overrides that set a field whose default is None back to None of the config
    flags `given` a file (`--config.data_seed=None`, which ml_collections would parse as an int or
    the text 'None'), and their names (`config.data_seed`), to set once the config is loaded."""
    if not given:  # no config file (predict.py, export.py, --workdir alone): nothing to look up
        return argv, []
    from swin_flax.config import default_config, flatten  # noqa: PLC0415 (after cli.start)

    nullable = {k for k, v in flatten(default_config().to_dict()).items() if v is None}
    kept, nones = argv[:1], {}
    for name, value, args in _flags_in(argv, given):
        nones[name] = name.partition(".")[2] in nullable and value == "None"  # the last one wins
        kept += [] if nones[name] else args
    return kept, [name for name, none in nones.items() if none]


class _ProjectLines(py_logging.Filter):
    """Every library's warnings and errors; INFO lines only of the package and `script`'s folder."""

    def __init__(self, script: str | None = None):
        super().__init__()
        folders = (__file__, *([script] if script else []))
        self.roots = tuple(os.path.dirname(os.path.abspath(p)) + os.sep for p in folders)

    def filter(self, record: py_logging.LogRecord) -> bool:
        # A failed checkpoint read (a CheckpointError paragraph) leaves orbax's other reads to fail
        # later; asyncio logs each as never retrieved. They say nothing the paragraph did not.
        if record.name == "asyncio" and str(record.msg).startswith(
            ("Future exception was never retrieved", "Task exception was never retrieved")
        ):
            return False
        return record.levelno >= py_logging.WARNING or record.pathname.startswith(self.roots)


class _ShortFormat(py_logging.Formatter):
    """`12:03:45 message`, with the level named when it is a warning or worse."""

    def format(self, record: py_logging.LogRecord) -> str:
        level = "" if record.levelno < py_logging.WARNING else f"{record.levelname}: "
        return f"{self.formatTime(record, '%H:%M:%S')} {level}{record.getMessage()}"


def run(main: Callable[[list[str]], Any], takes_arguments: bool = False) -> None:
    """absl's app.run with `parse_flags` and `friendly_errors`; Ctrl-C: one line, exit 130."""
    from absl import app  # noqa: PLC0415

    guarded = friendly_errors()(main)  # a config file that failed to load: OSError at first use
    try:
        app.run(guarded, flags_parser=lambda argv: parse_flags(argv, takes_arguments))
    except KeyboardInterrupt as e:
        _exit_interrupted(e)
    except SystemExit as e:  # main is done, or its error said
        _end_on_sigterm(e.code if isinstance(e.code, int) else int(e.code is not None))
        raise
    except Exception:  # a crash: its traceback follows
        _end_on_sigterm(1)
        raise
    finally:  # done, or its error said: Ctrl-C while Python shuts down just ends the process,
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # (not when ignored)
            signal.signal(signal.SIGINT, signal.SIG_DFL)  # without an exit handler's traceback


@contextlib.contextmanager
def friendly_errors() -> Iterator[None]:
    """Turns the project's own errors into a message and an exit status; others propagate as-is."""
    try:
        try:
            yield
        except Exception as e:  # a collective's failure is raised as whatever called it raises
            if errors.lost_peer(e):  # before JAX's shutdown barrier waits for it, then aborts
                said = _gist(str(e).partition("\n")[0].rstrip("."))
                why = (  # a connection never made: the peer may only be late
                    "it is gone, or it fell more than gloo's wait behind, e.g. still compiling"
                    if any("DEADLINE_EXCEEDED" in str(x) for x in errors.chain(e))
                    else "it crashed, was killed, or its machine went away"
                )
                _exit_saying(
                    "Process lost",
                    f"another process of this run stopped answering ({why}): {said}. This one "
                    "stops too. Run the same commands again, on every process, to resume from "
                    "the last checkpoint.",
                    errors.EXIT_PREEMPTED,
                    now=True,
                )
            raise
    except errors.Preempted as e:
        _exit_saying("Ctrl-C" if e.by_user else "Preempted", str(e), errors.EXIT_PREEMPTED)
    except errors.TrainingDiverged as e:
        _exit_saying("Training diverged", str(e), errors.EXIT_DIVERGED)
    except errors.USER_ERRORS as e:
        _exit_saying("Error", str(e), EXIT_USER_ERROR)
    except (RuntimeError, MemoryError) as e:  # JAX's JaxRuntimeError (not imported here); numpy's
        first = str(e).partition("\n")[0]  # XLA:CPU says some as "INTERNAL: ... Out of memory"
        if not isinstance(e, MemoryError) and not (
            first.startswith("RESOURCE_EXHAUSTED") or "Out of memory allocating" in first
        ):
            raise
        where = "the host's" if isinstance(e, MemoryError) else "the device's"
        _exit_saying(
            "Out of memory",
            f"{where} memory ran out ({first}). Make the work smaller: fewer runs "
            "in one process (--config.num_runs, --config.sweep), a smaller --config.batch_size or "
            "--config.eval_batch_size, a smaller model or image size, --config.remat=full or "
            "--config.dtype=bfloat16. A training run's checkpoints written so far are intact: the "
            "same command resumes from the latest.",
            errors.EXIT_OUT_OF_MEMORY,
        )


def _gist(said: str, limit: int = 300) -> str:
    """An error's line with each `part: ` said once (JAX repeats 'Error dispatching computation: ')
    and, if still over `limit` characters, cut in the middle: its end names the cause."""
    parts = []
    for part in said.split(": "):
        if part not in parts:
            parts.append(part)
    said = " ".join(": ".join(parts).split())
    if len(said) <= limit:
        return said
    head, tail = said[: limit // 3].rpartition(" ")[0], said[-(limit - limit // 3 - 5) :]
    return f"{head} ... {tail.partition(' ')[2]}"


def compilation_cache_dir(flag: str | None, workdir: str, environ: Mapping[str, str]) -> str | None:
    """Where JAX's persistent compilation cache goes: `flag` ('' for none), else (None) JAX's own
    JAX_COMPILATION_CACHE_DIR, else WORKDIR/compilation_cache, so that a resume reuses the step."""
    if flag is not None or environ.get("JAX_COMPILATION_CACHE_DIR"):
        return flag  # None when JAX reads its variable itself
    return workdir.rstrip("/") + "/compilation_cache"
