# flet-montrg. `make demo` and `make test` create .venv when missing and install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-fast install bench server lint clean soak

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv

# Reinstall only when pyproject.toml changes (uv resolves the pinned ranges in seconds). Bytecode is
# compiled at install: this machine sets PYTHONDONTWRITEBYTECODE, so otherwise every process would
# compile Prefect & co. from source again (`import flows` 4.9 s instead of 2.3 s).
$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/uv pip install --python $(BIN)/python --quiet --compile-bytecode -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/uv pip install --python $(BIN)/python --quiet --compile-bytecode -e '.[test]'
	touch $@ $(VENV)/.installed-run

install: $(VENV)/.installed-run

demo: $(VENV)/.installed-run
	$(BIN)/montrg demo

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -ra

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .

test-fast: $(VENV)/.installed-test
	$(BIN)/python -m pytest -ra -m "not slow"

# A local Prefect server with its UI at http://127.0.0.1:4200 (shows the demo's runs too).
server: $(VENV)/.installed-run
	$(BIN)/prefect server start --host 127.0.0.1 --port 4200

clean:
	rm -rf $(VENV) demo-data .pytest_cache

# Benchmarks against the machine's PostgreSQL; each prints its table (6 to 10 minutes in all, by the day's machine).
bench: $(VENV)/.installed-run
	$(BIN)/python bench/hourly.py
	$(BIN)/python bench/backfill_day.py seed
	$(BIN)/python bench/backfill_day.py run
	$(BIN)/python bench/raw_ingest.py raw-etl
	$(BIN)/python bench/raw_ingest.py collect

# The pipeline deployed on a Docker pool and left alone, every schedule every minute, 3 fanned-out
# backfills midway; prints runs by state, late starts and the HQ table against a GROUP BY. Needs root
# (installs and starts a Docker engine when there is none). Not part of `make test`.
MINUTES ?= 30
soak: $(VENV)/.installed-run
	$(BIN)/python -m deployments.soak --minutes $(MINUTES)
