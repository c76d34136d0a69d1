"""What the warehouse records about a stage run, read back for its lineage facets.

The stages already write everything the facets need: the catalog has each table's columns
and types (after schema evolution), `_duckherd.checks` each expectation's result (and the dbt
tests of the run's transform), `_duckherd.profiles` each checked column's null count and,
for the columns a drift check watches, its approximate distinct count. Reading them back
after the stage costs one read-only connection, and nothing at all while lineage is off.
Free of the OpenLineage client (plain data out).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from duckherd_jobs.warehouse import catalog_columns, connect


@dataclass(frozen=True)
class AssertionFact:
    """One expectation (or dbt test) of the run, on one table."""

    name: str
    expectation: str
    success: bool
    severity: str
    column: str | None
    actual: str | None


@dataclass(frozen=True)
class ColumnMetric:
    null_count: int | None
    distinct_count: int | None


@dataclass(frozen=True)
class TableMetrics:
    row_count: int
    columns: dict[str, ColumnMetric]


@dataclass
class WarehouseFacts:
    """Per table (`schema.table`): columns, assertions and metrics of one run."""

    columns: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    assertions: dict[str, list[AssertionFact]] = field(default_factory=dict)
    metrics: dict[str, TableMetrics] = field(default_factory=dict)


def read_facts(
    warehouse: Path,
    tables: Iterable[str],
    run_id: str,
    *,
    quality: bool,
    timeout_seconds: float,
) -> WarehouseFacts:
    """The tables' columns and, with `quality`, the run's check results and profiles."""
    facts = WarehouseFacts()
    if not warehouse.exists():
        return facts
    with connect(warehouse, timeout_seconds=timeout_seconds, read_only=True) as connection:
        for table in tables:
            columns = catalog_columns(connection, table)
            if columns:
                facts.columns[table] = columns
        if quality and _has_table(connection, "checks"):
            facts.assertions = _assertions(connection, run_id)
        if quality and _has_table(connection, "profiles"):
            facts.metrics = _metrics(connection, run_id)
    return facts


def _has_table(connection: duckdb.DuckDBPyConnection, name: str) -> bool:
    row = connection.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE schema_name = '_duckherd' AND table_name = ?",
        [name],
    ).fetchone()
    return bool(row and row[0])


def _column(kwargs: dict[str, Any]) -> str | None:
    column = kwargs.get("column") or kwargs.get("column_A")
    if column is None and kwargs.get("column_list"):
        column = ",".join(str(c) for c in kwargs["column_list"])
    return None if column is None else str(column)


def _assertions(
    connection: duckdb.DuckDBPyConnection, run_id: str
) -> dict[str, list[AssertionFact]]:
    rows = connection.execute(
        "SELECT table_name, name, expectation, severity, success, "
        "json_extract(result, '$.expectation_config.kwargs'), "
        "coalesce(json_extract_string(result, '$.meta.observed'), CAST(observed_value AS VARCHAR)) "
        "FROM _duckherd.checks WHERE run_id = ? AND table_name <> '' ORDER BY rowid",
        [run_id],
    ).fetchall()
    found: dict[str, list[AssertionFact]] = {}
    for table, name, expectation, severity, success, kwargs, observed in rows:
        arguments = json.loads(kwargs) if kwargs else {}
        found.setdefault(str(table), []).append(
            AssertionFact(
                name=str(name),
                expectation=str(expectation),
                success=bool(success),
                severity=str(severity),
                column=_column(arguments if isinstance(arguments, dict) else {}),
                actual=None if observed is None else str(observed),
            )
        )
    return found


def _metrics(connection: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, TableMetrics]:
    rows = connection.execute(
        "SELECT table_name, column_name, row_count, profile FROM _duckherd.profiles "
        "WHERE run_id = ? ORDER BY rowid",
        [run_id],
    ).fetchall()
    found: dict[str, TableMetrics] = {}
    for table, column, row_count, profile in rows:
        metrics = found.setdefault(str(table), TableMetrics(int(row_count), {}))
        data = json.loads(profile)
        fraction, distinct = data.get("null_fraction"), data.get("distinct")
        nulls = 0 if not row_count else None if fraction is None else round(fraction * row_count)
        metrics.columns[str(column)] = ColumnMetric(
            null_count=nulls,
            distinct_count=None if distinct is None else int(distinct),
        )
    return found
