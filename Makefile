# Every developer task is one command. `make demo` and `make test` create .venv themselves.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
# pytest-xdist workers for `make test` (CI has 2 cores; many tests wait on servers and subprocesses)
TEST_WORKERS ?= 2
# On machines that carry the shared data mirror (offline development, CI), read the catalog from it.
MIRROR_DIR := $(abspath ../shared/data/mirror)
ifneq ($(wildcard $(MIRROR_DIR)),)
export MINIML_DATA_MIRROR ?= $(MIRROR_DIR)
endif
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: venv demo test lint typecheck unit integration e2e bench clean

$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run make PYTHON=python3"; exit 2; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned: the CPU build from disk here, the default wheel for online users.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev,onnx,generative,openai,ray]"
	touch $@

venv: $(VENV)/.installed

demo: venv
	VENV=$(VENV) bash scripts/demo.sh

lint: venv
	$(VENV)/bin/ruff check src tests bench scripts
	$(VENV)/bin/ruff format --check src tests bench scripts
	# the layers, no string imports, no import cycles (pyproject.toml [tool.importlinter]); this tree's src
	PYTHONPATH=src $(VENV)/bin/lint-imports --cache-dir .import_linter_cache

typecheck: venv
	$(VENV)/bin/mypy

unit: venv
	$(PY) -m pytest tests/unit -q

integration: venv
	$(PY) -m pytest tests/integration -q

e2e: venv
	$(PY) -m pytest tests/e2e -q

test: lint typecheck
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

bench: venv
	@echo "benchmarks: see bench/README.md (each script prints its figures and the machine)"

clean:
	rm -rf .mypy_cache .ruff_cache .pytest_cache .import_linter_cache build dist src/*.egg-info
