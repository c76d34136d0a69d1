# `make check` runs what CI's fast gate runs; `make test` is README's test command (everything).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup check lint typecheck unit test crds schema demo cluster-up cluster-down bench kind-up

setup:
	@hack/setup.sh

lint: setup
	ruff check operator jobs tests benchmarks
	ruff format --check operator jobs tests benchmarks

typecheck: setup
	mypy operator/duckherd operator/duckherd_operator jobs/duckherd_jobs

unit: setup
	pytest tests/unit -q

check: lint typecheck unit

# The whole suite: unit, jobs (real DuckDB, dbt, GX, PostgreSQL, Redis, HTTP) and e2e (real cluster).
test: setup
	pytest tests -q

crds: setup
	$(PY) -m duckherd.crd --write

demo: setup
	hack/demo.sh

cluster-up:
	hack/cluster/cluster.sh up

cluster-down:
	hack/cluster/cluster.sh down

bench: setup
	$(PY) -m benchmarks

# For people with Docker: a kind cluster with the image loaded (kind cannot run on the CI
# machine, which has no Docker engine; see hack/kind-up.sh).
kind-up:
	hack/kind-up.sh
