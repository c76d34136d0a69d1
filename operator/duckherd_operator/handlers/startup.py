"""Operator start-up: settings and the API connection our own client shares with Kopf."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from duckherd_operator import state


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Handler progress in annotations of our own prefix; nothing in status but ours.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="duckherd.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="duckherd.io", key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.batching.error_delays = [1, 5, 15, 30, 60]


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    info = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
    if info is not None:
        state.set_connection(info)
    return info


@kopf.on.cleanup()
async def close(**_: Any) -> None:
    await state.close()
