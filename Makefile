# `make check` is the fast gate (lint, types, unit tests). `make test` is README's test command:
# lint and types first, then the whole suite. CI (.ci/run) runs `make test`, so a lint or type
# error fails CI in about a minute, before the long suites start.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup check lint typecheck unit test test-s3 crds argocd-cases schema demo dashboard cluster-up cluster-down bench bench-faults kind-up

setup:
	@hack/setup.sh

# Every Python file of the repository: the packages, the tests, the benchmarks, hack/*.py and
# the examples' code (the dashboard).
PY_PATHS := operator jobs tests benchmarks hack examples

lint: setup
	ruff check $(PY_PATHS)
	ruff format --check $(PY_PATHS)
	hack/actionlint.sh

typecheck: setup
	mypy $(PY_PATHS)

unit: setup
	pytest tests/unit -q

check: lint typecheck unit

# Lint and types, then the whole suite: unit, jobs (real DuckDB, dbt, GX, PostgreSQL, Redis,
# HTTP) and e2e (real cluster). The unit tests run inside the suite, after e2e: the chart tests
# use the helm binary the cluster build provides (on a fresh CI machine there is none before).
test: lint typecheck
	pytest tests -q --ignore=tests/s3

# Bucket backups against a real S3-compatible server (SeaweedFS, built from the Go module
# proxy by hack/seaweedfs.sh on first use: minutes of compiling, so not in `make test`).
test-s3: setup
	pytest tests/s3 -q

crds: setup
	$(PY) -m duckherd.crd --write

# The Argo CD health check's cases (charts/duckherd/argocd/health_test.yaml), derived from the
# status code; run after changing duckherd/status.py or adding e2e snapshots.
argocd-cases: setup
	$(PY) -m tests.unit.argocd_cases --write

demo: setup
	hack/demo.sh

# The sales dashboard over what `make demo` published (prints its URL; Ctrl-C stops it).
dashboard: setup
	hack/dashboard.sh

cluster-up:
	hack/cluster/cluster.sh up

cluster-down:
	hack/cluster/cluster.sh down

bench: setup
	$(PY) -m benchmarks

# The whole fault matrix (docs/faults.md): every kill point, full volumes, restarted targets;
# writes the fault table to artifacts/faults-table.md. About 20 minutes on 2 idle cores.
# Then the same faults on the local cluster (tests/e2e/test_operator_faults.py): stage pods
# killed on the node, the API server stopped, a full volume, and the WHOLE cluster stopped and
# started (`cluster.sh down` / `up`, left up): nothing else may use the cluster meanwhile.
bench-faults: setup
	DUCKHERD_FAULT_MATRIX=1 DUCKHERD_FAULT_TABLE=artifacts/faults-table.md pytest tests/jobs/test_faults.py -q
	cat artifacts/faults-table.md
	DUCKHERD_FAULT_MATRIX=1 DUCKHERD_CLUSTER_FAULT_TABLE=artifacts/cluster-faults-table.md pytest tests/e2e/test_operator_faults.py -q
	cat artifacts/cluster-faults-table.md

# For people with Docker: a kind cluster with the image loaded (kind cannot run on the CI
# machine, which has no Docker engine; see hack/kind-up.sh).
kind-up:
	hack/kind-up.sh
