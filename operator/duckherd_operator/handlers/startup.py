"""Operator start-up: settings, and logging in (Kopf and our API client, with the same
credentials)."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from typing import Any

import kopf

from duckherd_operator.context import connect, disconnect
from duckherd_operator.handlers.caches import watch_only_managed
from duckherd_operator.logs import quiet_routine_logs

# Kopf keeps a worker per object for `idle_timeout` after its last event (5 s by default),
# holding that event's whole object (managedFields and all, several times its JSON size in
# Python objects). When a fleet is created or resumed, that is every object of the last 5
# seconds at once, and CPython's allocator keeps the arenas they filled: measured at N = 1,000
# (benchmarks/profile_operator_memory.py), 145 MiB resident at rest with 5 s, 128 MiB with
# 0.5 s (docs/fleet.md). A new event for an object whose worker has ended starts another
# worker, which costs a task.
WORKER_IDLE_SECONDS = 0.5
# Kopf lists each kind before watching it, in one answer unless told a chunk size: at a
# restart with 1,000 pipelines, 3,000 CronJobs parsed at once (18 MB of JSON).
LIST_CHUNK_SIZE = 500


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Handler progress in annotations; nothing in status but ours. The prefix must not be
    # `duckherd.io`: Kopf leaves its own prefix's annotations out of the diff, and users'
    # `duckherd.io/run-now` must count as a change.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix="kopf.duckherd.io"
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="kopf.duckherd.io", key="last-handled-configuration"
    )
    # Kopf's own log lines become Events only from WARNING up (no "handler succeeded" spam);
    # our Events are written by our client (actions.post_events), which that level does not
    # filter.
    settings.posting.level = logging.WARNING
    quiet_routine_logs()
    settings.watching.server_timeout = 300
    settings.watching.chunk_size = LIST_CHUNK_SIZE
    watch_only_managed(settings)
    settings.batching.error_delays = [1, 5, 15, 30, 60]
    settings.queueing.idle_timeout = WORKER_IDLE_SECONDS


KOPF_IN_CLUSTER_SERVER = "https://kubernetes.default.svc"


def in_cluster_address(
    info: kopf.ConnectionInfo, env: Mapping[str, str] = os.environ
) -> kopf.ConnectionInfo:
    """Kopf names the API server `kubernetes.default.svc`, which needs cluster DNS; in-cluster
    clients (client-go's too) use the address the kubelet injects into every pod instead."""
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
    if info.server != KOPF_IN_CLUSTER_SERVER or not host or not port:
        return info
    host = f"[{host}]" if ":" in host else host
    return dataclasses.replace(info, server=f"https://{host}:{port}")


@kopf.on.login()
async def login(memo: kopf.Memo, **kwargs: Any) -> kopf.ConnectionInfo | None:
    """In a pod the service account, else the kubeconfig; our client gets the same login."""
    service_account = kopf.login_with_service_account(**kwargs)
    info = service_account or kopf.login_with_kubeconfig(**kwargs)
    if info is None:
        return None
    info = in_cluster_address(info)
    await connect(memo, info, service_account=service_account is not None)
    return info


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    await disconnect(memo)
