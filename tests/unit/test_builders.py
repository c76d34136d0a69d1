"""Builders return the children a pipeline should have; golden files pin them."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from duckherd.api import DataPipelineSpec
from duckherd_operator.builders import (
    DEFAULT_STAGE_RESOURCES,
    LineageDefaults,
    Pipeline,
    build_children,
    build_restore_job,
    build_stage_job,
    build_warehouse_pvc,
    chained_job_name,
)
from tests.unit.manifests import spec

GOLDEN = Path(__file__).parent / "golden"


def _pipeline(**overrides: Any) -> Pipeline:
    return Pipeline(
        name="shop",
        namespace="analytics",
        uid="uid-1",
        generation=3,
        spec=DataPipelineSpec.model_validate(spec(**overrides)),
        image="localhost/duckherd:dev",
    )


def _check_golden(name: str, documents: list[dict[str, Any]]) -> None:
    text = yaml.safe_dump_all(documents, sort_keys=True)
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert path.read_text() == text, f"{name} drifted; UPDATE_GOLDEN=1 rewrites it after review"


def test_children_match_golden() -> None:
    _check_golden("children.yaml", build_children(_pipeline()))


def test_chained_job_matches_golden() -> None:
    job = build_stage_job(
        _pipeline(),
        "transform",
        name=chained_job_name("shop", "transform", "shop-ingest-29000000"),
        run_id="shop-ingest-29000000",
        trigger="Schedule",
        cronjob_uid="cron-uid",
    )
    _check_golden("chained-job.yaml", [job])


def test_every_pod_is_restricted_and_reads_results_without_api_access() -> None:
    for child in build_children(_pipeline()):
        if child["kind"] != "CronJob":
            continue
        pod = child["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        container = pod["containers"][0]
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
        assert child["spec"]["concurrencyPolicy"] == "Forbid"


def _secret_env(cronjob: dict[str, Any]) -> dict[str, Any]:
    env = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"]
    return {e["name"]: e for e in env if e["name"].startswith("DUCKHERD_SECRET_")}


def test_secrets_reach_pods_only_as_secret_key_refs_of_their_own_stage() -> None:
    cronjobs = {
        c["metadata"]["name"]: c for c in build_children(_pipeline()) if c["kind"] == "CronJob"
    }
    ingest = _secret_env(cronjobs["shop-ingest"])
    assert set(ingest) == {"DUCKHERD_SECRET_CRM_API_TOKEN", "DUCKHERD_SECRET_SHOP_DB_DSN"}
    token = ingest["DUCKHERD_SECRET_CRM_API_TOKEN"]
    assert token["valueFrom"] == {"secretKeyRef": {"name": "crm-api", "key": "token"}}
    assert "value" not in token
    assert set(_secret_env(cronjobs["shop-publish"])) == {"DUCKHERD_SECRET_CACHE_URL"}
    assert _secret_env(cronjobs["shop-transform"]) == {}
    assert _secret_env(cronjobs["shop-check"]) == {}


def test_only_ingest_is_scheduled_unless_transform_has_its_own() -> None:
    schedules = {
        c["metadata"]["name"]: (c["spec"]["schedule"], c["spec"]["suspend"])
        for c in build_children(_pipeline())
        if c["kind"] == "CronJob"
    }
    assert schedules["shop-ingest"] == ("0 6 * * *", False)
    assert schedules["shop-transform"][1] is True
    own = _pipeline(transform={"dbt": {"schedule": "30 7 * * *"}})
    transform = next(c for c in build_children(own) if c["metadata"]["name"] == "shop-transform")
    assert (transform["spec"]["schedule"], transform["spec"]["suspend"]) == ("30 7 * * *", False)


def test_suspend_suspends_the_scheduled_stages() -> None:
    cronjobs = [c for c in build_children(_pipeline(suspend=True)) if c["kind"] == "CronJob"]
    assert all(c["spec"]["suspend"] for c in cronjobs)


@pytest.mark.parametrize(
    ("storage", "owned", "claim"),
    [
        ({"size": "2Gi"}, False, "shop-warehouse"),
        ({"retainOnDelete": False}, True, "shop-warehouse"),
    ],
)
def test_pvc_is_retained_unless_asked(storage: dict[str, Any], owned: bool, claim: str) -> None:
    pvc = build_warehouse_pvc(_pipeline(storage=storage))
    assert pvc is not None
    assert pvc["metadata"]["name"] == claim
    assert ("ownerReferences" in pvc["metadata"]) is owned


def test_existing_claim_is_used_not_created() -> None:
    pipeline = _pipeline(storage={"existingClaim": "shared-data"})
    assert build_warehouse_pvc(pipeline) is None
    cronjob = next(c for c in build_children(pipeline) if c["kind"] == "CronJob")
    volumes = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["volumes"]
    claim = next(v for v in volumes if v["name"] == "warehouse")
    assert claim["persistentVolumeClaim"]["claimName"] == "shared-data"


def test_chained_job_names_are_deterministic_and_short() -> None:
    first = chained_job_name("a" * 42, "transform", "run-1")
    assert first == chained_job_name("a" * 42, "transform", "run-1")
    assert first != chained_job_name("a" * 42, "transform", "run-2")
    assert len(first) <= 63


def _stage_resources(pipeline: Pipeline) -> list[dict[str, Any]]:
    return [
        c["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["resources"]
        for c in build_children(pipeline)
        if c["kind"] == "CronJob"
    ]


def test_stage_pods_request_resources_unless_the_spec_replaces_them() -> None:
    """Without spec.pod.resources every stage pod gets the default requests (so a burst of runs
    waits Pending instead of overcommitting the node); the spec's replace them as a whole."""
    default = _pipeline(pod={})
    assert _stage_resources(default) == [DEFAULT_STAGE_RESOURCES] * 4
    assert DEFAULT_STAGE_RESOURCES["requests"].keys() == {"cpu", "memory"}
    chart = _pipeline(pod={})
    chart = Pipeline(**{**chart.__dict__, "default_resources": {"requests": {"cpu": "1"}}})
    assert _stage_resources(chart) == [{"requests": {"cpu": "1"}}] * 4
    own = _pipeline(pod={"resources": {"limits": {"memory": "4Gi"}}})
    assert _stage_resources(own) == [{"limits": {"memory": "4Gi"}}] * 4


def _stage_env(pipeline: Pipeline, stage: str) -> dict[str, Any]:
    cronjob = next(c for c in build_children(pipeline) if c["metadata"]["name"] == f"shop-{stage}")
    env = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"]
    return {e["name"]: e for e in env}


LINEAGE = LineageDefaults(
    url="http://marquez.marquez:5000",
    endpoint="api/v1/lineage",
    namespace="analytics-lineage",
    timeout_seconds="3",
    api_key_secret="lineage/apiKey",
)


def test_every_stage_gets_the_operators_lineage_defaults_as_the_clients_own_variables() -> None:
    pipeline = replace(_pipeline(), lineage=LINEAGE)
    for stage in ("ingest", "transform", "check", "publish"):
        env = _stage_env(pipeline, stage)
        assert env["OPENLINEAGE_URL"]["value"] == "http://marquez.marquez:5000"
        assert env["OPENLINEAGE_ENDPOINT"]["value"] == "api/v1/lineage"
        assert env["OPENLINEAGE_NAMESPACE"]["value"] == "analytics-lineage"
        assert env["DUCKHERD_LINEAGE_TIMEOUT"]["value"] == "3"
        # The key only by reference, and optional: a namespace without it still runs.
        assert env["OPENLINEAGE_API_KEY"] == {
            "name": "OPENLINEAGE_API_KEY",
            "valueFrom": {"secretKeyRef": {"name": "lineage", "key": "apiKey", "optional": True}},
        }


def test_lineage_is_off_by_default_and_when_the_pipeline_turns_it_off() -> None:
    assert not any(name.startswith("OPENLINEAGE_") for name in _stage_env(_pipeline(), "ingest"))
    off = replace(_pipeline(lineage={"enabled": False}), lineage=LINEAGE)
    assert not any(name.startswith("OPENLINEAGE_") for name in _stage_env(off, "ingest"))


def test_a_pipelines_lineage_key_reaches_every_stage_as_a_secret_key_ref() -> None:
    pipeline = _pipeline(
        lineage={
            "url": "https://datahub.example/openapi/openlineage/",
            "apiKeySecretRef": {"name": "datahub", "key": "token"},
        }
    )
    for stage in ("ingest", "transform", "check", "publish"):
        key = _stage_env(pipeline, stage)["DUCKHERD_SECRET_DATAHUB_TOKEN"]
        assert key["valueFrom"] == {"secretKeyRef": {"name": "datahub", "key": "token"}}


BACKUP_S3 = {
    "schedule": "30 7 * * *",
    "keep": 5,
    "s3": {
        "endpoint": "http://s3.storage:8333",
        "bucket": "backups",
        "accessKeyIdSecretRef": {"name": "backup-s3", "key": "id"},
        "secretAccessKeySecretRef": {"name": "backup-s3", "key": "secret"},
    },
}


def test_backup_children_and_the_restore_job_match_golden() -> None:
    pipeline = _pipeline(backup={"schedule": "30 7 * * *", "volume": {"size": "5Gi"}})
    children = build_children(pipeline)
    added = [c for c in children if c["metadata"]["name"] in ("shop-backups", "shop-backup")]
    assert [c["kind"] for c in added] == ["PersistentVolumeClaim", "CronJob"]
    assert "ownerReferences" not in added[0]["metadata"]  # backups outlive the pipeline
    restore = build_restore_job(pipeline, "20261202t101500-123456", name="shop-restore-1")
    _check_golden("backup.yaml", [*added, restore])


def test_backup_and_restore_pods_are_restricted_and_alone_hold_the_bucket_secret() -> None:
    pipeline = _pipeline(backup=BACKUP_S3)
    children = {c["metadata"]["name"]: c for c in build_children(pipeline)}
    assert "shop-backups" not in children  # a bucket needs no volume
    backup = children["shop-backup"]
    assert backup["spec"]["schedule"] == "30 7 * * *"
    assert backup["spec"]["concurrencyPolicy"] == "Forbid"
    restore = build_restore_job(pipeline, "latest", name="shop-restore-1")
    for pod in (
        backup["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        restore["spec"]["template"]["spec"],
    ):
        assert pod["automountServiceAccountToken"] is False
        container = pod["containers"][0]
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert sorted(_secret_env_of(container)) == [
            "DUCKHERD_SECRET_BACKUP_S3_ID",
            "DUCKHERD_SECRET_BACKUP_S3_SECRET",
        ]
    for name, child in children.items():
        if child["kind"] == "CronJob" and name != "shop-backup":
            container = child["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
            assert not [e for e in _secret_env_of(container) if "BACKUP_S3" in e]


def _secret_env_of(container: dict[str, Any]) -> list[str]:
    return [e["name"] for e in container["env"] if e["name"].startswith("DUCKHERD_SECRET_")]
