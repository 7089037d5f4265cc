# Pli: `make run` serves a working instance, `make test` checks everything.
# Both start from a fresh clone: the virtual environment and its pinned dependencies are
# installed here, never by hand.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
PORT ?= 8000
export PLI_DATA_DIR ?= $(CURDIR)/var

.PHONY: install run test bench lint types migrations-check test-sqlite test-postgresql browser-deps messages clean

# The stamp files make the install idempotent and cheap when the lock files haven't changed.
$(BIN)/uv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

$(VENV)/.base-installed: $(BIN)/uv requirements/base.lock pyproject.toml
	$(BIN)/uv pip sync --quiet --python $(BIN)/python --require-hashes requirements/base.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	@rm -f $(VENV)/.dev-installed
	@touch $@

$(VENV)/.dev-installed: $(BIN)/uv requirements/dev.lock pyproject.toml
	$(BIN)/uv pip sync --quiet --python $(BIN)/python --require-hashes requirements/dev.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	@touch $(VENV)/.base-installed $@

# The translations are compiled too: without them the interface falls back to English.
install: $(VENV)/.base-installed messages

# Without Pli's settings: compiling needs no configuration, and an operator's shell may hold
# a production environment whose secrets only the service manager provides.
messages: $(VENV)/.base-installed
	cd src/pli && DJANGO_SETTINGS_MODULE= ../../$(BIN)/django-admin compilemessages --verbosity 0

run: $(VENV)/.base-installed messages
	$(BIN)/pli migrate --no-input --verbosity 0
	PLI_PUBLIC_URL=$${PLI_PUBLIC_URL:-http://127.0.0.1:$(PORT)} $(BIN)/pli run --port $(PORT)

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check src tests scripts benchmarks
	$(BIN)/ruff format --check src tests scripts benchmarks

types: $(VENV)/.dev-installed
	$(BIN)/mypy

migrations-check: $(VENV)/.dev-installed
	PLI_DATA_DIR=$$(mktemp -d) $(BIN)/pli makemigrations --check --dry-run
	PLI_DATA_DIR=$$(mktemp -d) PLI_TESTING=1 $(BIN)/pli makemigrations --check --dry-run pli_testing

browser-deps:
	@scripts/install-browser.sh

# Each half in its own data dir, so that the two can run side by side (see test).
test-sqlite: export PLI_DATA_DIR := $(CURDIR)/var/test-sqlite
test-sqlite: $(VENV)/.dev-installed messages browser-deps
	$(BIN)/pytest -p no:cacheprovider

test-postgresql: export PLI_DATA_DIR := $(CURDIR)/var/test-postgresql
test-postgresql: $(VENV)/.dev-installed messages browser-deps
	scripts/with-postgresql.sh $(BIN)/pytest -p no:cacheprovider

# The SQLite and PostgreSQL halves at once: much of a test's time is spent waiting (a
# synced commit, a browser, a server starting), and this machine has two cores. Each half's
# output is printed whole when it ends.
test: lint types migrations-check
	$(MAKE) --no-print-directory -j2 --output-sync=target test-sqlite test-postgresql

bench: $(VENV)/.dev-installed messages
	$(BIN)/python -m benchmarks $(BENCH)

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache
