# medsettle — one entry point for developers and CI. See README.md.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
BUF     := .tools/node_modules/.bin/buf
export PYTHONDONTWRITEBYTECODE = 1

.PHONY: help setup demo test unit fmt test-sqlite test-postgres lint protos buf-lint buf-breaking k8s-tools bench clean
.DEFAULT_GOAL := help

help:  ## this list
	@grep -E '^[a-z][a-z0-9-]*:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 16

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Installed once, again only when pyproject.toml changes (a stamp in the venv).
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

setup: $(VENV)/.installed  ## create the venv and install the project with its dev tools (once)

$(BUF):
	mkdir -p .tools && cd .tools && npm install --silent --no-audit --no-fund --prefix . @bufbuild/buf@1.75.0

demo: setup  ## start the suite on SQLite and drive a realistic run through all four services
	MEDSETTLE_LOG_LEVEL=WARNING $(BIN)/medsettle demo

test: setup k8s-tools lint test-sqlite test-postgres  ## everything CI runs

unit: setup  ## the fast tests alone: domain, use cases, contracts (no servers, no database)
	$(BIN)/python -m pytest -q tests/unit

fmt: setup  ## format and autofix (ruff)
	$(BIN)/ruff format libs services tests scripts
	$(BIN)/ruff check --fix libs services tests scripts

test-sqlite:
	$(BIN)/python -m pytest -q --db=sqlite

test-postgres:  ## the database tests again, against PostgreSQL (skips locally if none runs; fails under CI)
	$(BIN)/python -m pytest -q -m db --db=postgres

lint: $(BUF) buf-lint buf-breaking
	$(BIN)/ruff check libs services tests scripts
	$(BIN)/ruff format --check libs services tests scripts
	$(BIN)/mypy libs/core libs/platform libs/policy services/filing services/eligibility services/clearing services/settlement \
		services/__init__.py services/cli.py services/demo.py services/suite.py services/workers.py

buf-lint: $(BUF)
	cd protos && ../$(BUF) lint

# Breaking-change check: every commit that touched protos/ against its parent, and the working
# tree against HEAD (or only against BUF_AGAINST when set).
buf-breaking: $(BUF)
	BUF=$(BUF) bash scripts/buf_breaking.sh

protos: $(BUF) buf-lint  ## regenerate Python code, stubs, the descriptor set and the reason table from protos/
	$(BIN)/python scripts/gen_protos.py
	$(BIN)/python scripts/gen_reasons.py

# Installed once, again only when the install script changes (a stamp in .tools).
.tools/.k8s-tools: scripts/install-k8s-tools.sh | $(VENV)/.installed
	PYTHON=$(BIN)/python bash scripts/install-k8s-tools.sh
	touch $@

k8s-tools: .tools/.k8s-tools  ## kubectl (kustomize), schema validators and nginx for tests/k8s and the gateway test (once)

bench:  ## the policy engine benchmark (a script, not a test)
	$(BIN)/python scripts/bench_policy.py

clean:
	rm -rf $(VENV) .tools data .pytest_cache .mypy_cache .ruff_cache
