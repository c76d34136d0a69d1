"""`make dashboard`: the sales team's dashboard over what `make demo` published.

Joins the Redis and PostgreSQL servers `make demo` runs (while it runs), or starts them on the
data the last `make demo` left (.warehouse/customer-analytics-serving/, or $SERVING_DIR), and
runs the Streamlit app in examples/customer-analytics/dashboard/ on 127.0.0.1 (port $PORT,
default 8501 or a free one) until Ctrl-C, which stops the servers it started. Where to read and
the freshness thresholds come from the example's manifest, as they would on a cluster.
Run `make demo` again meanwhile: it publishes to these servers, and the open page shows the
new version within a minute (DASHBOARD_REFRESH_SECONDS).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "examples" / "customer-analytics" / "dashboard" / "app.py"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(APP.parent))

from hack.demo import MANIFEST, serving_root  # noqa: E402
from serving_layer import settings_from_manifest  # noqa: E402
from tests.services import free_port, shared_servers  # noqa: E402

from duckherd_jobs.runner import load_manifest  # noqa: E402

MART = "marts.customer_analytics"


def pick_port() -> int:
    wanted = int(os.environ.get("PORT", "8501"))
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will
        try:
            probe.bind(("127.0.0.1", wanted))
        except OSError:
            if "PORT" in os.environ:
                raise SystemExit(f"hack/dashboard.sh: port {wanted} (PORT) is in use") from None
            return free_port()
    return wanted


def main() -> int:
    root = serving_root()
    if not (root / "postgres" / "data").is_dir():
        print(
            f"hack/dashboard.sh: nothing published in {root}: run `make demo` first",
            file=sys.stderr,
        )
        return 1
    pipeline = load_manifest(MANIFEST)
    settings = settings_from_manifest(pipeline, MART, pipeline.metadata.namespace or "default")
    port = pick_port()
    # Stopped like a service (SIGTERM): unwind, so Streamlit and the servers we started stop too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with shared_servers(root) as servers:
        env = {
            **os.environ,
            **settings,
            "DASHBOARD_POSTGRES_DSN": servers.postgres.dsn(),
            "DASHBOARD_REDIS_URL": servers.redis.url(),
        }
        command = [
            str(Path(sys.executable).with_name("streamlit")), "run", str(APP),
            "--server.address", "127.0.0.1", "--server.port", str(port),
            "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--client.toolbarMode", "viewer",
        ]  # fmt: skip
        print(f"dashboard: http://127.0.0.1:{port}  (Ctrl-C stops it)", flush=True)
        try:
            return subprocess.run(command, env=env, check=False).returncode
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    raise SystemExit(main())
