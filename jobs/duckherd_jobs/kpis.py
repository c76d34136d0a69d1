"""Business KPIs (`spec.metrics[]`): DuckDB's verdict on each expression, one read-only query
per table, and the history in `_duckherd.kpis` (docs/kpis.md).

The API models already refused what is not one expression (`duckherd.kpis`, without DuckDB).
Here DuckDB's own parser (`json_serialize_sql`) gives each expression's syntax tree, which must
be an aggregate over the table: every column inside an aggregate function, only functions
DuckDB knows and that have no side effects, no subquery, window or parameter. The query that
runs is generated from those trees (`json_deserialize_sql`), not pasted from the spec, and
runs on a connection opened read-only without external access: an expression that slipped
through still could not write to the warehouse or read outside it.

Kept free of Great Expectations: `duckherd run` validates KPIs before its first stage.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from duckherd.api import Metric
from duckherd.errors import PipelineError
from duckherd.summary import KpiResult
from duckherd_jobs.sql import qualified, table_name
from duckherd_jobs.warehouse import catalog_columns, open_with_retry

SANDBOX: dict[str, str | bool] = {
    "enable_external_access": False,  # no files, URLs, ATTACH, COPY or extension installs
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "lock_configuration": True,  # and no SET to undo the above
}
"""The configuration of every connection that parses or computes a KPI."""

# Scalar functions that change state or read the environment: refused although DuckDB knows
# them (the read-only connection would refuse the writes anyway).
SIDE_EFFECT_FUNCTIONS = frozenset(
    {
        "nextval",
        "currval",
        "setval",
        "setseed",
        "random",
        "write_log",
        "sleep_ms",
        "pg_sleep",
        "current_setting",
        "current_query",
        "txid_current",
        "stats",
        "error",
    }
)
_NUMERIC_TYPES = frozenset(
    {"BOOLEAN", "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT"}
    | {"UINTEGER", "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE", "NULL"}
)
_EXAMPLE = "use an aggregate such as count(*), sum(column) or avg(column)"


class KpiConfigError(PipelineError, ValueError):
    """A KPI expression DuckDB's parser says is not a read-only aggregate."""


@dataclass(frozen=True)
class PlannedKpi:
    position: int
    metric: Metric
    table: str  # schema.table, the default schema applied
    tree: dict[str, Any]  # the validated expression's syntax tree (json_serialize_sql)

    @property
    def field(self) -> str:
        return f"spec.metrics[{self.position}]"


@dataclass(frozen=True)
class _Functions:
    aggregates: frozenset[str]
    scalars: frozenset[str]
    tables: frozenset[str]


# --------------------------------------------------------------------------- validation


def _functions(connection: duckdb.DuckDBPyConnection) -> _Functions:
    rows = connection.execute(
        "SELECT DISTINCT lower(function_name), function_type FROM duckdb_functions()"
    ).fetchall()
    by_type: dict[str, set[str]] = defaultdict(set)
    for name, kind in rows:
        by_type[str(kind)].add(str(name))
    return _Functions(
        aggregates=frozenset(by_type["aggregate"]),
        scalars=frozenset(by_type["scalar"] | by_type["macro"]),
        tables=frozenset(by_type["table"] | by_type["table_macro"] | by_type["pragma"]),
    )


def _syntax_tree(connection: duckdb.DuckDBPyConnection, sql: str) -> dict[str, Any]:
    text = connection.execute("SELECT json_serialize_sql(?)", [sql]).fetchall()[0][0]
    tree: dict[str, Any] = json.loads(text)
    return tree


def _select_item(tree: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """The one expression of `SELECT <expression>`, or why the text is more than that."""
    if tree.get("error"):
        return None, f"not valid SQL: {tree.get('error_message', 'syntax error')}"
    statements = tree.get("statements") or []
    node = statements[0].get("node", {}) if len(statements) == 1 else {}
    others = (
        node.get("from_table", {}).get("type") != "EMPTY",
        node.get("where_clause") is not None,
        bool(node.get("group_expressions")),
        node.get("having") is not None,
        node.get("qualify") is not None,
        bool(node.get("modifiers")),
        bool(node.get("cte_map", {}).get("map")),
        node.get("sample") is not None,
    )
    items = node.get("select_list") or []
    if node.get("type") != "SELECT_NODE" or len(items) != 1 or any(others):
        return None, "must be one expression (no query clauses, lists or statements)"
    if items[0].get("alias"):
        return None, "an alias is not allowed: the KPI's name names the value"
    return items[0], None


class _Judge:
    """Walks an expression's syntax tree: aggregates around every column, known functions."""

    def __init__(self, functions: _Functions) -> None:
        self.functions = functions
        self.aggregates = 0

    def problem(self, node: Any, in_aggregate: bool = False) -> str | None:
        if isinstance(node, list):
            return next((p for item in node if (p := self.problem(item, in_aggregate))), None)
        if not isinstance(node, dict):
            return None
        kind = node.get("class")
        if kind == "SUBQUERY":
            return "subqueries are not allowed: " + _EXAMPLE
        if kind == "WINDOW":
            return "window functions are not allowed: " + _EXAMPLE
        if kind == "PARAMETER":
            return "parameters are not allowed"
        if kind == "STAR":
            return "`*` is only allowed as count(*)"
        if kind == "COLUMN_REF":
            return self._column(node, in_aggregate)
        if kind == "FUNCTION":
            problem, in_aggregate = self._function(node, in_aggregate)
            if problem:
                return problem
        return next(
            (p for value in node.values() if (p := self.problem(value, in_aggregate))), None
        )

    @staticmethod
    def _column(node: dict[str, Any], in_aggregate: bool) -> str | None:
        names = [str(name) for name in node.get("column_names", [])]
        if len(names) != 1:
            return f"qualified column names are not allowed ({'.'.join(names)}): name the column"
        if not in_aggregate:
            return f"column {names[0]} must be inside an aggregate, e.g. avg({names[0]})"
        return None

    def _function(self, node: dict[str, Any], in_aggregate: bool) -> tuple[str | None, bool]:
        name = str(node.get("function_name", "")).lower()
        if node.get("is_operator"):
            return None, in_aggregate
        if node.get("schema") or node.get("catalog"):
            return f"qualified function names are not allowed ({name})", in_aggregate
        if name in self.functions.aggregates:
            if in_aggregate:
                return f"aggregate {name} inside another aggregate is not allowed", True
            self.aggregates += 1
            return None, True
        if name in SIDE_EFFECT_FUNCTIONS or name.startswith("__internal"):
            return f"function {name} is not allowed: it changes state or reads the environment", (
                in_aggregate
            )
        if name in self.functions.scalars:
            return None, in_aggregate
        if name in self.functions.tables:
            return f"table function {name} is not allowed: {_EXAMPLE}", in_aggregate
        return f"unknown function {name}", in_aggregate


def expression_tree(connection: duckdb.DuckDBPyConnection, expression: str) -> dict[str, Any]:
    """The syntax tree of a read-only aggregate; KpiConfigError (without the field) otherwise."""
    sql = f"SELECT {expression}"
    try:
        statements = connection.extract_statements(sql)
    except duckdb.Error as error:
        raise KpiConfigError(f"not valid SQL: {_first_line(error)}") from None
    if len(statements) != 1:
        raise KpiConfigError(f"one expression only: it holds {len(statements)} statements")
    item, problem = _select_item(_syntax_tree(connection, sql))
    if item is None:
        raise KpiConfigError(problem)
    judge = _Judge(_functions(connection))
    problem = judge.problem(item)
    if problem is None and not judge.aggregates:
        problem = f"must aggregate the table: {_EXAMPLE}"
    if problem is not None:
        raise KpiConfigError(problem)
    return item


def _first_line(error: duckdb.Error) -> str:
    return str(error).splitlines()[0]


@contextmanager
def _sandbox() -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect(":memory:", config=dict(SANDBOX))
    try:
        yield connection
    finally:
        connection.close()


def plan_kpis(metrics: Sequence[Metric]) -> list[PlannedKpi]:
    """Every KPI validated by DuckDB's parser; the first refusal names its field."""
    if not metrics:
        return []
    planned = []
    with _sandbox() as connection:
        for position, metric in enumerate(metrics):
            try:
                tree = expression_tree(connection, metric.expression)
            except KpiConfigError as error:
                raise KpiConfigError(f"spec.metrics[{position}].expression: {error}") from None
            planned.append(PlannedKpi(position, metric, table_name(metric.table), tree))
    return planned


# --------------------------------------------------------------------------- computation


@contextmanager
def read_only_warehouse(
    path: Path, *, timeout_seconds: float = 600.0
) -> Iterator[duckdb.DuckDBPyConnection]:
    """The connection KPIs run on: read-only, no external access, configuration locked."""
    connection = open_with_retry(
        path, timeout_seconds=timeout_seconds, read_only=True, config=SANDBOX
    )
    try:
        yield connection
    finally:
        connection.close()


def table_query(connection: duckdb.DuckDBPyConnection, table: str, trees: Sequence[Any]) -> str:
    """`SELECT <kpi 0> AS "k0", ... FROM <table>`, generated from the validated trees."""
    tree = _syntax_tree(connection, f"SELECT 1 FROM {qualified(table)}")
    items = [{**item, "alias": f"k{index}"} for index, item in enumerate(trees)]
    tree["statements"][0]["node"]["select_list"] = items
    sql = connection.execute("SELECT json_deserialize_sql(?)", [json.dumps(tree)]).fetchall()
    return str(sql[0][0])


def _number(value: Any, type_name: str) -> tuple[float | None, str | None]:
    base = type_name.partition("(")[0].upper()
    if base != "DECIMAL" and base not in _NUMERIC_TYPES:
        return None, f"the value is {type_name}, not a number: {_EXAMPLE}"
    if value is None:
        return None, None
    return float(value), None


def _select(
    connection: duckdb.DuckDBPyConnection, table: str, kpis: Sequence[PlannedKpi]
) -> list[KpiResult]:
    relation = connection.sql(table_query(connection, table, [k.tree for k in kpis]))
    types = [str(t) for t in relation.types]
    row = relation.fetchall()[0]
    results = []
    for kpi, value, type_name in zip(kpis, row, types, strict=True):
        number, problem = _number(value, type_name)
        error = f"{kpi.field} {kpi.metric.name}: {problem}" if problem else None
        results.append(KpiResult(name=kpi.metric.name, table=table, value=number, error=error))
    return results


def _failed(kpi: PlannedKpi, table: str, cause: str) -> KpiResult:
    error = f"{kpi.field} {kpi.metric.name}: {cause}"
    return KpiResult(name=kpi.metric.name, table=table, error=error)


def compute_table(
    connection: duckdb.DuckDBPyConnection, table: str, kpis: Sequence[PlannedKpi]
) -> list[KpiResult]:
    """All KPIs of one table from one query; when DuckDB refuses it, each KPI on its own, so
    the good ones still get a value and the bad one its own error."""
    if not catalog_columns(connection, table):
        return [_failed(kpi, table, f"table {table} does not exist") for kpi in kpis]
    try:
        return _select(connection, table, kpis)
    except duckdb.Error:
        pass  # find which KPI DuckDB refuses
    results = []
    for kpi in kpis:
        try:
            results += _select(connection, table, [kpi])
        except duckdb.Error as error:
            results.append(_failed(kpi, table, _first_line(error)))
    return results


def compute_kpis(
    path: Path, kpis: Sequence[PlannedKpi], *, timeout_seconds: float = 600.0
) -> list[KpiResult]:
    """Every KPI, in spec order, one query per table on a read-only connection."""
    if not kpis:
        return []  # no connection to open
    by_table: dict[str, list[PlannedKpi]] = defaultdict(list)
    for kpi in kpis:
        by_table[kpi.table].append(kpi)
    found: dict[str, KpiResult] = {}
    with read_only_warehouse(path, timeout_seconds=timeout_seconds) as connection:
        for table, members in by_table.items():
            results = compute_table(connection, table, members)
            found.update((result.name, result) for result in results)
    return [found[kpi.metric.name] for kpi in kpis]


def record_kpis(
    connection: duckdb.DuckDBPyConnection,
    run_id: str,
    computed_at: datetime,
    kpis: Sequence[PlannedKpi],
    results: Sequence[KpiResult],
) -> None:
    """One row per KPI into `_duckherd.kpis`: the trend of every KPI is a query away."""
    rows = [
        [run_id, computed_at, r.name, r.table, k.metric.expression, r.value, r.error]
        for k, r in zip(kpis, results, strict=True)
    ]
    if rows:
        connection.executemany("INSERT INTO _duckherd.kpis VALUES (?, ?, ?, ?, ?, ?, ?)", rows)


def kpi_errors(results: Sequence[KpiResult]) -> str | None:
    """The stage's error when KPIs could not be computed (None when all could)."""
    errors = [result.error for result in results if result.error]
    if not errors:
        return None
    return f"{len(errors)} KPI(s) could not be computed: " + "; ".join(errors)
