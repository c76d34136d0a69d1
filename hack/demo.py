"""`make demo`: the customer-analytics example end to end in local mode, no cluster.

Starts, on free loopback ports, the demo customers API and local Redis and PostgreSQL
servers (the publish targets), points the manifest at them through the same env vars a stage
pod would get (`DUCKHERD_SOURCE_URL_CUSTOMERS` / `_ORDERS`, `DUCKHERD_SECRET_*`), runs
`duckherd run examples/customer-analytics/pipeline.yaml` (ingest → dbt → checks → publish)
into .warehouse/customer-analytics.duckdb, shows what the targets now serve, and stops
everything. Exits non-zero when a stage fails. Run it again: the second run loads only what
changed (incremental, merged by customer_id), and the row-count check compares the two runs.

Redis and PostgreSQL keep their data next to the warehouse
(.warehouse/customer-analytics-serving/, or $SERVING_DIR), where `make dashboard` finds it;
when `make dashboard` is running, the demo publishes to its servers and the open dashboard
shows the new version.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the server helpers live with the tests, one implementation

import psycopg2  # noqa: E402
import redis  # noqa: E402
from tests.services import shared_servers  # noqa: E402

from duckherd_jobs.demo_source import DemoSource, source_url_env  # noqa: E402

MANIFEST = REPO / "examples" / "customer-analytics" / "pipeline.yaml"


def show_targets(redis_url: str, dsn: str) -> None:
    client = redis.Redis.from_url(redis_url)
    meta_keys = list(client.scan_iter("*:meta"))
    for key in meta_keys:
        meta = json.loads(client.get(key) or "{}")
        print(f"redis: {key.decode()} -> {meta.get('rows')} rows, run {meta.get('runId')}")
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM analytics.customer_analytics")
        row = cursor.fetchone()
        print(f"postgres: analytics.customer_analytics -> {row[0] if row else 0} rows")


def warehouse_path() -> Path:
    return Path(os.environ.get("WAREHOUSE", REPO / ".warehouse" / "customer-analytics.duckdb"))


def serving_root() -> Path:
    """Where the demo's Redis and PostgreSQL keep what was published."""
    warehouse = warehouse_path()
    default = warehouse.with_name(f"{warehouse.stem}-serving")
    return Path(os.environ.get("SERVING_DIR") or default).resolve()


def main() -> int:
    customers = int(os.environ.get("CUSTOMERS", "10000"))
    warehouse = str(warehouse_path())
    with DemoSource(customers) as api, shared_servers(serving_root()) as servers:
        pg, cache = servers.postgres, servers.redis
        print(f"demo source: {customers} customers and their orders on {api}/customers, /orders")
        env = {
            **os.environ,
            **source_url_env(api),
            "DUCKHERD_SECRET_DUCKHERD_CACHE_URL": cache.url(),
            "DUCKHERD_SECRET_DUCKHERD_APPDB_DSN": pg.dsn(),
        }
        command = [
            str(Path(sys.executable).with_name("duckherd")),
            "run",
            str(MANIFEST),
            "--warehouse",
            warehouse,
        ]
        code = subprocess.run(command, env=env, check=False).returncode
        if code == 0:
            show_targets(cache.url(), pg.dsn())
            print("look at it: make dashboard")
        return code


if __name__ == "__main__":
    raise SystemExit(main())
