"""Schema validation: expectations on a table's columns, read from DuckDB's catalog.

They cost no scan: the catalog (`information_schema.columns`) already lists each column's name,
position and DuckDB type. Results follow GX's `_validate` of each expectation field for field
(the parity suite compares them with GX's own SQL engine on the same file).

Type names are DuckDB's (`BIGINT`, `VARCHAR`, `DECIMAL(18,2)`, `TIMESTAMP WITH TIME ZONE`):
GX's SQL engine on DuckDB can only see SQLAlchemy's classes (`BigInteger`, `String`), which
cannot tell DOUBLE from FLOAT or TIMESTAMPTZ from TIMESTAMP. A name without parameters matches
any parameters (`DECIMAL` matches `DECIMAL(18,2)`), as GX matches a type class.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import zip_longest
from typing import Any, get_args

import duckdb

from duckherd.api import SchemaExpectationName
from duckherd_jobs.check.pushdown import (
    ROW_COUNT,
    Aggregate,
    Evaluator,
    Outcome,
    Situation,
    TableProbe,
)

SCHEMA_EXPECTATIONS: frozenset[str] = frozenset(get_args(SchemaExpectationName))
# Expectations whose column may be absent (that is what they check), so it is not resolved.
UNRESOLVED_COLUMNS = SCHEMA_EXPECTATIONS - {
    "expect_column_values_to_be_of_type",
    "expect_column_values_to_be_in_type_list",
}
_TYPE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_ ]{0,60}(\(\s*\d{1,3}\s*(,\s*\d{1,3}\s*)?\))?$")


@dataclass(frozen=True)
class Column:
    name: str
    data_type: str


@functools.cache  # the spec's and the evaluation's calls: one in-memory DuckDB, not one each
def normalize_type(name: str) -> str:
    """DuckDB's canonical spelling of a type name (`int` -> `INTEGER`); ValueError if unknown.

    The name is checked against a strict pattern before DuckDB parses it inside a CAST."""
    if not _TYPE_NAME.fullmatch(name.strip()):
        raise ValueError(f"not a DuckDB type name: {name!r}")
    try:
        with duckdb.connect() as connection:
            row = connection.execute(f"SELECT typeof(CAST(NULL AS {name}))").fetchone()
    except duckdb.Error:
        raise ValueError(f"not a DuckDB type name: {name!r}") from None
    assert row is not None
    return str(row[0])


def _base(type_name: str) -> str:
    return type_name.partition("(")[0].strip().upper()


def type_matches(expected: str, actual: str) -> bool:
    canonical = normalize_type(expected)
    if "(" in expected:
        return canonical.upper() == actual.upper()
    return _base(canonical) == _base(actual)


class SchemaEvaluator(Evaluator):
    """An expectation judged from the catalog alone (the row count is in every scan anyway)."""

    def aggregates(self) -> list[Aggregate]:
        return [ROW_COUNT]

    def evaluate(
        self, values: Mapping[Aggregate, Any], probe: TableProbe, situation: Situation
    ) -> Outcome:
        return self.judge([Column(name, data_type) for name, data_type in probe.columns])

    def judge(self, columns: list[Column]) -> Outcome:
        raise NotImplementedError


class ColumnToExist(SchemaEvaluator):
    def __init__(self, column: str, column_index: int | None) -> None:
        self.column, self.column_index = column, column_index

    def judge(self, columns: list[Column]) -> Outcome:
        names = [c.name for c in columns]
        if self.column_index:  # GX: index 0 reads as "no index"
            success = 0 <= self.column_index < len(names) and (
                names[self.column_index] == self.column
            )
            where = f" at position {self.column_index}"
        else:
            success, where = self.column in names, ""
        return Outcome(success, {}, f"{self.column}{where}: {'present' if success else 'absent'}")


def _fold(name: str) -> str:
    return name.casefold()


class ColumnsMatchSet(SchemaEvaluator):
    """GX's SQL semantics: unquoted names match case-insensitively, `"Quoted"` ones exactly."""

    def __init__(self, column_set: Sequence[str] | None, exact_match: bool) -> None:
        self.column_set = None if column_set is None else set(column_set)
        self.exact_match = exact_match

    def judge(self, columns: list[Column]) -> Outcome:
        actual = {c.name for c in columns}
        observed = sorted(actual)
        if self.column_set is None:
            return Outcome(not self.exact_match, {"observed_value": observed}, "no column set")
        unmatched_actual = set(actual)
        unmatched_expected = set(self.column_set)
        for name in actual:
            if f'"{name}"' in unmatched_expected:
                unmatched_expected.discard(f'"{name}"')
                unmatched_actual.discard(name)
        for expected in sorted(unmatched_expected):
            if expected.startswith('"') and expected.endswith('"'):
                continue
            found = [a for a in unmatched_actual if _fold(a) == _fold(expected)]
            if found:
                unmatched_expected.discard(expected)
                unmatched_actual.difference_update(found)
        unexpected, missing = sorted(unmatched_actual), sorted(unmatched_expected)
        if not unexpected and not missing:
            return Outcome(True, {"observed_value": observed}, f"{len(observed)} columns")
        mismatched: dict[str, list[str]] = {}
        if unexpected:
            mismatched["unexpected"] = unexpected
        if missing:
            mismatched["missing"] = missing
        success = not self.exact_match and not missing
        result = {"observed_value": observed, "details": {"mismatched": mismatched}}
        text = f"missing {missing}, unexpected {unexpected}"
        return Outcome(success, result, text)


class ColumnsMatchOrderedList(SchemaEvaluator):
    def __init__(self, column_list: Sequence[str] | None) -> None:
        self.column_list = None if column_list is None else list(column_list)

    def judge(self, columns: list[Column]) -> Outcome:
        actual = [c.name for c in columns]
        if self.column_list is None or actual == self.column_list:
            return Outcome(True, {"observed_value": actual}, f"{len(actual)} columns in order")
        mismatched = [
            {"Expected Column Position": position, "Expected": expected, "Found": found}
            for position, (expected, found) in enumerate(zip_longest(self.column_list, actual))
            if expected != found
        ]
        first = mismatched[0]
        text = (
            f"{len(mismatched)} position(s) differ, first {first['Expected Column Position']}: "
            f"expected {first['Expected']}, found {first['Found']}"
        )
        result = {"observed_value": actual, "details": {"mismatched": mismatched}}
        return Outcome(False, result, text)


class ColumnCountEqual(SchemaEvaluator):
    def __init__(self, value: int) -> None:
        self.value = value

    def judge(self, columns: list[Column]) -> Outcome:
        count = len(columns)
        return Outcome(count == self.value, {"observed_value": count}, f"{count} columns")


class ColumnType(SchemaEvaluator):
    """`expect_column_values_to_be_of_type` / `_in_type_list` with DuckDB type names."""

    def __init__(self, column: str, type_list: Sequence[str] | None) -> None:
        self.column = column
        self.type_list = None if type_list is None else list(type_list)

    def judge(self, columns: list[Column]) -> Outcome:
        actual = next(c.data_type for c in columns if c.name == self.column)
        success = self.type_list is None or any(type_matches(t, actual) for t in self.type_list)
        return Outcome(success, {"observed_value": actual}, actual)


def build_schema_evaluator(
    expectation: str, kwargs: Mapping[str, Any], columns: Mapping[str, str]
) -> Evaluator:
    """`columns` maps the spec's column names to the table's own (type checks only)."""
    if expectation == "expect_column_to_exist":
        index = kwargs.get("column_index")
        return ColumnToExist(str(kwargs["column"]), None if index is None else int(index))
    if expectation == "expect_table_columns_to_match_set":
        exact = kwargs.get("exact_match")
        return ColumnsMatchSet(kwargs.get("column_set"), exact is None or bool(exact))
    if expectation == "expect_table_columns_to_match_ordered_list":
        return ColumnsMatchOrderedList(kwargs.get("column_list"))
    if expectation == "expect_table_column_count_to_equal":
        return ColumnCountEqual(int(kwargs["value"]))
    column = columns[str(kwargs["column"])]
    if expectation == "expect_column_values_to_be_of_type":
        return ColumnType(column, [str(kwargs["type_"])])
    return ColumnType(column, kwargs.get("type_list"))
