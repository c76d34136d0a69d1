"""`duckherd operator`: Kopf in standalone mode (one replica, no peering objects)."""

from __future__ import annotations

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
    from duckherd_operator import metrics
    from duckherd_operator.context import new_memo
    from duckherd_operator.handlers.caches import METADATA_ONLY_KINDS
    from duckherd_operator.kopf_slim_events import slim_events
    from duckherd_operator.kopf_toggles import notify_only_on_change
    from duckherd_operator.metrics_server import start_metrics_server

    kopf.configure(verbose=False)  # INFO logs, Kopf's own format
    notify_only_on_change()  # a restart at fleet size is not quadratic (kopf_toggles.py)
    slim_events(METADATA_ONLY_KINDS)  # Kopf's workers hold slim objects (kopf_slim_events.py)

    if metrics_port:
        start_metrics_server(metrics_port, metrics.PIPELINES)
    kopf.run(
        standalone=True,
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=liveness,
        memo=new_memo(webhook),
    )
