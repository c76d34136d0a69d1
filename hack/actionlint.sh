#!/usr/bin/env bash
# `make lint`'s workflow check: actionlint on .github/workflows, at a pinned version. The first
# run builds it from source with Go through the Go module proxy into .venv/bin (Go is on every
# machine that runs the e2e cluster; `make demo` does not need it).
set -euo pipefail
cd "$(dirname "$0")/.."
ACTIONLINT_VERSION=v1.7.12
bin=.venv/bin/actionlint
if ! "$bin" -version 2>/dev/null | head -n1 | grep -qx "$ACTIONLINT_VERSION"; then
  go=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
  if [ ! -x "$go" ]; then
    echo "hack/actionlint.sh: Go is needed to build actionlint $ACTIONLINT_VERSION (set GO=/path/to/go)" >&2
    exit 1
  fi
  mkdir -p .venv/bin
  GOBIN="$PWD/.venv/bin" GOFLAGS=-buildvcs=false "$go" install \
    "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION"
fi
exec "$bin" "$@"
