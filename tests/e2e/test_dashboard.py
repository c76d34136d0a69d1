"""The sales dashboard on a real cluster, from examples/customer-analytics/dashboard.yaml as
written (only the image swapped for the one under test).

The namespace enforces Pod Security "restricted", so the pod exists only if it complies. The
Secrets are the ones publish uses (duckherd-cache, duckherd-appdb), pointing at the test
session's Redis and PostgreSQL on this machine; the real publish stage of a pipeline in that
namespace fills them. A real Chromium on this machine then opens the pod and must read the
mart's numbers.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
import yaml

from tests.dashboard.browser import DashboardPage, chromium
from tests.dashboard.serving import (
    DATABASE,
    EXAMPLE,
    REDIS_DB,
    Serving,
    dashboard_database,
    serving,
)
from tests.e2e.conftest import Cluster, apply, kubectl, kubectl_json

pytestmark = pytest.mark.e2e

__all__ = ["dashboard_database", "serving"]  # the fixtures this module uses

MANIFEST = EXAMPLE / "dashboard.yaml"
SELECTOR = "app.kubernetes.io/name=duckherd-dashboard"


def dashboard_manifests(image: str) -> list[dict[str, Any]]:
    documents = [doc for doc in yaml.safe_load_all(MANIFEST.read_text()) if doc]
    for document in documents:
        if document["kind"] == "Deployment":
            (container,) = document["spec"]["template"]["spec"]["containers"]
            container["image"] = image
    return documents


def publish_secrets(serving: Serving, host: str) -> list[dict[str, Any]]:
    data = {
        "duckherd-cache": {"url": serving.redis.url(host=host, db=REDIS_DB)},
        "duckherd-appdb": {"dsn": serving.postgres.dsn(host=host, database=DATABASE)},
    }
    return [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": values}
        for name, values in data.items()
    ]


def test_the_manifest_passes_restricted_admission_without_a_warning(
    cluster: Cluster, namespace: str
) -> None:
    """The API server's own Pod Security check of the pod template (a server-side dry run in
    a namespace that enforces and warns "restricted"), before anything runs."""
    done = subprocess.run(
        ["kubectl", "apply", "--dry-run=server", "-n", namespace, "-f", str(MANIFEST)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert "would violate PodSecurity" not in done.stderr, done.stderr
    assert done.stdout.split("\n")[:2] == [
        "deployment.apps/duckherd-dashboard created (server dry run)",
        "service/duckherd-dashboard created (server dry run)",
    ]


def test_the_example_dashboard_runs_restricted_and_shows_the_published_mart(
    cluster: Cluster, namespace: str, serving: Serving
) -> None:
    image = cluster.need_image()
    published = serving.publish("20261202t060000-e2e001", rows=1500, namespace=namespace)
    assert published.ok, published.error
    customers, average = serving.query(
        "SELECT count(*), avg(monthly_ltv) FROM analytics.customer_analytics"
    )

    apply(publish_secrets(serving, cluster.need_host_ip()), namespace)
    apply(dashboard_manifests(image), namespace)
    kubectl(
        "rollout", "status", "deployment/duckherd-dashboard", "-n", namespace, "--timeout=600s",
        timeout=660,
    )  # fmt: skip

    (pod,) = kubectl_json("get", "pods", "-n", namespace, "-l", SELECTOR)["items"]
    spec = pod["spec"]
    assert spec["automountServiceAccountToken"] is False
    mounts = [m["mountPath"] for c in spec["containers"] for m in c.get("volumeMounts", [])]
    assert not [m for m in mounts if "serviceaccount" in m], mounts
    with chromium() as driver:
        page = DashboardPage(driver)
        page.open(f"http://{pod['status']['podIP']}:8501")
        totals = page.rendered_totals()
        assert totals["Customers"] == f"{customers:,}" == "1,500"
        assert totals["Average monthly LTV"] == f"{average:,.2f}"
        assert "run 20261202t060000-e2e001" in page.banner()
        page.screenshot("dashboard-cluster.png")
    service = kubectl_json("get", "service", "duckherd-dashboard", "-n", namespace)
    assert json.dumps(service["spec"]["ports"]) == json.dumps(
        [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"}]
    )
