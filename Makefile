# Two commands do everything on a fresh machine:
#   make run    set up, generate the embedded data, execute every notebook into outputs/
#   make test   set up, run all tests (notebooks included, in quick mode)
# `make run QUICK=1` runs the same notebooks on fewer images and epochs;
# `make run FORCE=1` re-executes notebooks that look up to date (after changing the data).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
QUICK ?= 0
FORCE ?= 0
STAMP := $(VENV)/.installed

.PHONY: setup data run test lab bench clean

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	@# setuptools warns that any folder named helpers/ in the working directory shadows the install: true, and fine here
	PYTHONWARNINGS=ignore $(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

data: setup
	QUICK=$(QUICK) $(PY) -c "from helpers.datasets.generate import ensure_dataset; [print(ensure_dataset(p)) for p in ('fashion', 'scenes')]"

run: data
	QUICK=$(QUICK) $(PY) tools/run_notebooks.py $(if $(filter 1,$(FORCE)),--force)

test: setup
	$(PY) -m pytest

lab: setup
	$(VENV)/bin/jupyter lab notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

# Keras 2's ImageDataGenerator (tf_keras) is installed beside the venv, for the benchmark only:
# it requires the full `tensorflow` package, which would clash with tensorflow-cpu.
bench: setup
	$(PY) -m pip install --quiet --no-deps --upgrade --target .venv-bench -r benchmarks/requirements.txt
	$(PY) benchmarks/input_pipeline.py
	$(PY) benchmarks/scan_csv.py
	$(PY) benchmarks/shards.py
	$(PY) benchmarks/copies.py
	$(PY) benchmarks/export.py

clean:
	rm -rf outputs
