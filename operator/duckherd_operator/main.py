"""`duckherd operator`: Kopf in standalone mode (one replica, no peering objects)."""

from __future__ import annotations

import prometheus_client

from duckherd_operator.webhook import WebhookConfig


def run(
    *,
    namespaces: list[str],
    liveness: str,
    metrics_port: int,
    webhook: WebhookConfig | None = None,
) -> None:
    import kopf

    import duckherd_operator.handlers  # noqa: F401  (registers the handlers)
    from duckherd_operator.context import new_memo

    kopf.configure(verbose=False)  # INFO logs, Kopf's own format

    if metrics_port:
        prometheus_client.start_http_server(metrics_port)
    kopf.run(
        standalone=True,
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=liveness,
        memo=new_memo(webhook),
    )
