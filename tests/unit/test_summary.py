"""The termination-message contract: bounded, and garbage is named, not trusted."""

from __future__ import annotations

import json

import pytest

from duckherd.summary import (
    MAX_BYTES,
    CheckResult,
    ChecksSummary,
    ModelRun,
    StageResources,
    StageSummary,
    SummaryError,
    TableSummary,
    WarehouseUsage,
    decode,
    encode,
)


def test_round_trip() -> None:
    summary = StageSummary(
        stage="ingest", ok=True, runId="r1", tables={"raw.a": TableSummary(rows=3, loaded=3)}
    )
    assert decode(encode(summary), stage="ingest") == summary


def test_oversized_summaries_are_truncated_gracefully() -> None:
    results = [
        CheckResult(name=f"check-{i}" * 5, severity="warn", success=i % 2 == 0) for i in range(400)
    ]
    tables = {f"raw.table_{i}": TableSummary(rows=i, loaded=i) for i in range(200)}
    summary = StageSummary(
        stage="check",
        ok=False,
        tables=tables,
        checks=ChecksSummary(passed=200, failed=0, warned=200, results=results),
        error="x" * 10_000,
    )
    data = encode(summary)
    assert len(data) <= MAX_BYTES
    decoded = decode(data)
    assert decoded.truncated is True
    assert decoded.checks is not None and decoded.checks.warned == 200
    assert decoded.error is not None and decoded.error.endswith("[truncated]")


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("", "empty"),
        ("   \n", "empty"),
        ("Traceback (most recent call last):\n  boom", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"stage": "ingest"}', "not a stage summary"),
        ("x" * (MAX_BYTES + 1), "larger than"),
        (json.dumps({"stage": "check", "ok": True}), "expected 'ingest'"),
    ],
)
def test_garbled_messages_are_named(message: str, expected: str) -> None:
    with pytest.raises(SummaryError, match=expected):
        decode(message, stage="ingest")


def test_the_last_json_line_of_logs_is_the_summary() -> None:
    logs = "INFO loading\nINFO done\n" + json.dumps({"stage": "ingest", "ok": True, "runId": "r"})
    assert decode(logs).runId == "r"


def test_resources_and_warehouse_travel_and_are_never_shed() -> None:
    summary = StageSummary(
        stage="check",
        ok=True,
        checks=ChecksSummary(
            passed=400,
            results=[
                CheckResult(name=f"c{i}" * 20, severity="warn", success=True) for i in range(400)
            ],
        ),
        resources=StageResources(peakMemoryBytes=123_456_789, cpuSeconds=2.25),
        warehouse=WarehouseUsage(sizeBytes=1, capacityBytes=3, availableBytes=2),
    )
    decoded = decode(encode(summary))
    assert decoded.truncated is True
    assert decoded.resources == summary.resources
    assert decoded.warehouse == summary.warehouse


def test_the_dbt_model_graph_stays_out_of_the_termination_message() -> None:
    summary = StageSummary(
        stage="transform",
        ok=True,
        lineage=[ModelRun(name="m", relation="marts.m", status="success", inputs=["raw.s"])],
    )
    assert "lineage" not in json.loads(encode(summary))
    assert summary.model_dump()["lineage"][0]["inputs"] == ["raw.s"]  # the _duckherd.runs copy
