# Two commands on a fresh machine: `make run` and `make test`. Both install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint migrate bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11+ is required"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { echo "python3 -m venv failed: install python3-venv (apt-get install python3-venv)"; exit 1; }
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

run: install
	@$(BIN)/python -m tools.devstack ensure >/dev/null
	@set -a; source .run/env; set +a; export PATH="$(CURDIR)/$(BIN):$$PATH"; \
	export FRONTEND_URL=$${FRONTEND_URL:-http://localhost:8001} SECRET_KEY=$${SECRET_KEY:-dev-insecure-secret-key-change-me} \
	       APP_ENV=$${APP_ENV:-development} PUBLIC_MEDIA_URL=$${PUBLIC_MEDIA_URL:-http://localhost:8003}; \
	if [ -z "$$INSTAGRAM_APP_ID" ] && ! grep -qs '^INSTAGRAM_APP_ID=.' .env; then \
	  echo "No Instagram app configured: starting the Meta sandbox on :8010."; \
	  export INSTAGRAM_APP_ID=990000000000001 INSTAGRAM_APP_SECRET=sandbox-app-secret \
	         INSTAGRAM_VERIFY_TOKEN=sandbox-verify-token \
	         INSTAGRAM_WWW_BASE_URL=http://127.0.0.1:8010 INSTAGRAM_API_BASE_URL=http://127.0.0.1:8010 \
	         INSTAGRAM_GRAPH_BASE_URL=http://127.0.0.1:8010 \
	         SANDBOX_APP_ID=990000000000001 SANDBOX_APP_SECRET=sandbox-app-secret \
	         SANDBOX_WEBHOOK_URL=http://127.0.0.1:8002/webhooks/instagram; \
	  processes=""; cat tools/walkthrough.txt; \
	else \
	  processes=$$(grep -v '^sandbox:' Procfile | cut -d: -f1 | paste -sd, -); \
	fi; \
	$(BIN)/inboxctl migrate && \
	echo "auth :8001  webhooks :8002  messaging API :8003  (Ctrl-C stops everything)" && \
	exec $(BIN)/honcho start -f Procfile $${processes:+$$(echo $$processes | tr , ' ')}

test: install
	@$(BIN)/python -m tools.devstack ensure >/dev/null
	@set -a; source .run/env; set +a; $(BIN)/pytest $(ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy shared services sandbox

migrate: install
	@$(BIN)/python -m tools.devstack ensure >/dev/null
	@set -a; source .run/env; set +a; $(BIN)/inboxctl migrate

bench: install
	@$(BIN)/python -m bench.run

clean:
	@test -x $(BIN)/python && $(BIN)/python -m tools.devstack stop || true
	rm -rf .run
