"""setup.cfg's ranges against the lock (constraints.txt): neither can drift away from the other."""

import configparser
import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "constraints.txt"


def _setup_cfg():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return cfg


def _requirements(value):
    return [Requirement(line) for line in value.splitlines() if line.strip()]


def _install_requires():
    return _requirements(_setup_cfg()["options"]["install_requires"])


def _extras():
    extras = _setup_cfg()["options.extras_require"]
    return {name: _requirements(value) for name, value in extras.items()}


def _lock():
    """{canonical name: Version} from the lock's `name==version` lines."""
    pins = {}
    for line in LOCK.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)", line)
        assert match, f"constraints.txt: {line!r} is not an exact `name==version` pin"
        name = canonicalize_name(match[1])
        assert name not in pins, f"constraints.txt pins {name} twice"
        pins[name] = Version(match[2])
    return pins


def test_lock_pins_exact_versions_and_not_the_package_itself():
    pins = _lock()
    assert "swin-flax" not in pins
    # jaxlib is no longer declared (jax brings it) but is part of the tested set
    assert "jaxlib" in pins


def test_every_dependency_is_locked():
    pins = _lock()
    names = [r.name for r in _install_requires()] + [r.name for r in _extras()["test"]]
    missing = [n for n in names if canonicalize_name(n) not in pins]
    assert not missing, f"in setup.cfg but not pinned in constraints.txt: {missing}"
    assert "ruff" in pins  # make lint runs in CI: its rules must not move under us


@pytest.mark.parametrize("group", ["install_requires", "cuda", "tpu", "pretrained", "test"])
def test_locked_versions_lie_inside_the_declared_ranges(group):
    reqs = _install_requires() if group == "install_requires" else _extras()[group]
    pins = _lock()
    outside = [
        f"{r} (locked {pins[canonicalize_name(r.name)]})"
        for r in reqs
        if canonicalize_name(r.name) in pins
        and not r.specifier.contains(pins[canonicalize_name(r.name)], prereleases=True)
    ]
    assert not outside, f"constraints.txt pins versions outside setup.cfg's ranges: {outside}"


def test_jax_is_a_range_not_a_pin():
    """Installing onto an existing JAX (TPU VM, NGC container) must not replace it: ranges, no ==."""
    reqs = _install_requires() + [r for rs in _extras().values() for r in rs]
    pinned = [str(r) for r in reqs if any(s.operator in ("==", "===") for s in r.specifier)]
    assert not pinned, f"setup.cfg pins exact versions (they belong in constraints.txt): {pinned}"
    jax = {str(r.specifier) for r in reqs if r.name == "jax"}
    assert len(jax) == 1, f"jax, jax[cuda12] and jax[tpu] should declare the same range: {jax}"


def test_make_installs_from_the_lock():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^LOCK\s*:=\s*constraints\.txt$", makefile, re.M)
    assert re.search(r"^\$\(STAMP\):.*\$\(LOCK\)", makefile, re.M)  # the stamp depends on the lock
    assert re.search(r"pip install .*-c \$\(LOCK\) .*-e '\.\[test,pretrained\]'", makefile)
