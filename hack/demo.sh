#!/usr/bin/env bash
# `make demo`: the customer-analytics example end to end in local mode (see hack/demo.py).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/duckherd ]; then
  echo "hack/demo.sh: .venv is missing: run hack/setup.sh (or make setup) first" >&2
  exit 1
fi
exec .venv/bin/python hack/demo.py "$@"
