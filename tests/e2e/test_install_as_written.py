"""README's "Install on a cluster", as written, on a cluster another release used before.

1. A release is installed and uninstalled: the CRD stays (keep policy) with Helm's ownership
   metadata naming that release.
2. `helm install` of a new release is refused for that CRD, with Helm's ownership message;
   the two commands of docs/operations.md hand the CRD over and the install goes through.
3. The new release runs the demo customers API with the operator's image
   (`demoSource.enabled=true`), and the example's pipeline.yaml, applied unchanged, runs end
   to end and publishes. Its publish Secrets point at the session's Redis and PostgreSQL on
   this machine (targets.yaml's images cannot be pulled here).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest

from duckherd_operator.builders import run_now_job_name
from tests.e2e.conftest import Cluster, kubectl, kubectl_json
from tests.e2e.operator_support import (
    CHART,
    CRD_NAME,
    EXAMPLE,
    condition,
    delete_namespace,
    ensure_restricted_namespace,
    helm,
    image_values,
    wait_run_finished,
)
from tests.services import PostgresServer, RedisServer

pytestmark = pytest.mark.e2e

NAME = "customer-analytics"
CUSTOMERS = 2_000  # the demo API's size (demoSource.customers): a short run
REDIS_DB = 5  # a database of the session's Redis no other module publishes to


def _adopt(release: str, namespace: str) -> None:
    """The commands docs/operations.md gives, exactly."""
    kubectl("label", "crd", CRD_NAME, "app.kubernetes.io/managed-by=Helm", "--overwrite")
    kubectl(
        "annotate",
        "crd",
        CRD_NAME,
        "--overwrite",
        f"meta.helm.sh/release-name={release}",
        f"meta.helm.sh/release-namespace={namespace}",
    )


def _install(cluster: Cluster, release: str, namespace: str, *flags: str) -> Any:
    return helm(
        "install",
        release,
        str(CHART),
        "--namespace",
        namespace,
        *image_values(cluster.need_image()),
        "--set",
        "image.pullPolicy=IfNotPresent",
        *flags,
        check=False,
    )


def _owner(crd: dict[str, Any]) -> tuple[str | None, str | None]:
    annotations = crd["metadata"].get("annotations") or {}
    return (
        annotations.get("meta.helm.sh/release-name"),
        annotations.get("meta.helm.sh/release-namespace"),
    )


@pytest.fixture(scope="module")
def namespaces() -> Iterator[tuple[str, str]]:
    suffix = uuid.uuid4().hex[:6]
    before, readme = f"e2e-before-{suffix}", f"e2e-readme-{suffix}"
    for name in (before, readme):
        ensure_restricted_namespace(name)
    yield before, readme
    for name in (before, readme):
        delete_namespace(name)


@pytest.fixture(scope="module")
def release(cluster: Cluster, namespaces: tuple[str, str]) -> Iterator[tuple[str, str]]:
    """The README's release, installed over a CRD another release left behind."""
    before_namespace, namespace = namespaces
    before = f"duckherd-before-{uuid.uuid4().hex[:4]}"
    if kubectl("get", "crd", CRD_NAME, "--ignore-not-found", "-o", "name").strip():
        _adopt(before, before_namespace)  # whoever had it (an earlier module) hands it over
    installed = _install(cluster, before, before_namespace)
    assert installed.returncode == 0, installed.stderr
    helm("uninstall", before, "--namespace", before_namespace, "--wait")
    left = kubectl_json("get", "crd", CRD_NAME)
    assert _owner(left) == (before, before_namespace), "the kept CRD names its old release"

    name = "duckherd"
    refused = _install(cluster, name, namespace, "--set", "demoSource.enabled=true")
    assert refused.returncode != 0, "Helm took over a CRD owned by another release"
    assert "invalid ownership metadata" in refused.stderr, refused.stderr
    assert CRD_NAME in refused.stderr, refused.stderr

    _adopt(name, namespace)
    installed = _install(
        cluster,
        name,
        namespace,
        "--set",
        "demoSource.enabled=true",
        "--set",
        f"demoSource.customers={CUSTOMERS}",
        "--wait",
        "--timeout",
        "5m",
    )
    assert installed.returncode == 0, installed.stderr
    try:
        yield name, namespace
    finally:
        kubectl("delete", "datapipelines", "--all", "-n", namespace, "--timeout=120s", check=False)
        helm("uninstall", name, "--namespace", namespace, "--wait", check=False)


def test_the_new_release_owns_the_adopted_crd(release: tuple[str, str]) -> None:
    assert _owner(kubectl_json("get", "crd", CRD_NAME)) == release
    assert kubectl_json("get", "deployment", "duckherd-demo-source", "-n", release[1])


def test_the_example_runs_as_written_with_the_demo_source_of_the_chart(
    cluster: Cluster, release: tuple[str, str], postgres: PostgresServer, redis: RedisServer
) -> None:
    _, namespace = release
    host = cluster.need_host_ip()
    connection = psycopg2.connect(postgres.dsn())
    connection.autocommit = True  # CREATE DATABASE runs outside a transaction
    try:
        with connection.cursor() as cursor:
            cursor.execute("DROP DATABASE IF EXISTS readme")
            cursor.execute("CREATE DATABASE readme")
    finally:
        connection.close()
    secrets = {  # what targets.yaml creates, pointed at this machine's servers
        "duckherd-cache": {"url": redis.url(host=host, db=REDIS_DB)},
        "duckherd-appdb": {"dsn": postgres.dsn(host=host, database="readme")},
    }
    for secret, data in secrets.items():
        manifest = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": secret},
            "stringData": data,
        }
        kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))
    kubectl("apply", "-n", namespace, "-f", str(EXAMPLE))
    value = str(time.time_ns())
    kubectl(
        "annotate",
        "-n",
        namespace,
        f"datapipeline/{NAME}",
        f"duckherd.io/run-now={value}",
        "--overwrite",
    )
    pipeline = wait_run_finished(namespace, NAME, run_now_job_name(NAME, value))

    status = pipeline["status"]
    assert status["lastRun"]["result"] == "Succeeded", status["lastRun"]
    assert [s["stage"] for s in status["lastRun"]["stages"]] == [
        "ingest",
        "transform",
        "check",
        "publish",
    ]
    rows = {t["name"]: t["rows"] for t in status["tables"]}
    assert rows["raw.customers"] == CUSTOMERS
    assert {p["rows"] for p in status["published"]} == {CUSTOMERS}
    assert (condition(pipeline, "DataReady") or {}).get("status") == "True"
    assert (condition(pipeline, "Published") or {}).get("status") == "True"
