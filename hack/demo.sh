#!/usr/bin/env bash
# `make demo`: the customer-analytics example end to end in local mode, no cluster.
# Starts the demo customers API on a free loopback port, points the manifest's source at it
# (DUCKHERD_SOURCE_URL_CUSTOMERS), runs ingest → dbt → checks into
# .warehouse/customer-analytics.duckdb, stops the API. Exits non-zero when a stage fails.
# Run it again: the second run loads only what changed (incremental, merged by customer_id).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/duckherd ]; then
  echo "hack/demo.sh: .venv is missing: run hack/setup.sh (or make setup) first" >&2
  exit 1
fi
PY=.venv/bin/python
DUCKHERD=.venv/bin/duckherd
WAREHOUSE=${WAREHOUSE:-.warehouse/customer-analytics.duckdb}
CUSTOMERS=${CUSTOMERS:-10000}

port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$(mktemp -t duckherd-demo-source.XXXXXX.log)
"$DUCKHERD" demo-source --host 127.0.0.1 --port "$port" --customers "$CUSTOMERS" >"$log" 2>&1 &
server=$!
stop_server() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rm -f "$log"
}
trap stop_server EXIT

url="http://127.0.0.1:$port/customers"
if ! "$PY" - "$url" "$server" <<'PYEOF'; then
import os, sys, time, urllib.request
url, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("the demo source exited")
    try:
        urllib.request.urlopen(url + "?page=1&page_size=1", timeout=2).read()
        sys.exit(0)
    except OSError:
        time.sleep(0.2)
sys.exit("the demo source did not answer within 60s")
PYEOF
  echo "hack/demo.sh: could not start the demo source:" >&2
  cat "$log" >&2
  exit 1
fi
echo "demo source: $CUSTOMERS customers on $url"

export DUCKHERD_SOURCE_URL_CUSTOMERS="$url"
"$DUCKHERD" run examples/customer-analytics/pipeline.yaml --warehouse "$WAREHOUSE"
