"""swin_flax.cli: where the entry point puts JAX's persistent compilation cache, which log lines the
console shows, and Ctrl-C."""

import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile

import pytest

from swin_flax import cli, errors


def test_compilation_cache_flag_wins_then_jax_environment_then_workdir():
    env = {"JAX_COMPILATION_CACHE_DIR": "/shared/xla"}
    assert cli.compilation_cache_dir("/mine", "runs/a", env) == "/mine"
    assert cli.compilation_cache_dir("", "runs/a", env) == ""  # '' turns the cache off
    assert cli.compilation_cache_dir(None, "runs/a", env) is None  # JAX reads its variable itself
    assert cli.compilation_cache_dir(None, "runs/a/", {}) == "runs/a/compilation_cache"
    assert cli.compilation_cache_dir(None, "gs://b/run", {}) == "gs://b/run/compilation_cache"


def _record(pathname: str, level: int) -> logging.LogRecord:
    return logging.LogRecord("absl", level, pathname, 1, "a line", None, None)


def test_console_keeps_the_project_lines_and_every_warning_but_not_other_libraries_info():
    keep = cli._ProjectLines()
    ours = os.path.join(os.path.dirname(cli.__file__), "train.py")
    orbax = "/venv/lib/python3.11/site-packages/orbax/checkpoint/future.py"
    assert keep.filter(_record(ours, logging.INFO))
    assert not keep.filter(_record(orbax, logging.INFO))
    assert keep.filter(_record(orbax, logging.WARNING)) and keep.filter(
        _record(orbax, logging.ERROR)
    )


def test_ctrl_c_during_imports_is_one_line_and_exit_130(tmp_path):
    """cli.start() first: a KeyboardInterrupt anywhere later (here: an import) ends quietly."""
    script = tmp_path / "script.py"
    script.write_text(
        "from swin_flax import cli\ncli.start()\nimport os, signal\n"
        "os.kill(os.getpid(), signal.SIGINT)\nimport json\n"
    )
    out = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as in a terminal
    )
    assert out.returncode == 130
    assert out.stderr.strip() == "Interrupted (Ctrl-C)." and "Traceback" not in out.stderr


def _run_script(tmp_path, code: str) -> subprocess.CompletedProcess:
    script = tmp_path / "script.py"
    script.write_text("from swin_flax import cli\ncli.start()\nimport os, signal, time\n" + code)
    return subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as in a terminal
    )


def test_ctrl_c_inside_a_callback_python_cannot_raise_from_still_stops(tmp_path):
    """A KeyboardInterrupt raised where Python can only report it (here a __del__; in the scripts,
    JAX's garbage-collection callback) is not lost: the script ends with the Ctrl-C line."""
    out = _run_script(
        tmp_path,
        "class Dropped:\n    def __del__(self):\n        raise KeyboardInterrupt\n"
        "d = Dropped()\ndel d\ntime.sleep(30)\nprint('went on')\n",
    )
    assert out.returncode == 130 and out.stdout == ""
    assert out.stderr.strip() == "Interrupted (Ctrl-C)."


def test_ctrl_c_while_python_shuts_down_ends_it_without_a_traceback(tmp_path):
    """After the script's work (cli.run has returned), Ctrl-C during the exit handlers (JAX's
    clean-up) ends the process as SIGINT's default action does: no 'Exception ignored' traceback."""
    out = _run_script(
        tmp_path,
        "import atexit\natexit.register(time.sleep, 2)\n"  # runs last: the signal lands in it
        "atexit.register(os.kill, os.getpid(), signal.SIGINT)\n"
        "cli.run(lambda argv: None)\n",
    )
    assert out.returncode == -signal.SIGINT and out.stderr == "", out.stderr


@pytest.mark.parametrize(
    "end, status",
    [("return None", 0), ("raise errors.ConfigError('x')", 2), ("raise ValueError('bug')", 1)],
)
def test_sigterm_while_python_shuts_down_keeps_the_scripts_status(tmp_path, end, status):
    """SIGTERM after the script's work (a scheduler's, as the summary appears) during the exit
    handlers (JAX's clean-up) ends the process with the status it was exiting with, quietly: not
    143 and 'Interrupted (SIGTERM).' as before the work was done (a crash keeps its 1)."""
    out = _run_script(
        tmp_path,
        "import atexit\nfrom swin_flax import errors\n"
        "atexit.register(time.sleep, 5)\n"  # runs last: the signal lands in it
        "atexit.register(os.kill, os.getpid(), signal.SIGTERM)\n"
        f"def main(argv):\n    print('done')\n    {end}\n"
        "cli.run(main)\n",
    )
    assert out.returncode == status and out.stdout == "done\n", (out.returncode, out.stderr)
    assert "Interrupted" not in out.stderr


def test_a_sigterm_the_parent_ignored_stays_ignored(tmp_path):
    """A script started with SIGTERM ignored (as SIGINT is for a shell's background job) keeps it
    ignored: a SIGTERM neither ends it nor prints a line."""
    script = tmp_path / "script.py"
    script.write_text(
        "from swin_flax import cli\ncli.start()\nimport os, signal\n"
        "def main(argv):\n    os.kill(os.getpid(), signal.SIGTERM)\n    print('went on')\n"
        "cli.run(main)\n"
    )

    def ignore_sigterm():
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    out = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=ignore_sigterm,
    )
    assert (out.returncode, out.stdout, out.stderr) == (0, "went on\n", "")


SUMMARY = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts", "summary.py"
)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("def get_config(:\n    pass\n", "bad.py line 1 failed to load (SyntaxError"),
        (
            "def get_config():\n    raise RuntimeError('boom')\n",
            "bad.py line 2 failed to load (RuntimeError: boom)",
        ),
        # absl and ml_collections wrap a ValueError of get_config: the file's own error is named.
        (
            "def get_config():\n    raise ValueError('bad value')\n",
            "bad.py line 2 failed to load (ValueError: bad value)",
        ),
        ("x = 1\n", "bad.py defines no get_config(): give it one that returns the config"),
        ("def get_config():\n    pass\n", "bad.py: get_config() returned None. Make it return"),
        (None, "bad.py: no such config file"),
        (None, "bad.py: no such config file"),  # with an override of one of its fields
        (None, "bad.py: no such config file"),  # as -config=FILE (absl takes one dash too)
    ],
    ids=[
        "syntax_error",
        "get_config_raises",
        "value_error",
        "no_get_config",
        "returns_none",
        "missing",
        "missing+",
        "missing-",
    ],
)
def test_a_config_file_that_does_not_load_is_one_paragraph(tmp_path, request, text, expected):
    config = tmp_path / "bad.py"
    if text is not None:
        config.write_text(text)
    override = ["--config.model.embed_dim=8"] if request.node.name.endswith("missing+]") else []
    flag = (
        [f"-config={config}"]
        if request.node.name.endswith("missing-]")
        else ["--config", str(config)]
    )
    out = subprocess.run(
        [sys.executable, SUMMARY, *flag, *override],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    msg = " ".join(out.stderr.split())
    assert out.stderr.lstrip().startswith("Error: ") and expected in msg, msg  # no absl lines first
    assert "configs/strong.py" in msg


def test_a_required_flag_left_out_is_named_with_its_help():
    show = os.path.join(os.path.dirname(SUMMARY), "benchmark_input.py")
    out = subprocess.run([sys.executable, show], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    msg = " ".join(out.stderr.split())
    assert msg.startswith("Error: --config (Path to a config file, e.g. configs/strong.py) is "), (
        msg
    )
    # A required config flag given a file whose get_config() returns None: said as such.
    none = os.path.join(tempfile.mkdtemp(), "none.py")
    with open(none, "w") as f:
        f.write("def get_config():\n    return None\n")
    out = subprocess.run([sys.executable, show, "--config", none], capture_output=True, text=True)
    assert "none.py: get_config() returned None. Make it return" in " ".join(out.stderr.split())
    main = os.path.join(os.path.dirname(SUMMARY), "main.py")
    out = subprocess.run([sys.executable, main], capture_output=True, text=True, timeout=120)
    msg = " ".join(out.stderr.split())  # both of main.py's, in one paragraph
    assert msg.startswith("Error: --config (") and ") and --workdir (Folder for " in msg, msg
    assert ") are missing. See `main.py --helpshort` for the flags." in msg, msg


def test_a_config_file_that_is_not_python_is_one_paragraph(tmp_path):
    """A run's config.json given as --config (ml_collections would run it as Python)."""
    config = tmp_path / "config.json"
    config.write_text('{"seed": null}\n')
    out = subprocess.run(
        [sys.executable, SUMMARY, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    msg = " ".join(out.stderr.split())
    assert msg.startswith(f"Error: --config {config} is not a Python config file."), msg


def test_flag_errors_name_the_config_fields_only_for_config_flags():
    out = subprocess.run(
        [sys.executable, SUMMARY, "--config=configs/demo.py", "--depth=0"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=os.path.dirname(os.path.dirname(SUMMARY)),
    )
    msg = " ".join(out.stderr.split())
    assert out.returncode == 2 and "flag --depth=0" in msg, msg
    assert "--config.FIELD" not in msg and "See `summary.py --helpshort` for the flags." in msg


def test_a_tuple_field_given_twice_is_refused_not_joined():
    """ml_collections joins the tuples of a field given twice: depths (2, 2) twice would build a
    four-stage model. One value per flag (`--config.model.depths 2 --config.model.depths 2`) is its
    documented way to give a tuple, and stays."""
    summary = lambda *overrides: subprocess.run(
        [sys.executable, SUMMARY, "--config=configs/demo.py", *overrides],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=os.path.dirname(os.path.dirname(SUMMARY)),
    )
    out = summary(*["--config.model.depths=(2,2)", "--config.model.num_heads=(2,4)"] * 2)
    msg = " ".join(out.stderr.split())
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert msg.startswith("Error: --config.model.depths is given 2 times ((2,2) and (2,2)):"), msg
    assert "into (2, 2, 2, 2). Give it once" in msg, msg
    out = summary("--config.model.depths", "2", "--config.model.depths", "2")
    assert out.returncode == 0 and "Total params: 136,822" in out.stdout, out.stderr


def test_a_flag_value_after_an_equals_sign_may_start_with_the_home_folder(tmp_path):
    """`--config=~/demo.py` reads $HOME/demo.py (the shell expands `~` only in `--config ~/demo.py`)."""
    repo = os.path.dirname(os.path.dirname(SUMMARY))
    with open(os.path.join(repo, "configs", "demo.py")) as f, open(tmp_path / "demo.py", "w") as g:
        g.write(f.read())
    out = subprocess.run(
        [sys.executable, SUMMARY, "--config=~/demo.py"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=repo,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert out.returncode == 0 and "Total params: 136,822" in out.stdout, out.stderr


def test_an_output_file_is_checked_before_the_work(tmp_path, monkeypatch, capsys):
    """--json / --markdown of every script: a file path in a folder that exists and can be written
    (os.access: root, as in CI, may write anywhere, hence the patched permission), else exit 2."""
    cli.check_output_file("json", None)
    cli.check_output_file("json", str(tmp_path / "scores.json"))
    for path, expected in (
        (tmp_path / "missing" / "scores.json", "is not a file path in a folder that exists"),
        (tmp_path, f"--json {tmp_path} is a folder: give a file path in it, or another path."),
    ):
        with pytest.raises(SystemExit) as e:
            cli.check_output_file("json", str(path))
        err = " ".join(capsys.readouterr().err.split())
        assert e.value.code == cli.EXIT_USER_ERROR and expected in err
    monkeypatch.setattr(cli.os, "access", lambda path, mode: False)
    with pytest.raises(SystemExit):
        cli.check_output_file("markdown", str(tmp_path / "table.md"))
    err = " ".join(capsys.readouterr().err.split())
    assert f"--markdown {tmp_path / 'table.md'}: the folder {tmp_path} cannot be written" in err


def _refusal(capsys, *args, **kwargs) -> str:
    with pytest.raises(SystemExit) as e:
        cli.check_output_file(*args, **kwargs)
    assert e.value.code == cli.EXIT_USER_ERROR
    return " ".join(capsys.readouterr().err.split())


def test_an_output_file_replaces_nothing_the_command_reads(tmp_path, monkeypatch, capsys):
    """`predict.py --workdir runs/a --json runs/a/config.json` replaced the run's config.json, and
    `--json img.png img.png` the image: a run's folder (given as --workdir, or by a --checkpoint in
    it) keeps its records and folders (runfiles.FOLDERS), an input file given is not replaced (a
    file in a folder given may be); an existing file this user may not write is refused before the
    work. Found by a predict/export user trial; a folder of the user's in the run (exports/,
    preds/), refused too, by a review."""
    run = tmp_path / "runs" / "a"
    step = run / "checkpoints" / "best" / "8"
    for folder in (step / "state", step / "meta", run / "eval", run / "runs", run / "preds"):
        folder.mkdir(parents=True)
    (run / "config.json").write_text("{}")
    image = tmp_path / "img.png"
    image.write_bytes(b"png")
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.png").write_bytes(b"png")
    monkeypatch.chdir(tmp_path)
    keep = ["runs/a", None, "img.png", "photos"]  # as a command line gives them
    said = _refusal(capsys, "json", "runs/a/config.json", keep=["runs/a"])
    assert said == (
        "Error: --json runs/a/config.json is among the files of runs/a, the run this command reads "
        "(its config.json, records and folders checkpoints/, runs/, plugins/, compilation_cache/ "
        "are the run's own): give another path, e.g. a new name in runs/a or a path in "
        "runs/a/eval/."
    )
    assert (run / "config.json").read_text() == "{}"
    for out, given in (
        (run / "checkpoints" / "best" / "x.json", [str(run)]),  # new, but among its checkpoints
        (run / "runs" / "x.json", [str(run)]),  # new, in another of its folders
        (run / "plugins" / "x.json", [str(run)]),  # in a folder it makes only when profiling
        (run / "compilation_cache" / "x.json", [str(run)]),
        (run / "plugins", [str(run)]),  # a file where that folder would be made
        (run / "summary.json", [str(run)]),  # its record, not there yet
        (run / "events.out.tfevents.1.host", [str(run)]),  # its TensorBoard events
        (run / "config.json", [None, str(step)]),  # the run of a --checkpoint
    ):
        said = _refusal(capsys, "json", str(out), create_folder=True, keep=given)
        assert f"--json {out} is among the files of " in said
    said = _refusal(capsys, "out", "./img.png", create_folder=True, keep=keep)
    assert said == (
        "Error: --out ./img.png is an input of this command (img.png): give another path, or it "
        "would be replaced."
    )
    assert image.read_bytes() == b"png"
    # `predict.py photos/ --json photos/preds.json` run twice: the second replaces the first's file
    # (a folder given is read for its images only; found by a review).
    assert cli.check_output_file("json", "photos/preds.json", keep=keep) == ""
    (tmp_path / "photos" / "preds.json").write_text("{}")
    assert cli.check_output_file("json", "photos/preds.json", keep=keep) == cli.REPLACING
    # What may be written: the run's eval/, a new name beside its files (an export kept with the
    # run), a folder of the user's in it (new or not), a new file in an input folder, anywhere else.
    assert cli.check_output_file("out", "runs/a/exports/x", create_folder=True, keep=keep) == ""
    for out in (
        run / "eval" / "scores.json",
        run / "preds.json",
        run / "preds" / "x.json",
        tmp_path / "photos" / "p.json",
        tmp_path / "p.json",
    ):
        assert cli.check_output_file("json", str(out), keep=keep) == ""
    (run / "preds.json").write_text("{}")  # written there before: replaced again, as said
    assert cli.check_output_file("json", "runs/a/preds.json", keep=keep) == cli.REPLACING
    (tmp_path / "p.json").write_text("{}")
    assert cli.check_output_file("json", "p.json", keep=keep) == " (replacing the file there)"
    # An existing file this user cannot write (as root, every file can be: the check patched).
    monkeypatch.setattr(cli.os, "access", lambda path, mode: os.path.isdir(path))
    assert _refusal(capsys, "json", "p.json") == (
        "Error: --json p.json is a file this user cannot write (a read-only file, or another "
        "user's): give another path."
    )


def test_an_error_paragraph_keeps_its_own_lines(capsys):
    """A message with a numbered list of choices (the no-data error) prints one line per choice,
    each wrapped at 100 characters with its continuation indented under the item's text."""
    long_item = "  2. " + " ".join(["word"] * 30)
    with pytest.raises(SystemExit) as e:
        cli.exit_user_error(
            "no data. Supply it in one of two ways:\n  1. short choice.\n" + long_item
        )
    lines = capsys.readouterr().err.strip("\n").split("\n")
    assert e.value.code == cli.EXIT_USER_ERROR
    assert lines[:2] == ["Error: no data. Supply it in one of two ways:", "  1. short choice."]
    assert lines[2].startswith("  2. word") and len(lines) == 4 and max(map(len, lines)) <= 100
    assert all(line.startswith("     word") for line in lines[3:])
    assert " ".join(" ".join(lines[2:]).split()) == "2. " + " ".join(["word"] * 30)
    # A path or URL is never split, at a hyphen or anywhere else, even when longer than a line.
    path = "/runs/a-very-long-folder-name/" + "-".join(["experiment"] * 12)
    with pytest.raises(SystemExit):
        cli.exit_user_error(f"the workdir {path} does not exist: " + "give another " * 8)
    assert path in capsys.readouterr().err.split()


def test_a_closed_stdout_is_not_an_error(tmp_path):
    """stdout read by `head -1`, which exits after a line: the script goes on to its end (exit 0,
    no traceback, what it writes after the pipe closed reaches its files)."""
    code = (
        "from swin_flax import cli\ncli.start()\nimport sys, time\n"
        "print('first', flush=True)\ntime.sleep(0.5)\n"  # head has read its line and exited
        "for i in range(10000):\n    print('more', i, flush=True)\n"
        "open('after.txt', 'w').write('written')\n"
    )
    out = subprocess.run(
        [
            "bash",
            "-c",
            f"{sys.executable} -c {shlex.quote(code)} | head -1; exit ${{PIPESTATUS[0]}}",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert out.returncode == 0 and out.stdout == "first\n", out.stderr[-3000:]
    assert out.stderr == "" and (tmp_path / "after.txt").read_text() == "written"


@pytest.mark.parametrize(
    "given, expected",
    [
        (["--num_epochs=2"], "--num_epochs is a config field, not a flag of summary.py: set it as "
         "--config.num_epochs=2."),
        (["--model.embed_dim", "8"], "set it as --config.model.embed_dim VALUE."),
    ],
)  # fmt: skip
def test_a_config_field_given_as_a_flag_says_how_to_set_it(given, expected):
    """`--config.` left out: absl's 'did you mean' offered --num_processes for --num_epochs."""
    config = os.path.join(os.path.dirname(SUMMARY), os.pardir, "configs", "demo.py")
    out = subprocess.run(
        [sys.executable, SUMMARY, "--config", config, *given],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2, out.stderr
    msg = " ".join(out.stderr.split())
    assert msg.startswith("Error: --") and msg.endswith(expected), msg


def test_importing_the_package_in_python_turns_onednn_off():
    """A notebook's `import swin_flax.train` (TensorFlow loads): oneDNN off, so the pipeline's
    pixels do not depend on the CPU (and its notice is not printed); a value set before wins."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    code = "import os, swin_flax.train; print(os.environ['TF_ENABLE_ONEDNN_OPTS'])"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert (out.returncode, out.stdout) == (0, "0\n") and "oneDNN" not in out.stderr, out.stderr
    env["TF_ENABLE_ONEDNN_OPTS"] = "1"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.stdout == "1\n"


def test_project_console_in_python_keeps_the_projects_lines(tmp_path):
    """cli.project_console() outside a script (a notebook): the project's INFO lines, short, and no
    library's INFO lines (orbax's save lines here); absl's default shows neither. The notebook's
    own logging (its handler, format and INFO lines) stays as it was; a second call adds nothing."""
    code = (
        "import logging, sys\n"
        "import numpy as np\n"
        "logging.basicConfig(stream=sys.stdout, format='MINE %(message)s')\n"
        "logging.getLogger('notebook').setLevel(logging.INFO)\n"
        "from swin_flax import checkpoints, cli, rundir\n"
        "cli.project_console()\n"
        "cli.project_console()\n"
        "logging.getLogger('notebook').info('my line')\n"
        "rundir.announce('own line')\n"
        f"c = checkpoints.Checkpoints({str(tmp_path / 'w')!r})\n"
        "c.save('latest', 1, {'x': np.zeros(2)}, {})\n"
        "c.close()\n"
    )
    repo = os.path.dirname(os.path.dirname(cli.__file__))  # holds .venv: its libraries are not ours
    for cwd in (tmp_path, repo):
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout == "MINE my line\nown line\n"  # the project's lines not in its format
        assert re.fullmatch(r"\d\d:\d\d:\d\d own line\n", out.stderr), out.stderr  # no orbax


def test_a_lost_peer_is_found_in_the_wrapped_errors_and_a_looping_chain_ends():
    gloo = RuntimeError("Gloo AllGather failed: [..] Connection closed by peer [10.0.0.2]:4321")
    wrapper = ValueError("orbax: barrier failed")
    wrapper.__cause__ = gloo
    assert errors.lost_peer(wrapper) and errors.lost_peer(gloo)
    # The gradients' all-reduce, where a dead peer is met in training, names itself with a hyphen.
    assert errors.lost_peer(
        RuntimeError(
            "INTERNAL: Error dispatching computation: Gloo all-reduce failed: [external/gloo/gloo/"
            "transport/tcp/pair.cc:538] Read error [127.0.0.1]:40123: Connection reset by peer"
        )
    )
    # A peer gone before the train step's collectives connected: gloo waited for it in vain.
    assert errors.lost_peer(
        RuntimeError(
            "INTERNAL: Error dispatching computation: Gloo context initialization failed: "
            "DEADLINE_EXCEEDED: GetKeyValue() timed out with key: cpu:gloo/0,1,2048,2049/2 and "
            "duration: 29.99999979s"
        )
    )
    # A collective that failed for another reason, or a peer closing a socket outside gloo, is not.
    assert not errors.lost_peer(RuntimeError("Gloo AllGather failed: timeout after 30s"))
    assert not errors.lost_peer(OSError("Connection reset by peer"))
    a, b = ValueError("a"), KeyError("b")  # each the other's context: the walk still ends
    a.__context__, b.__context__ = b, a
    assert not errors.lost_peer(a)


def test_a_lost_peer_in_any_error_is_one_paragraph_that_keeps_its_cause(monkeypatch, capsys):
    """A gather at start-up raises gloo's failure as a ValueError (not only a RuntimeError): it is
    the Process lost paragraph too, exit 75. JAX's line repeats 'Error dispatching computation: '
    and is long: each part is said once and the middle cut, so that its end, the cause, stays."""
    said = (
        "INTERNAL: Error dispatching computation: Error dispatching computation: INTERNAL: Error "
        "dispatching computation: Error dispatching computation: Gloo AllGather failed: "
        "[external/gloo/gloo/transport/tcp/pair.cc:538] Read error [10.128.0.12]:27011: "
        "Connection reset by peer"
    )
    monkeypatch.setattr(os, "_exit", lambda status: sys.exit(status))  # the process lives on
    with pytest.raises(SystemExit) as exit_info, cli.friendly_errors():
        raise ValueError(f"{said}\nmore lines of JAX's")
    assert exit_info.value.code == errors.EXIT_PREEMPTED
    err = " ".join(capsys.readouterr().err.split())
    assert err.startswith("Process lost: another process of this run stopped answering"), err
    assert err.count("Error dispatching computation") == 1, err
    assert "Read error [10.128.0.12]:27011: Connection reset by peer. This one stops too." in err
    # Over the limit, the middle goes: the line's start and its cause stay.
    cut = cli._gist("a" * 20 + " " + "word " * 100 + "Connection reset by peer", 120)
    assert len(cut) <= 120 and cut.startswith("a" * 20 + " word") and " ... " in cut, cut
    assert cut.endswith("word Connection reset by peer"), cut
    # A connection never made (gloo's 30 s wait) may be a peer only late: not said to be gone.
    with pytest.raises(SystemExit), cli.friendly_errors():
        raise RuntimeError(
            "INTERNAL: Gloo context initialization failed: DEADLINE_EXCEEDED: GetKeyValue() "
            "timed out with key: cpu:gloo/0,1,2048,2049/2 and duration: 29.99999979s"
        )
    err = " ".join(capsys.readouterr().err.split())
    assert "stopped answering (it is gone, or it fell more than gloo's wait behind" in err, err
    assert "crashed" not in err
    late = RuntimeError("Gloo context initialization failed: DEADLINE_EXCEEDED: GetKeyValue()")
    with pytest.raises(SystemExit), cli.friendly_errors():  # wrapped: its words are in the cause
        raise ValueError("a checkpoint barrier failed") from late
    assert "it fell more than gloo's wait behind" in " ".join(capsys.readouterr().err.split())


@pytest.fixture
def parse(monkeypatch, capsys):
    """cli.parse_flags in this process on flags of its own (a script's --config, --workdir and
    --depth): the config it loaded, or the exit status and the error paragraph on one line."""
    from absl import flags  # noqa: PLC0415
    from ml_collections import config_flags  # noqa: PLC0415

    def parse(*args: str):
        argv = ["summary.py", "--verbosity=0", *args]  # --verbosity given: no console set up
        fv = flags.FlagValues()
        config_flags.DEFINE_config_file("config", None, "A config file.", fv, sys_argv=argv)
        flags.DEFINE_string("workdir", None, "A run's folder.", flag_values=fv)
        flags.DEFINE_integer("depth", 2, "Module levels.", flag_values=fv)
        flags.DEFINE_integer("verbosity", 0, "absl's.", flag_values=fv)
        monkeypatch.setattr(flags, "FLAGS", fv)
        monkeypatch.setattr(sys, "path", list(sys.path))  # parse_flags adds the configs' roots
        # ml_collections loads a config file as this module, into the namespace a former one left
        monkeypatch.delitem(sys.modules, "config_config", raising=False)
        try:
            cli.parse_flags(argv)
        except SystemExit as e:
            return e.code, " ".join(capsys.readouterr().err.split())
        return fv.config

    return parse


SIZED = """from swin_flax.config import default_config

SIZES = {"s": 32, "m": 48}


def get_config(arg="size=s"):
    kw = dict(kv.split("=") for kv in arg.split(","))
    c = default_config()
    c.model.embed_dim = SIZES[kw["size"]]
    if "boom" in kw:
        raise ValueError("boom")
    return c
"""


@pytest.mark.parametrize("form", ["--config FILE", "--config=FILE", "-config FILE"])
def test_a_config_file_error_names_its_line_in_every_form_of_the_flag(tmp_path, parse, form):
    """`--config FILE:arg` (a space, then an argument with `=`) too: its file's error with its
    line, not a command-line error."""
    (tmp_path / "sized.py").write_text(SIZED)
    given = lambda arg: form.replace("FILE", f"{tmp_path / 'sized.py'}:{arg}").split()
    assert parse(*given("size=m")).model.embed_dim == 48
    for arg, line, said in (
        ("size=xl", 9, "KeyError: 'xl'"),
        ("size=s,boom=1", 11, "ValueError: boom"),
    ):
        status, msg = parse(*given(arg))
        assert status == 2, msg
        assert msg.startswith(
            f"Error: the config file {tmp_path / 'sized.py'} line {line} failed to load ({said}). "
            "Fix it, or give another --config"
        ), msg


def test_a_config_file_anywhere_may_start_from_a_recipe(tmp_path, parse, monkeypatch):
    """`from configs import demo` in a file outside configs/: the recipes of the checkout this
    package runs from are importable without PYTHONPATH; elsewhere the message says what to do."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(cli.__file__)))
    path = [p for p in sys.path if os.path.abspath(p) != repo]
    monkeypatch.setattr(sys, "path", path)
    for name in [m for m in sys.modules if m.split(".")[0] == "configs"]:
        monkeypatch.delitem(sys.modules, name)
    mine = tmp_path / "myconfigs" / "tiny.py"
    mine.parent.mkdir()
    mine.write_text(
        "from configs import demo\n\ndef get_config():\n    c = demo.get_config()\n"
        "    c.num_epochs = 1\n    return c\n"
    )
    config = parse("--config", str(mine))
    assert (config.model.embed_dim, config.model.depths, config.num_epochs) == (32, (2, 2), 1)
    for name in [m for m in sys.modules if m.split(".")[0] == "configs"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "path", path)  # without the checkout the first parse added
    monkeypatch.setattr(cli, "_CHECKOUT", str(tmp_path))  # an installed package: no configs/
    status, msg = parse("--config", str(mine))
    assert status == 2 and f"{mine} line 1 failed to load (ModuleNotFoundError: " in msg, msg
    assert "else put the folder that holds configs/ on PYTHONPATH)." in msg, msg
    # Another `configs` package ahead of the recipes (the user's own, or one in site-packages).
    (other := tmp_path / "other" / "configs").mkdir(parents=True)
    (other / "__init__.py").write_text("")
    monkeypatch.setattr(sys, "path", [str(other.parent), *path])
    monkeypatch.setattr(cli, "_CHECKOUT", repo)
    for name in [m for m in sys.modules if m.split(".")[0] == "configs"]:
        monkeypatch.delitem(sys.modules, name)
    status, msg = parse("--config", str(mine))
    said = f"(ImportError: cannot import name 'demo' from 'configs' ({other / '__init__.py'}); "
    assert status == 2 and f"{mine} line 1 failed to load {said}the recipes in" in msg, msg
    assert "else put the folder that holds configs/ on PYTHONPATH)." in msg, msg


@pytest.mark.parametrize(
    "body, expected",
    [
        ("    return {'learning_rate': 1e-3}\n", ": get_config() returned a dict, not a ConfigDict. "
         "Make it return the config (a ConfigDict, e.g. default_config() with its changes)"),
        ("    c.learning_rate = '1e-3'\n    return c\n", " line 5 failed to load "
         "(config.learning_rate: '1e-3' is a str; the field takes a float). Fix it"),
        ("    c.model.embed_dim = 32.0\n    return c\n", " line 5 failed to load "
         "(config.model.embed_dim: 32.0 is a float; the field takes an int)."),
        ("    c.remat = True\n    return c\n", " line 5 failed to load "
         "(config.remat: True is a bool; the field takes a str)."),
        ("    c.mdoel.embed_dim = 8\n    return c\n", " line 5 failed to load (AttributeError: "
         "no such field 'mdoel' (did you mean \"model\" instead of \"mdoel\"?)). Fix it"),
        (None, " defines no get_config(): give it one that returns the config (a ConfigDict, e.g. "
         "default_config() with its changes), as configs/strong.py does."),
    ],
    ids=["returns_a_dict", "str_for_float", "float_for_int", "bool_for_str", "typo_read", "no_get"],
)  # fmt: skip
def test_a_config_file_that_misuses_the_config_is_said_plainly(tmp_path, parse, body, expected):
    config = tmp_path / "mine.py"
    head = "from swin_flax.config import default_config\n\n"
    text = (
        f"{head}def get_config():\n    c = default_config()\n{body}" if body else f"{head}x = 1\n"
    )
    config.write_text(text)
    status, msg = parse("--config", str(config))
    assert status == 2 and msg.startswith(f"Error: the config file {config}{expected}"), msg


NULLABLE = ("data_seed", "archive", "data_dir", "pretrained", "model.qk_scale", "mix.cutmix_minmax")


def test_a_field_whose_default_is_none_is_set_back_to_none(tmp_path, parse):
    config = tmp_path / "set.py"
    config.write_text(
        "from swin_flax.config import default_config\n\ndef get_config():\n"
        "    c = default_config()\n    c.data_seed, c.archive, c.data_dir = 5, 'a.tar.gz', 'tfds'\n"
        "    c.pretrained, c.model.qk_scale = 'swin.pth', 0.5\n"
        "    c.mix.cutmix_minmax = (0.2, 0.8)\n    return c\n"
    )
    flat = lambda c: [c.data_seed, c.archive, c.data_dir, c.pretrained, c.model.qk_scale,
                      c.mix.cutmix_minmax]  # fmt: skip
    assert flat(parse("--config", str(config))) == [5, "a.tar.gz", "tfds", "swin.pth", 0.5,
                                                     (0.2, 0.8)]  # fmt: skip
    nones = [f"--config.{f}=None" for f in NULLABLE[:3]] + [f"--config.{f}" for f in NULLABLE[3:]]
    args = [*nones[:3], nones[3], "None", nones[4], "None", nones[5], "None"]  # both forms
    assert flat(parse("--config", str(config), *args)) == [None] * 6
    # The last one given wins; another field's None is still refused.
    config_3 = parse("--config", str(config), "--config.data_seed=None", "--config.data_seed=3")
    assert config_3.data_seed == 3
    config_none = parse("--config", str(config), "--config.data_seed=3", "--config.data_seed=None")
    assert config_none.data_seed is None
    # After a true/false field given without a value, which takes none.
    flags = ["--config.weight_decay_exempt", "--config.data_seed=None", "--config.archive", "None"]
    config_bool = parse("--config", str(config), "--noconfig.weight_decay_exempt", *flags)
    assert (config_bool.weight_decay_exempt, config_bool.data_seed, config_bool.archive) == (
        True, None, None
    )  # fmt: skip
    status, msg = parse("--config", str(config), "--config.learning_rate=None")
    assert status == 2 and "--config.learning_rate=None: could not convert string to float" in msg
    # A value left out at the end (`--config.pretrained $CKPT`, CKPT unset): absl says so.
    status, msg = parse("--config", str(config), "--config.pretrained")
    assert status == 2 and "Missing value for flag --config.pretrained" in msg, msg
    # In a --flagfile, as on the command line: its config file and overrides, its tuples counted.
    (flagfile := tmp_path / "flags.txt").write_text(
        f"--config={config}\n--config.data_seed=None\n--config.archive\nNone\n"
        "--config.model.depths=2,2\n"
    )
    given = parse(f"--flagfile={flagfile}")
    assert (given.data_seed, given.archive, given.data_dir, given.model.depths) == (
        None, None, "tfds", (2, 2)
    )  # fmt: skip
    status, msg = parse(f"--flagfile={flagfile}", "--config.model.depths=2,2")
    assert status == 2 and msg.startswith("Error: --config.model.depths is given 2 times"), msg


def test_overrides_before_or_without_the_config_file_say_to_give_it_first(parse):
    demo = os.path.join(os.path.dirname(SUMMARY), os.pardir, "configs", "demo.py")
    status, msg = parse("--config.model.embed_dim=64", "--config", demo)
    assert (status, msg) == (2, "Error: --config.model.embed_dim=64 comes before --config FILE, "
                                "whose config it changes: give --config FILE first, then its "
                                "overrides.")  # fmt: skip
    for override in ("model.embed_dim=64", "archive=None"):  # None: a value of its own
        field = override.partition("=")[0]
        status, msg = parse("--workdir", "runs/a", f"--config.{override}")
        assert (status, msg) == (2, f"Error: --config.{field} changes a field of the config "
                                    "file that --config gives, but no --config FILE is given: "
                                    "give --config FILE (e.g. configs/strong.py) first, then its "
                                    "overrides.")  # fmt: skip


def test_two_config_files_or_a_bool_after_a_space_are_refused(parse):
    demo = os.path.join(os.path.dirname(SUMMARY), os.pardir, "configs", "demo.py")
    strong = os.path.join(os.path.dirname(SUMMARY), os.pardir, "configs", "strong.py")
    status, msg = parse("--config", demo, f"--config={strong}")
    assert (status, msg) == (2, f"Error: --config is given twice ({demo} and {strong}): give one "
                                "config file, and change its fields with --config.FIELD=VALUE.")  # fmt: skip
    status, msg = parse("--config", demo, "--config.weight_decay_exempt", "False")
    assert (status, msg) == (2, "Error: unexpected argument False after "
                                "--config.weight_decay_exempt, a true/false flag, which takes its "
                                "value after '=': write --config.weight_decay_exempt=false.")  # fmt: skip
    assert (
        parse("--config", demo, "--config.weight_decay_exempt=false").weight_decay_exempt is False
    )
