# Two commands for users: `make run` and `make test`. Everything else is for developers.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= examples/connectors.yaml
HOST ?= 127.0.0.1
PORT ?= 8000

# Two pytest processes, a test file each at a time (module fixtures start once per file):
# the suite waits on servers and subprocesses much of its time, and this keeps it well
# under 10 minutes on 2 cores. `make test PYTEST_WORKERS=` runs it in one process.
PYTEST_WORKERS ?= -n 2 --dist loadfile

.PHONY: run test test-slow bench lint fmt clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"

# setuptools always announces how an editable install finds the package (a boxed notice,
# not a problem); the filter keeps a first `make run` free of it. Real warnings still show.
EDITABLE_QUIET := PYTHONWARNINGS="ignore:Editable installation"

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(EDITABLE_QUIET) $(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(EDITABLE_QUIET) $(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	$(BIN)/connectors serve --config $(CONFIG) --host $(HOST) --port $(PORT)

test: $(VENV)/.installed-dev
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -m "not slow and not bench" $(PYTEST_WORKERS) $(PYTEST_ARGS)

test-slow: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

bench: $(VENV)/.installed-dev
	$(BIN)/python -m benchmarks.run

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: $(VENV)/.installed-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
