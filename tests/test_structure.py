"""The package's shape: imports flow one way, it installs and imports from anywhere, and
importing it has no side effects on matplotlib."""
import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import helpers

PACKAGE = Path(helpers.__file__).resolve().parent
REPO = PACKAGE.parent
# The import order the package docstring documents: a module may import only earlier ones.
LAYERS = [
    "fileio", "images", "data", "scan", "labels", "splits", "augment", "pipeline",
    "shards", "evaluation", "imbalance", "models", "artefacts", "predict", "explain", "training", "distribute", "plots",
    "generate", "workflows", "notebook", "cli", "__main__",
]


def helpers_imports(path):
    """Every helpers module ``path`` imports, at the top or inside a function."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("helpers."):
                    found.add(alias.name.split(".")[1])
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "helpers":
                found.update(alias.name for alias in node.names
                             if (PACKAGE / f"{alias.name}.py").exists())
            elif node.module.startswith("helpers."):
                found.add(node.module.split(".")[1])
    return found


def test_every_module_has_a_place_in_the_layers():
    modules = sorted(path.stem for path in PACKAGE.glob("*.py") if path.stem != "__init__")
    assert sorted(LAYERS) == modules, "add new modules to LAYERS (and to helpers/__init__.py)"


def test_imports_flow_one_way_without_cycles():
    backwards = []
    for module in LAYERS:
        for imported in helpers_imports(PACKAGE / f"{module}.py"):
            if LAYERS.index(imported) >= LAYERS.index(module):
                backwards.append(f"helpers.{module} imports helpers.{imported}")
    assert not backwards, "imports against the data flow (a cycle waiting to happen): " + \
        "; ".join(backwards)


def test_the_package_docstring_lists_the_modules_in_import_order():
    listed = [line.split("``")[1] for line in helpers.__doc__.splitlines()
              if line.startswith("``")]
    assert listed == [name for name in LAYERS if name != "__main__"]


@pytest.mark.parametrize("module", ["fileio", "images", "data", "scan", "labels", "splits",
                                    "shards", "evaluation", "generate"])
def test_light_modules_import_without_tensorflow(module):
    code = (f"import sys, helpers.{module}; "
            "print(json.dumps(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules)))")
    result = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True,
                            text=True, timeout=120, check=True)
    assert json.loads(result.stdout) == []


def test_helpers_imports_from_any_folder(tmp_path):
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", "import helpers.cli, helpers; print(helpers.__file__)"],
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


@pytest.mark.parametrize("old, new", [
    ("helpers.training.train_from_source", "helpers.workflows.train_from_source"),
    ("helpers.predict.evaluate_model_dir", "helpers.workflows.evaluate_model_dir"),
    ("helpers.evaluation.predict_split", "helpers.predict.predict_split"),
])
def test_moved_functions_say_where_they_went(old, new):
    module, name = old.rsplit(".", 1)
    with pytest.raises(ImportError, match=new.replace(".", r"\.")):
        exec(f"from {module} import {name}", {})


@pytest.mark.parametrize("old", [
    "helpers.training.load_artefacts", "helpers.training.save_artefacts",
    "helpers.training.update_thresholds", "helpers.training.read_history",
    "helpers.training.predict_dataset", "helpers.training.DEFAULT_AUGMENT",
    "helpers.training.SPLITS_FILE", "helpers.pipeline.augmentation",
    "helpers.pipeline.augment_images", "helpers.plots.PanelGrid",
])
def test_names_that_moved_down_keep_working(old):
    module, name = old.rsplit(".", 1)
    namespace = {}
    exec(f"from {module} import {name} as found", namespace)
    assert namespace["found"] is not None
