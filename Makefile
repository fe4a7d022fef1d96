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
	$(VENV)/bin/pytest -q -n 2 --dist loadfile --durations=25

.PHONY: test-fast
test-fast: $(STAMP) ## only the fast (unmarked) tests
	$(VENV)/bin/pytest -q -m "not slow"

.PHONY: lint
lint: $(STAMP) ## ruff check + format check + mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy restate flows notifications interfaces sources

.PHONY: bench
bench: $(STAMP) ## benchmarks (BENCH_EVENTS sets the scale)
	$(PY) benchmarks/run.py

.PHONY: bench-restate
bench-restate: $(STAMP) ## restate's figures alone (14 months, one day, rerun), reusing the data
	$(PY) benchmarks/restate_only.py $(ARGS)

.PHONY: bench-revalidate
bench-revalidate: $(STAMP) ## re-validation of 14 months after one chunk changed: kept checks against all
	$(PY) benchmarks/revalidate.py

.PHONY: bench-webhooks
bench-webhooks: $(STAMP) ## payment webhook receiver: events/s and p50/p99 acknowledgement latency
	$(PY) benchmarks/webhooks_bench.py

.PHONY: bench-freshness
bench-freshness: $(STAMP) ## order database -> mart freshness, back to back (the floor)
	$(PY) benchmarks/source_freshness.py

.PHONY: bench-prefect-dbt
bench-prefect-dbt: $(STAMP) ## one dbt call through restate's runner vs prefect-dbt's (a task per model)
	$(PY) benchmarks/prefect_dbt_bench.py

.PHONY: bench-extract
bench-extract: $(STAMP) ## load on a PostgreSQL source (BENCH_PG_ROWS, default 1M): statements, longest one
	$(PY) benchmarks/postgres_extract.py

DLT_VENV := .venv-dlt
$(DLT_VENV)/.installed:
	test -x $(DLT_VENV)/bin/python || $(PYTHON) -m venv $(DLT_VENV)
	$(DLT_VENV)/bin/python -m pip install --quiet "dlt[sql_database,parquet,filesystem]==1.22.0" "sqlalchemy>=2,<3" "pyarrow>=16" numpy "psycopg[binary]>=3.2"
	touch $@

.PHONY: bench-extract-dlt
bench-extract-dlt: $(DLT_VENV)/.installed ## dlt's SQL source on the same table: statements the source sees, the longest one
	$(DLT_VENV)/bin/python benchmarks/dlt_extract.py

# Team mode: Prefect server on PostgreSQL (trust auth), a process work pool, the
# prefect.yaml deployments, one worker and task workers that share restatement chunks.
SERVE_DB ?= restate_prefect
SERVE_PORT ?= 4200
SERVE_DEPLOY ?= --all
TASK_WORKERS ?= 2
PG_HOST ?= 127.0.0.1
PG_PORT ?= 5432
PG_USER ?= postgres

.PHONY: serve
serve: $(STAMP) ## team mode: Prefect server on PostgreSQL, deployments, a flow-run worker, 2 warm restate workers
	@psql_="psql -h $(PG_HOST) -p $(PG_PORT) -U $(PG_USER) -d postgres -v ON_ERROR_STOP=1 -qtA"; \
	if [ -z "$$($$psql_ -c "select 1 from pg_database where datname = '$(SERVE_DB)'")" ]; then \
	  $$psql_ -c 'create database "$(SERVE_DB)"' || exit 1; \
	fi; \
	export PREFECT_API_DATABASE_CONNECTION_URL=postgresql+asyncpg://$(PG_USER)@$(PG_HOST):$(PG_PORT)/$(SERVE_DB); \
	export PREFECT_API_URL=http://127.0.0.1:$(SERVE_PORT)/api RESTATE_REPO_DIR=$(CURDIR); \
	export RESTATE_CHUNK_EXECUTION=$${RESTATE_CHUNK_EXECUTION:-task_workers}; \
	$(if $(filter environment command line,$(origin PREFECT_HOME)),:,export PREFECT_HOME=$$($(PY) -c 'from restate.settings import Settings; print((Settings().state_dir / "prefect").resolve())')); \
	trap 'kill $$(jobs -p) 2>/dev/null; wait' EXIT; \
	$(VENV)/bin/prefect server start --host 127.0.0.1 --port $(SERVE_PORT) & \
	for _ in $$(seq 180); do curl -sf $$PREFECT_API_URL/health >/dev/null && break; sleep 1; done; \
	curl -sf $$PREFECT_API_URL/health >/dev/null || { echo "prefect server did not start"; exit 1; }; \
	$(VENV)/bin/prefect work-pool inspect restate >/dev/null 2>&1 \
	  || $(VENV)/bin/prefect work-pool create restate --type process || exit 1; \
	$(VENV)/bin/prefect --no-prompt deploy $(SERVE_DEPLOY) || exit 1; \
	for _ in $$(seq $(TASK_WORKERS)); do \
	  $(VENV)/bin/restate worker --limit 1 & \
	done; \
	$(VENV)/bin/prefect worker start --pool restate & \
	echo "serving: UI and API on http://127.0.0.1:$(SERVE_PORT), database $(SERVE_DB); Ctrl-C stops all"; \
	wait

.PHONY: clean
clean: ## remove generated data (keeps .venv)
	rm -rf data dbt/*/target dbt/*/logs dbt/*/dbt_packages dbt/*/package-lock.yml
