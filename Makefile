# Two commands on a fresh machine: `make run` and `make test`. Both install what they need.
# Postgres and Redis: tools/devstack.py (the ones in DATABASE_URL / REDIS_URL, else the local
# ones, else throwaway servers under .run/); processes: the Procfile.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ENSURE = @$(BIN)/python -m tools.devstack ensure >/dev/null
WITH_ENV = set -a; . .run/env; set +a;

.PHONY: install run test lint migrate bench clean

install: $(STAMP)

# Re-installs only when pyproject.toml changes. A venv without pip (python3-venv missing) is redone.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || \
	  { echo "Python 3.11+ is required as '$(PYTHON)' (try: make PYTHON=python3.11 ...)"; exit 1; }
	@test -x $(BIN)/pip || { rm -rf $(VENV); $(PYTHON) -m venv $(VENV) >/dev/null 2>&1; } || \
	  { rm -rf $(VENV); echo "'$(PYTHON) -m venv' failed: install the venv module first, e.g." \
	    "sudo apt-get install python3-venv (or python3.X-venv for your version)"; exit 1; }
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

run: install
	@$(BIN)/python -m tools.devstack run

test: install
	$(ENSURE)
	@$(WITH_ENV) $(BIN)/pytest $(ARGS) $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy shared services sandbox

migrate: install
	$(ENSURE)
	@$(WITH_ENV) $(BIN)/inboxctl migrate

bench: install
	@$(BIN)/pip install -q -e '.[dev,bench]'
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -q wrk >/dev/null; } || echo "wrk not found: the throughput comparison uses the Python load generator"
	@$(BIN)/python -m bench.run $(PARTS)

clean:
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m tools.devstack stop; fi
	rm -rf .run
