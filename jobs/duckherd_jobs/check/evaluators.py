"""Which evaluator computes which expectation: the one dispatch of the check stage."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from duckherd_jobs.check.drift import (
    DRIFT,
    DRIFT_EXPECTATIONS,
    ColumnProfile,
    Drift,
    KlDivergence,
)
from duckherd_jobs.check.pushdown import (
    ROW_COUNT,
    Aggregate,
    AggregateBetween,
    ColumnValues,
    Evaluator,
    MaxRecent,
    NotNull,
    Predicate,
    RowCountChange,
    Unique,
    between_predicate,
)
from duckherd_jobs.check.referential import (
    EXIST_IN_TABLE,
    ExistInTable,
    RelatedKey,
    key_columns,
)
from duckherd_jobs.check.rules import (
    ColumnPairGreater,
    DistinctValuesContainSet,
    DistinctValuesInSet,
    ProportionOfUnique,
    QuantileValues,
)
from duckherd_jobs.check.schema import SCHEMA_EXPECTATIONS, build_schema_evaluator
from duckherd_jobs.sql import quote_identifier

# Aggregate expectations: the DuckDB aggregate whose value must lie between the bounds.
_AGGREGATES = {
    "expect_column_min_to_be_between": "min",
    "expect_column_max_to_be_between": "max",
    "expect_column_mean_to_be_between": "avg",
    "expect_column_sum_to_be_between": "sum",
    # GX averages the two middle values exactly; DuckDB's median of a DECIMAL keeps its scale.
    "expect_column_median_to_be_between": "median",
    "expect_column_stdev_to_be_between": "stddev_samp",
}


def _set_predicate(column: str, value_set: Sequence[Any], *, inside: bool) -> Predicate:
    """Rows whose value is (inside) or is not (not inside) in the set: the unexpected ones."""
    if not value_set:
        return Predicate("FALSE" if inside else "TRUE")
    placeholders = ", ".join("?" for _ in value_set)
    operator = "IN" if inside else "NOT IN"
    return Predicate(f"{column} {operator} ({placeholders})", tuple(value_set))


def _between(value: str, kwargs: Mapping[str, Any]) -> Predicate:
    return between_predicate(
        value,
        kwargs.get("min_value"),
        kwargs.get("max_value"),
        bool(kwargs.get("strict_min")),
        bool(kwargs.get("strict_max")),
    )


# Column map expectations: the predicate selecting a column's unexpected non-null values.
_COLUMN_MAPS: dict[str, Callable[[str, Mapping[str, Any]], Predicate]] = {
    "expect_column_values_to_be_between": lambda c, kw: _between(c, kw),
    "expect_column_value_lengths_to_be_between": lambda c, kw: _between(f"length({c})", kw),
    "expect_column_values_to_be_in_set": lambda c, kw: _set_predicate(
        c, kw["value_set"], inside=False
    ),
    "expect_column_values_to_not_be_in_set": lambda c, kw: _set_predicate(
        c, kw["value_set"], inside=True
    ),
    "expect_column_values_to_match_regex": lambda c, kw: Predicate(
        f"NOT regexp_matches({c}, ?)", (kw["regex"],)
    ),
    "expect_column_values_to_not_match_regex": lambda c, kw: Predicate(
        f"regexp_matches({c}, ?)", (kw["regex"],)
    ),
}


def referenced_columns(expectation: str, kwargs: Mapping[str, Any]) -> list[str]:
    """The spec's column names a check reads (each must exist in the table)."""
    if expectation in SCHEMA_EXPECTATIONS:
        return [str(kwargs["column"])] if "type" in expectation else []
    if expectation == "expect_column_pair_values_a_to_be_greater_than_b":
        return [str(kwargs["column_A"]), str(kwargs["column_B"])]
    if "column_list" in kwargs:
        return [str(name) for name in kwargs["column_list"]]
    return [str(kwargs["column"])] if "column" in kwargs else []


def build_evaluator(
    expectation: str,
    kwargs: Mapping[str, Any],
    columns: Mapping[str, str],
    resolved: RelatedKey | ColumnProfile | None = None,
) -> Evaluator:
    """The evaluator of one expectation; `columns` maps spec names to the table's own names,
    `resolved` is what the stage looked up for it: a referential check's parent key, a drift
    check's column profile."""

    def col(name: str) -> str:
        return quote_identifier(columns[name])

    if expectation in SCHEMA_EXPECTATIONS:
        return build_schema_evaluator(expectation, kwargs, columns)
    mostly = float(kwargs.get("mostly", 1.0))
    if expectation in _COLUMN_MAPS:
        column = col(kwargs["column"])
        return ColumnValues(column, _COLUMN_MAPS[expectation](column, kwargs), mostly)
    if expectation in _AGGREGATES:
        column = col(kwargs["column"])
        if expectation == "expect_column_median_to_be_between":
            column = f"CAST({column} AS DOUBLE)"
        aggregate = Aggregate(f"{_AGGREGATES[expectation]}({column})")
        return AggregateBetween(aggregate, kwargs)
    if expectation == "expect_column_values_to_not_be_null":
        return NotNull(col(kwargs["column"]), mostly)
    if expectation == "expect_column_values_to_be_unique":
        return Unique([col(kwargs["column"])], [kwargs["column"]], mostly)
    if expectation == "expect_compound_columns_to_be_unique":
        names = list(kwargs["column_list"])
        return Unique([col(name) for name in names], names, mostly)
    if expectation == "expect_table_row_count_to_be_between":
        return AggregateBetween(ROW_COUNT, kwargs)
    if expectation == EXIST_IN_TABLE:
        assert isinstance(resolved, RelatedKey), "a referential check needs its parent resolved"
        names = key_columns(kwargs)[0]
        return ExistInTable([col(name) for name in names], names, resolved, mostly)
    if expectation in DRIFT_EXPECTATIONS:
        assert isinstance(resolved, ColumnProfile), "a drift check needs its column's profile"
        return Drift(resolved, kwargs) if expectation == DRIFT else KlDivergence(resolved, kwargs)
    return _build_other(expectation, kwargs, col, mostly)


def _build_other(
    expectation: str, kwargs: Mapping[str, Any], col: Callable[[str], str], mostly: float
) -> Evaluator:
    if expectation == "expect_column_distinct_values_to_be_in_set":
        return DistinctValuesInSet(col(kwargs["column"]), kwargs["value_set"])
    if expectation == "expect_column_distinct_values_to_contain_set":
        return DistinctValuesContainSet(col(kwargs["column"]), kwargs["value_set"])
    if expectation == "expect_column_quantile_values_to_be_between":
        ranges = kwargs["quantile_ranges"]
        return QuantileValues(col(kwargs["column"]), ranges["quantiles"], ranges["value_ranges"])
    if expectation == "expect_column_proportion_of_unique_values_to_be_between":
        return ProportionOfUnique(col(kwargs["column"]), kwargs)
    if expectation == "expect_column_pair_values_a_to_be_greater_than_b":
        return ColumnPairGreater(
            col(kwargs["column_A"]),
            col(kwargs["column_B"]),
            bool(kwargs.get("or_equal")),
            str(kwargs.get("ignore_row_if") or "both_values_are_missing"),
            mostly,
        )
    if expectation == "expect_table_row_count_change_to_be_within":
        return RowCountChange(float(kwargs["max_change_pct"]))
    if expectation == "expect_column_max_to_be_recent":
        return MaxRecent(col(kwargs["column"]), str(kwargs["max_age"]))
    raise ValueError(f"{expectation} has no DuckDB pushdown")
