# Two commands matter: `make demo` and `make test`. Both work on a machine with only python3.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast lint typecheck bench bench-smoke clean system-deps

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e '.[test,speed,otel]'
	touch $(STAMP)

## Run the demo workload on the embedded Redis (no Redis install needed).
demo: $(STAMP)
	$(VENV)/bin/conveyor demo

## Install what the tests need (Python packages, and Debian packages when root) and run them all.
test: $(STAMP) system-deps
	$(PY) -m ruff check src tests
	$(PY) -m mypy
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow and not chaos and not interop and not browser" -x

lint: $(STAMP)
	$(PY) -m ruff check src tests

typecheck: $(STAMP)
	$(PY) -m mypy

## Debian packages for the interop and browser suites (Ruby Sidekiq, Chromium).
system-deps:
	@bash scripts/system-deps.sh

bench: $(STAMP)
	$(PY) bench/run.py

bench-smoke: $(STAMP)
	$(PY) bench/run.py --smoke

clean:
	rm -rf $(VENV) .conveyor build dist src/*.egg-info
