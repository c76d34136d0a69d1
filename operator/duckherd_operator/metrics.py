"""Prometheus metrics of the operator process (docs/metrics.md).

The operator's own counters, the controller metrics under controller-runtime's and
client-go's names, and the accumulated part of the per-pipeline metrics (`HISTORY`); the rest
of the per-pipeline series are made at scrape time (pipeline_metrics.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from prometheus_client import Counter, Histogram

from duckherd_operator.pipeline_metrics import PipelineMetrics, RunHistory

CHILDREN_APPLIED = Counter(
    "duckherd_children_applied_total", "Times a pipeline's children were server-side applied."
)
STAGES_STARTED = Counter(
    "duckherd_stages_started_total", "Stage Jobs started by chaining.", ["stage"]
)
STATUS_PATCHES = Counter(
    "duckherd_status_patches_total", "Status patches written (only on change)."
)
SYNC_ERRORS = Counter("duckherd_sync_errors_total", "Reconciliations that raised.")
RESYNC_ROUNDS = Counter(
    "duckherd_resync_rounds_total", "Rounds of the periodic resync over the watch caches."
)
RESYNC_RECONCILED = Counter(
    "duckherd_resync_reconciled_total",
    "Pipelines the resync reconciled because their caches called for a write.",
    ["reason"],
)
NOTIFICATIONS = Counter(
    "duckherd_notifications_total",
    "Webhook notifications of a pipeline's transitions, by result (sent, failed).",
    ["result"],
)

# --- controller-runtime's names, so dashboards written for Go operators read them ----------
CONTROLLER = "datapipeline"
RECONCILE_TOTAL = Counter(
    "controller_runtime_reconcile_total",
    "Total number of reconciliations per controller.",
    ["controller", "result"],
)
RECONCILE_ERRORS = Counter(
    "controller_runtime_reconcile_errors_total",
    "Total number of reconciliation errors per controller.",
    ["controller"],
)
# controller-runtime's buckets (pkg/internal/controller/metrics).
RECONCILE_BUCKETS = (
    *(0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7),
    *(0.8, 0.9, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0, 7.0, 8.0, 9.0),
    *(10.0, 15.0, 20.0, 25.0, 30.0, 40.0, 50.0, 60.0),
)
RECONCILE_TIME = Histogram(
    "controller_runtime_reconcile_time_seconds",
    "Length of time per reconciliation per controller.",
    ["controller"],
    buckets=RECONCILE_BUCKETS,
)
REST_REQUESTS = Counter(
    "rest_client_requests_total",
    "Number of HTTP requests, partitioned by status code, method, and host.",
    ["code", "method", "host"],
)
# Initialised so that a rate() of zero exists before the first pass.
for _result in ("success", "error"):
    RECONCILE_TOTAL.labels(controller=CONTROLLER, result=_result)
RECONCILE_ERRORS.labels(controller=CONTROLLER)

HISTORY = RunHistory()
# The per-pipeline families /metrics serves (metrics_server.py) from the watch cache.
PIPELINES = PipelineMetrics(HISTORY)


@contextmanager
def reconcile_pass() -> Iterator[None]:
    """Counts and times one reconcile pass of the DataPipeline controller."""
    started = time.monotonic()
    try:
        yield
    except Exception:
        RECONCILE_TOTAL.labels(controller=CONTROLLER, result="error").inc()
        RECONCILE_ERRORS.labels(controller=CONTROLLER).inc()
        raise
    else:
        RECONCILE_TOTAL.labels(controller=CONTROLLER, result="success").inc()
    finally:
        RECONCILE_TIME.labels(controller=CONTROLLER).observe(time.monotonic() - started)


def count_request(method: str, host: str, code: int | None) -> None:
    """One HTTP request of the operator's API client (client-go's `<error>`: no answer)."""
    REST_REQUESTS.labels(
        code=str(code) if code else "<error>", method=method, host=urlsplit(host).netloc or host
    ).inc()
