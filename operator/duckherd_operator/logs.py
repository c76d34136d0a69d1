"""Operator logging: INFO is for what a person follows (start-up, spec changes handled, runs
started, problems); routine traffic goes to DEBUG or nowhere."""

from __future__ import annotations

import logging

# Kopf logs every handler success at INFO. These handlers run on every Job and Pod status
# change of every stage pod, and on every change of every pipeline (the notifier's look, the
# metrics forgetting a deleted one): a line each would bury the lines that matter.
ROUTINE_HANDLERS = (
    "stage_job_changed",
    "stage_pod_changed",
    "pipeline_seen",
    "forget_deleted_pipeline",
)
_ROUTINE_SUCCESS = tuple(f"Handler {name!r} succeeded." for name in ROUTINE_HANDLERS)


class RoutineSuccessFilter(logging.Filter):
    """Drops Kopf's INFO line for a routine handler's success (failures still log)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno == logging.INFO and record.getMessage() in _ROUTINE_SUCCESS)


def quiet_routine_logs() -> None:
    # Kubernetes probes the liveness endpoint (Kopf's aiohttp server) every few seconds: an
    # access line per probe, two every 5 s. Failed probes show as Events on the Pod.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    objects = logging.getLogger("kopf.objects")
    if not any(isinstance(f, RoutineSuccessFilter) for f in objects.filters):
        objects.addFilter(RoutineSuccessFilter())
