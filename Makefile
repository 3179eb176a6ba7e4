# The two commands of the README's quick start: `make run` and `make test`.
# Both create .venv and install Conduit into it on first use (python3 >= 3.11).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Conduit needs Python 3.11 or newer: run make PYTHON=python3.12 ..." >&2; exit 1; }
	$(PYTHON) -m venv $(VENV) || \
		{ echo "Cannot create $(VENV): install the venv module (Debian: apt-get install python3-venv)" >&2; exit 1; }
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[all,dev]'
	touch $(STAMP)

run: $(STAMP)  ## the demo on an embedded SQLite file
	$(BIN)/conduit demo

lint: $(STAMP)  ## ruff (lint and format) and mypy --strict
	$(BIN)/ruff check src tests benchmarks docs/*.py
	$(BIN)/ruff format --check src tests benchmarks docs/*.py
	$(BIN)/mypy

test: lint  ## every test, PostgreSQL included (started first when installed but stopped)
	bash scripts/ensure-postgres
	bash scripts/ensure-chromium
	bash scripts/ensure-rabbitmq-stream
	$(BIN)/pytest

bench: $(STAMP)  ## the benchmark suite (not part of the tests)
	$(BIN)/pip install --quiet -e '.[all,dev,bench]'
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
