"""The one redaction: known secrets with the passwords inside them, and credential shapes."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from duckherd.summary import StageSummary
from duckherd_jobs.context import StageContext
from duckherd_jobs.redaction import redact, redact_summary, redacted_logs, stage_secrets
from duckherd_jobs.runner import run_stage
from tests import pipelines


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("redis://:pa%2Fss@host:6379/0", "bad password pa/ss for redis://:pa%2Fss@host:6379/0"),
        ("host=db password='s3 cret' user=app", "auth failed for 's3 cret' / s3 cret"),
        ("postgresql://app:hunter2@db/x", "could not parse hunter2"),
    ],
)
def test_redact_removes_the_secret_and_the_password_inside_it(secret: str, message: str) -> None:
    scrubbed = redact(message, [secret])

    assert "***" in scrubbed
    for fragment in ("pa/ss", "pa%2Fss", "s3 cret", "hunter2"):
        assert fragment not in scrubbed


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("GET https://bob:tok3n@api.example/x failed", "GET https://bob:***@api.example/x failed"),
        ("dsn host=db password=hunter2 user=app", "dsn host=db password=*** user=app"),
        ("dsn host=db password = 'two words' user=app", "dsn host=db password = *** user=app"),
        ("https://x/y?user=a&PASSWORD=p4ss&z=1", "https://x/y?user=a&PASSWORD=***&z=1"),
        ("PGPASSWORD=p4ss psql", "PGPASSWORD=*** psql"),
        (
            "no credentials at https://api.example/x?page=2",
            "no credentials at https://api.example/x?page=2",
        ),
    ],
)
def test_credential_shapes_go_whoever_they_belong_to(text: str, expected: str) -> None:
    assert redact(text) == expected


ORDERS_FROM_POSTGRES = {
    "name": "orders",
    "postgres": {"dsnSecretRef": {"name": "shop-db", "key": "dsn"}, "table": "o"},
}


def test_a_stage_holds_its_secret_refs_and_pod_env_from_secrets_only() -> None:
    pipeline = pipelines.pipeline(
        sources=[ORDERS_FROM_POSTGRES],
        publish=[{"table": "orders", "redis": {"urlSecretRef": {"name": "cache", "key": "url"}}}],
        pod={
            "env": [
                {"name": "PLAIN", "value": "not-secret"},
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "t", "key": "k"}}},
                {"name": "MAPPED", "valueFrom": {"configMapKeyRef": {"name": "m", "key": "k"}}},
            ]
        },
    )
    env = {
        "DUCKHERD_SECRET_SHOP_DB_DSN": "dsn-value",
        "DUCKHERD_SECRET_CACHE_URL": "url-value",
        "PLAIN": "not-secret",
        "TOKEN": "token-value",
        "MAPPED": "config-value",
    }
    assert stage_secrets(pipeline, "ingest", env) == ["dsn-value", "token-value"]
    assert stage_secrets(pipeline, "publish", env) == ["url-value", "token-value"]
    assert stage_secrets(pipeline, "transform", env) == ["token-value"]


def test_every_string_of_a_summary_is_redacted() -> None:
    summary = StageSummary.model_validate(
        {
            "stage": "check",
            "ok": False,
            "error": "failed for s3cret",
            "checks": {
                "passed": 0,
                "failed": 1,
                "results": [
                    {
                        "name": "c",
                        "table": "marts.t",
                        "expectation": "expect_column_values_to_be_in_set",
                        "severity": "error",
                        "success": False,
                        "observed": "unexpected: password=hunter2",
                    }
                ],
            },
        }
    )
    dumped = redact_summary(summary, ["s3cret"]).model_dump_json()
    assert "s3cret" not in dumped and "hunter2" not in dumped
    assert dumped.count("***") == 2


def test_log_records_and_their_tracebacks_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("duckherd.jobs.test")
    with caplog.at_level("INFO"):
        with redacted_logs(["s3cret"]):
            log.info("connecting with %s", "s3cret")
            try:
                raise RuntimeError("refused: postgresql://app:hunter2@db/x")
            except RuntimeError:
                log.exception("stage failed")
        log.info("after the block: %s", "s3cret")

    assert "s3cret" not in caplog.records[0].getMessage()
    assert "hunter2" not in caplog.text
    assert "postgresql://app:***@db/x" in caplog.text
    assert caplog.records[-1].getMessage() == "after the block: s3cret"  # the block only


def test_a_libpq_error_that_quotes_part_of_the_dsn_is_redacted_on_the_ingest_path(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """libpq quotes the first token it cannot parse: here the URL part of a DSN Secret in the
    SQLAlchemy form. Hiding only whole secret values let its password through."""
    dsn = "postgresql+psycopg2://app:Hunter2-pw@127.0.0.1:1/shop connect_timeout=1"
    pipeline = pipelines.pipeline(sources=[ORDERS_FROM_POSTGRES])
    ctx = StageContext(
        pipeline=pipeline,
        warehouse=tmp_path / "w.duckdb",
        run_id="run-1",
        env={"DUCKHERD_SECRET_SHOP_DB_DSN": dsn},
        lock_timeout_seconds=30,
    )
    with caplog.at_level("DEBUG"):
        summary = run_stage("ingest", ctx)

    assert not summary.ok
    assert 'missing "=" after "postgresql+psycopg2://app:***@127.0.0.1:1/shop"' in (
        summary.error or ""
    )
    assert "Hunter2-pw" not in summary.model_dump_json() + caplog.text
