"""What Prometheus scrapes when the chart's ServiceMonitor is applied, without the Prometheus
Operator: the ServiceMonitor rendered by the chart, resolved the way the Prometheus Operator's
generated configuration resolves it — the Services in its namespace that carry the selector's
labels, their EndpointSlices' ready endpoints on the endpoint's named port — with the target
labels it sets (`namespace`, `service`, `pod`, and `job` = the Service's name) and the
endpoint's `honorLabels`, path and interval.

Debian's Prometheus is built without Kubernetes service discovery, so the targets are resolved
here with kubectl and handed to Prometheus as a static configuration. Only the fields the
chart sets are translated."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

KubectlJson = Callable[..., Any]


def _groups(endpoint_slice: dict[str, Any], port_name: str, labels: dict[str, str]) -> list[Any]:
    ports = [p["port"] for p in endpoint_slice.get("ports") or [] if p.get("name") == port_name]
    groups = []
    for address in endpoint_slice.get("endpoints") or []:
        if not (address.get("conditions") or {}).get("ready", False):
            continue
        pod = (address.get("targetRef") or {}).get("name")
        targets = [f"{ip}:{port}" for ip in address["addresses"] for port in ports]
        groups.append({"targets": targets, "labels": {**labels, **({"pod": pod} if pod else {})}})
    return groups


def resolve_targets(monitor: dict[str, Any], kubectl_json: KubectlJson) -> list[dict[str, Any]]:
    """Static target groups for the first endpoint of `monitor` (a rendered ServiceMonitor)."""
    namespace = monitor["metadata"]["namespace"]
    (endpoint,) = monitor["spec"]["endpoints"]
    selector = ",".join(f"{k}={v}" for k, v in monitor["spec"]["selector"]["matchLabels"].items())
    groups = []
    for service in kubectl_json("get", "services", "-n", namespace, "-l", selector)["items"]:
        name = service["metadata"]["name"]
        labels = {"namespace": namespace, "service": name, "job": name}
        slices = kubectl_json(
            "get", "endpointslices", "-n", namespace, "-l", f"kubernetes.io/service-name={name}"
        )["items"]
        for endpoint_slice in slices:
            groups.extend(_groups(endpoint_slice, endpoint["port"], labels))
    return groups


def scrape_config(
    monitor: dict[str, Any], kubectl_json: KubectlJson, interval: str
) -> dict[str, Any]:
    """The scrape job Prometheus runs for `monitor`, its targets resolved now."""
    (endpoint,) = monitor["spec"]["endpoints"]
    meta = monitor["metadata"]
    return {
        "job_name": f"serviceMonitor/{meta['namespace']}/{meta['name']}/0",
        "honor_labels": bool(endpoint.get("honorLabels", False)),
        "metrics_path": endpoint["path"],
        "scrape_interval": interval,
        "scrape_timeout": interval,
        "static_configs": resolve_targets(monitor, kubectl_json),
    }
