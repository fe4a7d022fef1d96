# restate: `make demo` runs the story on the embedded default; `make test` runs the suite.
.DEFAULT_GOAL := help
SHELL := /bin/bash

VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
STAMP := $(VENV)/.installed

# No network on these machines and finance data stays in the approved account.
export DO_NOT_TRACK := 1
export DBT_SEND_ANONYMOUS_USAGE_STATS := false
export SODA_CORE_TELEMETRY_ENABLED := false
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_HOME ?= $(CURDIR)/data/state/prefect
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120
$(shell mkdir -p $(PREFECT_HOME))

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

.PHONY: install
install: $(STAMP) ## create .venv and install the project with its pinned dependencies

.PHONY: demo
demo: $(STAMP) ## the whole story: buggy prod -> drift -> plan -> recompute -> diff -> promote
	$(VENV)/bin/restate demo

.PHONY: test
test: $(STAMP) ## run the test suite (real DuckDB, dbt, Soda, Prefect)
	$(VENV)/bin/pytest -q -n 2 --dist loadfile

.PHONY: test-fast
test-fast: $(STAMP) ## only the fast (unmarked) tests
	$(VENV)/bin/pytest -q -m "not slow"

.PHONY: lint
lint: $(STAMP) ## ruff check + format check + mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy restate flows notifications

.PHONY: bench
bench: $(STAMP) ## benchmarks (BENCH_EVENTS sets the scale)
	$(PY) benchmarks/run.py

.PHONY: clean
clean: ## remove generated data (keeps .venv)
	rm -rf data dbt/target dbt/logs
