"""Great Expectations' own SQL execution engine on DuckDB, repaired.

As shipped, GX's `SqlAlchemyExecutionEngine.execute_query` runs a query inside
`with engine.connect()` and returns the cursor result; the caller fetches rows after the
connection went back to the pool. The pool's reset-on-return rolls the DuckDB connection back,
and a DuckDB cursor *is* its connection, so the pending result is dropped: `fetchall()` returns
`[]` and `resolve_metric_bundle` fails with `IndexError: list index out of range` (surfaced as
`MetricResolutionError`). GX already keeps one persisted connection for sqlite, SQL Server,
BigQuery and Databricks (`_PERSISTED_CONNECTION_DIALECTS`), just not for duckdb. The engine
below does the same for DuckDB: a StaticPool and one connection kept for the engine's life.

The check stage computes its metrics with its own single-scan pushdown
(`duckherd_jobs/check/pushdown.py`); this module is the reference it is validated against
(tests/jobs/test_check_gx_parity.py) and the GX baseline of benchmarks/bench_check.py. It lives
with the tests so that the stage image carries neither SQLAlchemy nor duckdb-engine (both come
with the `dev` extra).
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import great_expectations as gx
import sqlalchemy
from great_expectations.core import ExpectationValidationResult
from great_expectations.data_context.types.base import ProgressBarsConfig
from great_expectations.datasource.fluent.sql_datasource import SQLDatasource
from great_expectations.execution_engine.sqlalchemy_execution_engine import (
    SqlAlchemyExecutionEngine,
)

from duckherd_jobs.check.config import expectation_class
from duckherd_jobs.sql import DEFAULT_SCHEMA


class DuckDBExecutionEngine(SqlAlchemyExecutionEngine):
    """GX's SQL engine with one persisted DuckDB connection (as GX does for sqlite)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("poolclass", sqlalchemy.StaticPool)
        super().__init__(*args, **kwargs)

    @contextmanager
    def get_connection(self) -> Iterator[sqlalchemy.Connection]:
        if self._connection is None or self._connection.closed:
            self._connection = self.engine.connect()
        yield self._connection


class DuckDBDatasource(SQLDatasource):
    """A GX fluent datasource of type `duckdb` that uses the repaired engine."""

    type: Literal["duckdb"] = "duckdb"  # type: ignore[assignment] # GX's own subclasses do so

    @property
    def execution_engine_type(self) -> builtins.type[SqlAlchemyExecutionEngine]:
        return DuckDBExecutionEngine


class GxDuckDB:
    """Validate expectations with GX's own SQL engine against tables of a DuckDB file."""

    def __init__(self, warehouse: Path) -> None:
        self._context = gx.get_context(mode="ephemeral")
        self._context.variables.progress_bars = ProgressBarsConfig(globally=False)
        self._datasource = self._context.data_sources.add_duckdb(
            name="warehouse",
            connection_string=f"duckdb:///{warehouse}",
            kwargs={"connect_args": {"read_only": True}},
        )
        self._batches: dict[str, Any] = {}

    def _batch(self, table: str) -> Any:
        if table not in self._batches:
            schema, _, name = table.rpartition(".")
            asset = self._datasource.add_table_asset(
                name=table, table_name=name, schema_name=schema or DEFAULT_SCHEMA
            )
            self._batches[table] = asset.add_batch_definition_whole_table("all").get_batch()
        return self._batches[table]

    def validate(
        self, table: str, expectation: str, kwargs: Mapping[str, Any]
    ) -> ExpectationValidationResult:
        cls = expectation_class(expectation)
        if cls is None:
            raise ValueError(f"{expectation} is not a Great Expectations core expectation")
        result: ExpectationValidationResult = self._batch(table).validate(cls(**kwargs))
        return result

    def close(self) -> None:
        # Both the datasource (connection test) and its execution engine hold an engine; a
        # DuckDB file stays locked until every connection to it is closed.
        execution_engine = self._datasource.get_execution_engine()
        execution_engine.close()
        execution_engine.engine.dispose()
        self._datasource.get_engine().dispose()


@contextmanager
def gx_duckdb(warehouse: Path) -> Iterator[GxDuckDB]:
    """GX's SQL path on a DuckDB file, opened read-only and closed (lock released) on exit."""
    validator = GxDuckDB(warehouse)
    try:
        yield validator
    finally:
        validator.close()
