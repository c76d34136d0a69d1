"""The dbt tests a transform ran, as check results: they count in the run's quality verdict.

dbt's own verdict maps onto Duckherd's severities: a test that failed at `severity: warn` (dbt
status `warn`) is a warn-severity failure, one that failed at `error` (status `fail`) or could
not run (status `error`) an error-severity failure; a passing test keeps its configured
severity. Skipped tests (upstream failures) are not results. The rows go to `_duckherd.checks`
(expectation `dbt_test`), where the check stage of the same run reads them back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from duckherd_jobs.history import DBT_TEST, CheckRecord
from duckherd_jobs.transform.invocation import DbtNodeResult

_GX_SEVERITY = {"error": "critical", "warn": "warning"}
_MESSAGE_CHARS = 150


def _severity(node: DbtNodeResult) -> Literal["warn", "error"]:
    if node.status == "warn":
        return "warn"
    if node.status in ("fail", "error"):
        return "error"
    return "warn" if node.severity.upper() == "WARN" else "error"


def _observed(node: DbtNodeResult) -> str:
    if node.status == "pass":
        return "pass"
    if node.status == "error":
        return "error: " + " ".join(node.message.split())[:_MESSAGE_CHARS]
    return f"{node.failures or 0} failing row(s)"


def dbt_test_records(
    nodes: Sequence[DbtNodeResult], known: Mapping[str, str] | None = None
) -> list[CheckRecord]:
    """A check record per dbt test that ran (pass, warn, fail or error), on the relation it
    tests: its model's, or for a source test (no attached node) the source's (`known`: unique
    id -> relation of the sources and nodes the manifest defines)."""
    relations: dict[str, str] = {**(known or {})}
    relations.update({node.unique_id: node.relation for node in nodes})
    records = []
    for node in nodes:
        if node.resource_type != "test" or node.status not in ("pass", "warn", "fail", "error"):
            continue
        tested = node.attached_node or next(iter(node.depends_on), "")
        model = tested.rpartition(".")[2] or tested
        severity, observed = _severity(node), _observed(node)
        success = node.status == "pass"
        result: dict[str, Any] = {
            "success": success,
            "expectation_config": {
                "type": DBT_TEST,
                "kwargs": {"unique_id": node.unique_id, "model": model},
                "meta": {},
                "severity": _GX_SEVERITY[severity],
            },
            "result": {
                "observed_value": node.failures,
                "details": {"status": node.status, "message": node.message},
            },
            "meta": {"name": f"dbt:{node.name}", "severity": severity, "observed": observed},
        }
        records.append(
            CheckRecord(
                name=f"dbt:{node.name}",
                table=relations.get(tested, model),
                expectation=DBT_TEST,
                severity=severity,
                success=success,
                observed=observed,
                result=result,
            )
        )
    return records
