"""The API models accept good manifests and reject bad ones naming the field."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import ValidationError

from duckherd.api import (
    CRON_PATTERN,
    DataPipelineSpec,
    SecretKeyRef,
    SecretNotFound,
    iter_secret_refs,
)
from tests.unit.manifests import VALID_SPEC, spec


def test_valid_spec_parses_with_defaults() -> None:
    parsed = DataPipelineSpec.model_validate(VALID_SPEC)
    assert parsed.stages() == ["ingest", "transform", "check", "publish"]
    assert parsed.storage.retainOnDelete is True
    assert parsed.sources[0].kind == "http"
    assert parsed.sources[1].kind == "postgres"
    assert parsed.sources[1].writeDisposition == "append"


def test_stages_follow_the_spec() -> None:
    minimal = {
        "schedule": "@daily",
        "sources": [{"name": "a", "file": {"path": "/x", "format": "csv"}}],
    }
    assert DataPipelineSpec.model_validate(minimal).stages() == ["ingest"]


S3 = {
    "endpoint": "http://s3.storage:8333",
    "bucket": "backups",
    "accessKeyIdSecretRef": {"name": "s3", "key": "id"},
    "secretAccessKeySecretRef": {"name": "s3", "key": "secret"},
}
FILE_SOURCE = {"name": "a", "file": {"path": "/a", "format": "csv"}}
DRIFT_CHECK = {
    "table": "marts.x",
    "expectation": "expect_column_drift_to_be_within",
    "kwargs": {"column": "v", "runs": 5},
}


def _error(body: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        DataPipelineSpec.model_validate(body)
    return str(caught.value)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (spec(schedule="every day"), "invalid cron expression 'every day': use five fields"),
        (spec(schedule="0 6 * * * *"), "invalid cron expression"),
        (spec(schedule="0 0 30 2 *"), "'0 0 30 2 *': it never fires"),
        (spec(schedule="CRON_TZ=UTC 0 6 * * *"), "invalid cron expression"),
        (spec(pod={"resources": {"limits": {"cpu": "lots"}}}), "invalid quantity 'lots'"),
        (spec(timeZone="Mars/Olympus"), "unknown time zone"),
        (
            spec(lineage={"url": "https://user:secret@marquez.example"}),
            "lineage.url",
        ),
        (spec(sources=[]), "sources"),
        (
            spec(sources=[{"name": "a"}]),
            "set exactly one of http, postgres, file",
        ),
        (
            spec(
                sources=[
                    {"name": "a", "file": {"path": "/a", "format": "csv"}},
                    {"name": "a", "file": {"path": "/b", "format": "csv"}},
                ]
            ),
            "duplicate names a",
        ),
        (
            spec(
                sources=[
                    {
                        "name": "a",
                        "writeDisposition": "merge",
                        "file": {"path": "/a", "format": "csv"},
                    }
                ]
            ),
            "merge needs it",
        ),
        (spec(sources=[{"name": "Bad-Name", "file": {"path": "/a", "format": "csv"}}]), "name"),
        (spec(storage={"existingClaim": "data", "size": "1Gi"}), "existingClaim excludes"),
        (spec(freshness={"warnAfter": "48h", "errorAfter": "1h"}), "errorAfter"),
        (spec(freshness={"warnAfter": "2 days"}), "warnAfter"),
        (spec(surprise=True), "surprise"),
        (
            spec(quality={"checks": [{"table": "marts.x", "expectation": "expect_magic"}]}),
            "expectation",
        ),
        (spec(backup={"schedule": "@daily"}), "backup: set exactly one of volume, s3"),
        (
            spec(backup={"schedule": "@daily", "volume": {}, "s3": S3}),
            "backup: set exactly one of volume, s3",
        ),
        (
            spec(backup={"schedule": "@daily", "volume": {"existingClaim": "b", "size": "1Gi"}}),
            "existingClaim excludes size",
        ),
        (spec(backup={"schedule": "@daily", "keep": 0, "volume": {}}), "backup.keep"),
        (spec(backup={"schedule": "@daily", "s3": {**S3, "bucket": "No_Such"}}), "bucket"),
        (
            spec(backup={"schedule": "@daily", "s3": {**S3, "accessKey": "inline"}}),
            "accessKey",
        ),
        (
            spec(sources=[{**FILE_SOURCE, "retainFor": "720h", "keepLoads": 3}]),
            "sources[a]: set at most one of retainFor, keepLoads",
        ),
        (spec(sources=[{**FILE_SOURCE, "retainFor": "30 days"}]), "retainFor"),
        (
            spec(
                history={"keepRuns": 5},
                quality={"checks": [DRIFT_CHECK]},
            ),
            "history.keepRuns 5 must exceed the largest drift check `runs` (5)",
        ),
    ],
)
def test_invalid_specs_name_the_problem(body: dict[str, Any], expected: str) -> None:
    assert expected in _error(body)


def test_secret_refs_resolve_from_env_without_leaking_values() -> None:
    parsed = DataPipelineSpec.model_validate(VALID_SPEC)
    refs = iter_secret_refs(parsed)
    assert [r.env_name for r in refs] == [
        "DUCKHERD_SECRET_CRM_API_TOKEN",
        "DUCKHERD_SECRET_SHOP_DB_DSN",
        "DUCKHERD_SECRET_CACHE_URL",
    ]
    ref = SecretKeyRef(name="crm-api", key="token")
    assert ref.resolve({"DUCKHERD_SECRET_CRM_API_TOKEN": "s3cret"}) == "s3cret"
    with pytest.raises(SecretNotFound, match="crm-api/token") as caught:
        ref.resolve({})
    assert "s3cret" not in str(caught.value)


def test_quantities_take_integers_and_strings() -> None:
    parsed = DataPipelineSpec.model_validate(
        spec(
            pod={"resources": {"requests": {"cpu": 1, "memory": "512Mi"}, "limits": {"cpu": "1.5"}}}
        )
    )
    assert parsed.pod.resources is not None
    assert parsed.pod.resources.requests == {"cpu": "1", "memory": "512Mi"}


@pytest.mark.parametrize(
    ("schedule", "admitted"),
    [
        ("0 6 * * *", True),
        ("*/15 9-17 * * MON-FRI", True),
        ("0 0 1,15 jan-jun ?", True),
        ("@daily", True),
        ("61 * * * *", False),
        ("0 24 * * *", False),
        ("0 6 * *", False),
        ("@every 1h", False),
        ("CRON_TZ=UTC 0 6 * * *", False),
    ],
)
def test_the_crd_cron_pattern_admits_what_cronjobs_take(schedule: str, admitted: bool) -> None:
    assert bool(re.fullmatch(CRON_PATTERN, schedule)) is admitted


def test_backup_credentials_reach_only_the_backup_and_restore_pods() -> None:
    parsed = DataPipelineSpec.model_validate(spec(backup={"schedule": "@daily", "s3": S3}))
    wanted = ["s3/id", "s3/secret"]
    for task in ("backup", "restore"):
        assert [f"{r.name}/{r.key}" for r in iter_secret_refs(parsed, task)] == wanted
    for stage in parsed.stages():
        assert not {f"{r.name}/{r.key}" for r in iter_secret_refs(parsed, stage)} & set(wanted)


def test_retention_and_history_parse() -> None:
    parsed = DataPipelineSpec.model_validate(
        spec(sources=[{**FILE_SOURCE, "keepLoads": 3}], history={"keepRuns": 6})
    )
    assert parsed.sources[0].keepLoads == 3
    assert parsed.history.keepRuns == 6
    assert DataPipelineSpec.model_validate(VALID_SPEC).history.keepRuns == 100
