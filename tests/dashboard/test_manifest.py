"""dashboard.yaml says what the pipeline says: the settings the example's manifest implies,
the Secrets its publish stage reads. (Admission is checked by the cluster: tests/e2e.)"""

from __future__ import annotations

from typing import Any

import yaml
from serving_layer import settings_from_manifest

from tests.dashboard.serving import EXAMPLE, MART, example


def deployment() -> dict[str, Any]:
    documents = yaml.safe_load_all((EXAMPLE / "dashboard.yaml").read_text())
    (found,) = [doc for doc in documents if doc and doc["kind"] == "Deployment"]
    return dict(found)


def container_env() -> dict[str, dict[str, Any]]:
    (container,) = deployment()["spec"]["template"]["spec"]["containers"]
    return {item["name"]: item for item in container["env"]}


def test_the_settings_are_the_pipelines_in_the_pods_namespace() -> None:
    env = container_env()
    expected = settings_from_manifest(example(), MART, "$(POD_NAMESPACE)")

    assert {name: env[name]["value"] for name in expected} == expected
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}


def test_the_connections_come_from_the_secrets_publish_reads() -> None:
    env = container_env()
    publish = example().spec.publish
    refs = {
        "DASHBOARD_REDIS_URL": next(e.redis.urlSecretRef for e in publish if e.redis),
        "DASHBOARD_POSTGRES_DSN": next(e.postgres.dsnSecretRef for e in publish if e.postgres),
    }

    for name, ref in refs.items():
        assert env[name]["valueFrom"] == {"secretKeyRef": {"name": ref.name, "key": ref.key}}


def test_the_pod_has_no_api_access_and_a_read_only_root() -> None:
    pod = deployment()["spec"]["template"]["spec"]
    (container,) = pod["containers"]

    assert pod["automountServiceAccountToken"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["args"][:2] == ["run", "/opt/duckherd/dashboard/app.py"]
