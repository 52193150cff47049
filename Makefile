# The one entry point: CI runs these same targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
N ?= 5000

.PHONY: install lint format type docs test test-scale demo bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# uv installs the dev extras in seconds where pip took about two minutes; pip only installs uv.
	test -x $(BIN)/uv || $(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip install --python $(BIN)/python --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	# The import contracts in pyproject.toml ([tool.importlinter]): three layers, no cycles.
	# --no-cache: the graph of the package builds in about a second, and never goes stale.
	$(BIN)/lint-imports --no-cache

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

type: $(STAMP)
	$(BIN)/mypy

# Two test processes (pytest-xdist), each with its own local stack: most tests wait on servers and
# child processes, so two cut the suite from 13 to 9 minutes on a 2-core machine.
PYTEST_WORKERS ?= 2

# The documentation site (docs/): Sphinx, warnings as errors, a fresh environment every time
# (-E: autodoc reads the docstrings anew), into build/docs/html.
docs: $(STAMP)
	$(BIN)/sphinx-build -W --keep-going -E -q -b html docs build/docs/html

test: lint type docs
	# --durations: the slowest tests in every run, since the suite sits near its 10-minute budget.
	$(BIN)/pytest -n $(PYTEST_WORKERS) --durations=15 --cov --cov-report=term $(PYTEST_ARGS)

test-scale: $(STAMP)
	# Scale runs take minutes each on a 2-core machine: a longer per-test limit than the suite's.
	$(BIN)/pytest -m scale --timeout 1200 $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/aiosagemaker demo -n $(N)

bench: $(STAMP)
	mkdir -p benchmarks/results
	$(BIN)/python benchmarks/local_accept.py --out benchmarks/results/local_accept.json
	$(BIN)/python benchmarks/submit_inline_vs_staged.py --out benchmarks/results/submit.json
	$(BIN)/python benchmarks/watchers.py --out benchmarks/results/watchers.json

clean:
	rm -rf $(VENV) .coverage .mypy_cache .ruff_cache .pytest_cache
