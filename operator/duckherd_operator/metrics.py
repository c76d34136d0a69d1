"""Prometheus metrics of the operator process."""

from __future__ import annotations

from prometheus_client import Counter

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
