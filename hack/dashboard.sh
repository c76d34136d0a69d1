#!/usr/bin/env bash
# `make dashboard`: the sales dashboard over what `make demo` published (see hack/dashboard.py).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/streamlit ]; then
  echo "hack/dashboard.sh: .venv has no streamlit: run hack/setup.sh (or make setup) first" >&2
  exit 1
fi
exec .venv/bin/python hack/dashboard.py "$@"
