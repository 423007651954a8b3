"""The package's import graph runs one way (docs/architecture.md), and the modules that serve a
finished run or the entry points import no TensorFlow."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "swin_flax"

# Each module's layer: a module imports only modules of lower layers, or of its own package
# (data/ and models/ are building blocks on the same layer that never import each other).
LAYERS = {
    "errors": 0,
    "runfiles": 0,
    "config": 1,
    "data": 2,
    "models": 2,
    "optim": 2,
    "steps": 3,
    "checkpoints": 3,
    "runs": 3,
    "distributed": 3,
    "build": 4,
    "finetune": 4,
    "rundir": 4,
    "stop": 4,
    "reports": 5,
    "progress": 5,
    "evaluate": 5,
    "train": 6,
    "predict": 6,
    "cli": 7,
}

# Imports inside functions that go up a layer, and why: config.validate is the one boundary check
# of a config, and asks the data and model modules whether their fields are valid.
ALLOWED_UPWARD = {
    ("config", "data"),
    ("config", "models"),
}


def _unit(module: str) -> str:
    """'swin_flax.data.pipeline' -> 'data'; 'swin_flax.train' -> 'train'."""
    return module.split(".")[1]


def _imports(path: pathlib.Path) -> list[tuple[str, bool]]:
    """(imported swin_flax module, whether the import sits inside a function) for every import."""
    tree = ast.parse(path.read_text())
    nested = {
        id(node)
        for func in ast.walk(tree)
        if isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef)
        for node in ast.walk(func)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("swin_flax"):
            names = [node.module] if node.module != "swin_flax" else []
            if node.module == "swin_flax" or node.module.count(".") == 1:
                names += [f"{node.module}.{a.name}" for a in node.names]
            found += [(n, id(node) in nested) for n in names if n.count(".") >= 1]
        elif isinstance(node, ast.Import):
            found += [
                (a.name, id(node) in nested) for a in node.names if a.name.startswith("swin_flax.")
            ]
    return found


def _modules() -> list[tuple[str, pathlib.Path]]:
    return [
        (".".join(("swin_flax", *p.relative_to(PACKAGE).with_suffix("").parts)), p)
        for p in sorted(PACKAGE.rglob("*.py"))
        if p.name != "__init__.py"
    ]


def test_every_module_has_a_layer():
    assert {_unit(m) for m, _ in _modules()} <= set(LAYERS), "add new modules to LAYERS"


def _upward(module: str, path: pathlib.Path) -> list[str]:
    """The imports of `module` (source at `path`) that go to its own layer or above."""
    here, wrong = _unit(module), []
    for imported, inside_function in _imports(path):
        there = _unit(imported)
        if there == here or there not in LAYERS or LAYERS[there] < LAYERS[here]:
            continue
        if not (inside_function and (here, there) in ALLOWED_UPWARD):
            wrong.append(f"{module} imports {imported}")
    return wrong


def test_no_module_imports_one_above_it():
    wrong = [w for module, path in _modules() for w in _upward(module, path)]
    assert not wrong, "\n".join(wrong)


def test_the_checker_reports_upward_imports(tmp_path):
    """A data module importing train at the top and models inside a function: both reported;
    config.validate's lazy import of a data module: allowed."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from swin_flax import train\n\n\ndef f():\n    from swin_flax.models import swin\n"
    )
    assert _upward("swin_flax.data.bad", bad) == [
        "swin_flax.data.bad imports swin_flax.train",
        "swin_flax.data.bad imports swin_flax.models",
        "swin_flax.data.bad imports swin_flax.models.swin",
    ]
    ok = tmp_path / "ok.py"
    ok.write_text("def validate():\n    from swin_flax.data import sources\n")
    assert _upward("swin_flax.config", ok) == []


@pytest.mark.parametrize(
    "modules",
    ["swin_flax.evaluate, swin_flax.predict", "swin_flax.cli, swin_flax.rundir, swin_flax.build"],
)
def test_modules_import_no_tensorflow(modules):
    code = f"import sys, {modules}; assert 'tensorflow' not in sys.modules, 'TensorFlow imported'"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
