"""The package's shape: imports flow one way, it installs and imports from anywhere, and
importing it has no side effects on matplotlib."""
import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import helpers

PACKAGE = Path(helpers.__file__).resolve().parent
REPO = PACKAGE.parent
# The core, in the order of the data flow: a core module imports only earlier ones and
# helpers.files. The subpackages hold what learners do not study.
CORE = [
    "data", "scan", "labels", "splits", "augment", "pipeline", "evaluation", "imbalance",
    "models", "artefacts", "predict", "explain", "training", "plots", "notebook",
]
SUBPACKAGES = {"files": set(), "scale": {"core", "files"}, "datasets": {"core", "files"},
               "app": {"core", "files", "scale", "datasets"}}
MAX_CORE_LINES = 5_000
MAX_FUNCTION_LINES = 60


def modules():
    """Every module of the package as ``(dotted name without 'helpers.', path)``."""
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        yield ".".join(parts), path


def helpers_imports(path):
    """Every helpers module ``path`` imports (``'files.images'``, ``'pipeline'``), at the top
    or inside a function."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.removeprefix("helpers.") for alias in node.names
                         if alias.name.startswith("helpers."))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("helpers"):
            base = node.module.removeprefix("helpers").removeprefix(".")
            for alias in node.names:
                name = f"{base}.{alias.name}" if base else alias.name
                if (PACKAGE / name.replace(".", "/")).with_suffix(".py").exists() \
                        or (PACKAGE / name.replace(".", "/")).is_dir():
                    found.add(name)
                elif base:
                    found.add(base)
    return found


def area(name):
    """'core', a subpackage's name, or 'root' for the package's own __init__ / __main__."""
    if name in ("__init__", "__main__"):
        return "root"
    return name.split(".")[0] if "." in name else "core"


def test_every_core_module_has_a_place_in_the_order():
    core = sorted(name for name, _ in modules() if area(name) == "core")
    assert sorted(CORE) == core, "add new core modules to CORE (and to helpers/__init__.py)"
    assert {name.split(".")[0] for name, _ in modules() if "." in name} == set(SUBPACKAGES)


def test_imports_flow_one_way_without_cycles():
    backwards = []
    for name, path in modules():
        if area(name) == "root":
            continue
        for imported in helpers_imports(path):
            source, target = area(name), area(imported)
            if source == "core" and target == "core":
                ok = CORE.index(imported) < CORE.index(name)
            elif source == "core":
                ok = target == "files"
            elif source == target:
                ok = True
            else:
                ok = target in SUBPACKAGES[source]
            if not ok:
                backwards.append(f"helpers.{name} imports helpers.{imported}")
    assert not backwards, "imports against the data flow (a cycle waiting to happen): " + \
        "; ".join(backwards)


def test_the_package_docstring_lists_the_core_in_import_order():
    listed = [line.split("``")[1] for line in helpers.__doc__.splitlines()
              if line.startswith("``")]
    assert [name for name in listed if "/" not in name] == CORE


def test_the_core_stays_small():
    lines = sum(len(path.read_text(encoding="utf-8").splitlines())
                for name, path in modules() if area(name) in ("core", "root"))
    assert lines <= MAX_CORE_LINES, f"the core has {lines} lines, over {MAX_CORE_LINES}"


def function_lengths(path):
    """``(lines of code, 'module:line name')`` of every function, its docstring not counted."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0]
            docstring = (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                         and isinstance(first.value.value, str))
            skip = first.end_lineno - first.lineno + 1 if docstring else 0
            yield node.end_lineno - node.lineno + 1 - skip, f"{path.name}:{node.lineno} {node.name}"


def test_no_function_is_over_60_lines():
    long = [f"{where} ({n} lines)" for _, path in modules()
            for n, where in function_lengths(path) if n > MAX_FUNCTION_LINES]
    assert long == []


def public_names(path):
    """Top-level functions, classes and constants of a module whose names have no underscore."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names = [node.name]
        elif isinstance(node, ast.Assign):
            names = [target.id for target in node.targets if isinstance(target, ast.Name)]
        else:
            continue
        yield from (name for name in names if not name.startswith("_"))


def test_public_names_are_used_outside_their_module():
    elsewhere = {path: path.read_text(encoding="utf-8") for path in [
        *PACKAGE.rglob("*.py"), *REPO.glob("notebooks/*.ipynb"), *REPO.glob("tests/*.py"),
        *REPO.glob("tools/*.py"), *REPO.glob("benchmarks/*.py")]}
    unused = []
    for name, path in modules():
        for public in public_names(path):
            pattern = re.compile(rf"\b{re.escape(public)}\b")
            if not any(pattern.search(text) for other, text in elsewhere.items() if other != path):
                unused.append(f"helpers.{name}.{public}")
    assert unused == [], "give these a leading underscore: " + ", ".join(unused)


@pytest.mark.parametrize("module", ["files.fileio", "files.images", "data", "scan", "labels",
                                    "splits", "scale.shards", "evaluation", "datasets.generate"])
def test_light_modules_import_without_tensorflow(module):
    code = (f"import sys, helpers.{module}; "
            "print(json.dumps(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules)))")
    result = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True,
                            text=True, timeout=120, check=True)
    assert json.loads(result.stdout) == []


def test_helpers_imports_from_any_folder(tmp_path):
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", "import helpers.app.cli, helpers; print(helpers.__file__)"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, env=environment)
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).resolve() == PACKAGE / "__init__.py"


def test_the_console_script_is_the_cli():
    script = Path(sys.executable).parent / "helpers"
    assert script.exists(), "the package is not installed in this environment: run `make setup`"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "make-data" in result.stdout


def test_importing_plots_leaves_matplotlib_settings_alone():
    code = """
import json, matplotlib
before = {key: repr(value) for key, value in matplotlib.rcParams.items()}
import helpers.plots
after = {key: repr(value) for key, value in matplotlib.rcParams.items()}
print(json.dumps(sorted(key for key in before if before[key] != after[key])))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, check=True)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_no_notebook_or_test_edits_sys_path():
    offenders = [str(path.relative_to(REPO))
                 for path in [*REPO.glob("notebooks/*.ipynb"), *REPO.glob("tests/*.py")]
                 if path.name != "test_structure.py"
                 and "sys.path." in path.read_text(encoding="utf-8")]
    assert offenders == []
