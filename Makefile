# Two commands set everything up on a fresh machine with Python 3.11+:
#   make run    installs the runtime lock into .venv and serves the demo on the embedded default
#   make test   installs the development lock into .venv and runs the whole suite
# Every install comes from requirements/*.lock (exact versions and hashes); `make lock`
# refreshes them on purpose.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
UV_VERSION := 0.13.9
export PIP_DISABLE_PIP_VERSION_CHECK := 1
PIP := $(BIN)/python -m pip --quiet
# Our own package on top of the locked ones: nothing resolved, setuptools taken from the lock.
INSTALL_SELF := $(PIP) install --no-deps --no-build-isolation -e .

.PHONY: install install-dev run serve test check bench lock clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is required, found " + sys.version) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-run: requirements/run.lock pyproject.toml | $(BIN)/python
	$(PIP) install --require-hashes --no-deps -r requirements/run.lock
	$(INSTALL_SELF)
	@touch $@

$(VENV)/.installed-dev: requirements/dev.lock pyproject.toml | $(BIN)/python
	$(PIP) install --require-hashes --no-deps -r requirements/dev.lock
	$(INSTALL_SELF)
	@touch $@ $(VENV)/.installed-run

install: $(VENV)/.installed-run
install-dev: $(VENV)/.installed-dev

run: install
	$(BIN)/liveop demo --host $(HOST) --port $(PORT)

serve: install
	$(BIN)/liveop serve --host $(HOST) --port $(PORT)

test: install-dev
	$(BIN)/python -m pytest

check: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: install-dev
	$(BIN)/python -m bench.http_bench
	$(BIN)/python -m bench.realtime_bench

# Refresh the locks on purpose, then commit them on their own with `make check test` green.
lock: | $(BIN)/python
	$(PIP) install uv==$(UV_VERSION)
	UV=$(BIN)/uv requirements/lock.sh

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
