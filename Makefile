# flet-montrg. `make demo` and `make test` create .venv when missing and install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-fast install bench bench-scale bench-airflow server lint clean soak

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip "uv==0.13.9"

# Install exactly the versions in uv.lock (`uv sync --locked` fails if pyproject.toml and the lock
# disagree: run `.venv/bin/uv lock` and commit both); reinstall only when either changes. Bytecode is
# compiled at install: this machine sets PYTHONDONTWRITEBYTECODE, so otherwise every process would
# compile Prefect & co. from source again (`import flows.pipelines` 4.9 s instead of 2.3 s).
UV_SYNC := UV_PROJECT_ENVIRONMENT=$(VENV) $(BIN)/uv sync --locked --inexact --quiet --compile-bytecode --python $(BIN)/python
$(VENV)/.installed-run: pyproject.toml uv.lock | $(BIN)/python
	$(UV_SYNC)
	touch $@

$(VENV)/.installed-test: pyproject.toml uv.lock | $(BIN)/python
	$(UV_SYNC) --extra test
	touch $@ $(VENV)/.installed-run

install: $(VENV)/.installed-run

demo: $(VENV)/.installed-run
	$(BIN)/montrg demo

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -ra

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/lint-imports

test-fast: $(VENV)/.installed-test
	$(BIN)/python -m pytest -ra -m "not slow"

# A local Prefect server with its UI at http://127.0.0.1:4200 (shows the demo's runs too).
# with the server settings of deployments/server.env (concurrency leases kept on disk across restarts)
server: $(VENV)/.installed-run
	set -a && . deployments/server.env && set +a && $(BIN)/prefect server start --host 127.0.0.1 --port 4200

clean:
	rm -rf $(VENV) demo-data .pytest_cache

# Benchmarks against the machine's PostgreSQL; each prints its table (about 10 minutes in all on 2 cores).
bench: $(VENV)/.installed-run
	$(BIN)/python bench/hourly.py
	$(BIN)/python bench/e2e.py
	$(BIN)/python bench/raw_ingest.py raw-etl
	$(BIN)/python bench/raw_ingest.py collect

# The pipeline deployed on a Docker pool and left alone, every schedule every minute, 3 fanned-out
# backfills midway; prints runs by state, late starts and the HQ table against a GROUP BY. Needs root
# (installs and starts a Docker engine when there is none). Not part of `make test`.
# FAULTS=1: the same with faults injected while the schedules run (database restart, Prefect server
# and worker SIGKILLed, backends terminated, the gateways' database unreachable, the HQ table
# locked), then TAIL more minutes and the exact checks; under 25 MINUTES the first three faults only.
MINUTES ?= 30
FAULTS ?=
TAIL ?= 10
soak: $(VENV)/.installed-run
	$(BIN)/python -m deployments.soak --minutes $(MINUTES) $(if $(filter 1 yes true,$(FAULTS)),--faults --tail $(TAIL))

# The backfill at 100M raw rows too (generating them once takes 3-6 minutes on a 2-core machine; kept in montrg_bench_src_100m).
# MONTRG_BENCH_REPEATS=1 (one repetition per contender) brings the whole run under 10 minutes on 2 cores.
bench-scale: $(VENV)/.installed-run
	MONTRG_BENCH_SIZES=1M,10M,100M $(BIN)/python bench/hourly.py

# The seed's DAGs on Apache Airflow 2.10 (a virtualenv of its own, .venv-airflow) beside the flows.
AIRFLOW_VERSION := 2.10.5
.venv-airflow/bin/airflow: | $(BIN)/python
	$(BIN)/uv venv --quiet --python $(PYTHON) .venv-airflow
	$(BIN)/uv pip install --python .venv-airflow/bin/python --quiet "apache-airflow==$(AIRFLOW_VERSION)" "apache-airflow-providers-postgres>=5,<7"

bench-airflow: $(VENV)/.installed-run .venv-airflow/bin/airflow
	$(BIN)/python bench/airflow_bench.py
