"""Business rules beyond the basic map and aggregate expectations, in the same single scan.

Each contributes aggregates to the table's one SELECT (`median`, `stddev_samp`,
`quantile_disc`, `count(DISTINCT ...)`, FILTER counts); only a failed check runs a bounded
follow-up query for its sample. Results follow GX's `_validate` of each expectation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from duckherd_jobs.check.pushdown import (
    NO_VALUES,
    PARTIAL_UNEXPECTED_COUNT,
    ROW_COUNT,
    Aggregate,
    Evaluator,
    Outcome,
    Predicate,
    RowMap,
    Situation,
    TableProbe,
    in_between,
)


def _placeholders(values: Sequence[Any]) -> str:
    return ", ".join("?" for _ in values)


class DistinctValuesInSet(Evaluator):
    """`expect_column_distinct_values_to_be_in_set`: every distinct non-null value is listed."""

    def __init__(self, column: str, value_set: Sequence[Any]) -> None:
        self.column = column
        values = list(value_set)
        outside = f"{column} NOT IN ({_placeholders(values)})" if values else "TRUE"
        self.outside = Predicate(f"{column} IS NOT NULL AND {outside}", tuple(values))
        self.unexpected = Aggregate(
            f"count(DISTINCT {column}) FILTER (WHERE {self.outside.sql})", self.outside.params
        )

    def aggregates(self) -> list[Aggregate]:
        return [ROW_COUNT, self.unexpected]

    def evaluate(
        self, values: Mapping[Aggregate, Any], probe: TableProbe, situation: Situation
    ) -> Outcome:
        unexpected = int(values[self.unexpected])
        sample: list[Any] = []
        if unexpected:
            rows = probe.rows(
                f"SELECT DISTINCT {self.column} FROM {probe.relation} WHERE {self.outside.sql} "
                f"ORDER BY 1 LIMIT {PARTIAL_UNEXPECTED_COUNT}",
                self.outside.params,
            )
            sample = [row[0] for row in rows]
        result = {
            "observed_value": None,
            "unexpected_count": unexpected,
            "partial_unexpected_list": sample,
        }
        return Outcome(unexpected == 0, result, f"{unexpected} distinct value(s) not in the set")


class DistinctValuesContainSet(Evaluator):
    """`expect_column_distinct_values_to_contain_set`: every listed value occurs."""

    def __init__(self, column: str, value_set: Sequence[Any]) -> None:
        self.value_set = list(dict.fromkeys(value_set))
        inside = f"{column} IN ({_placeholders(self.value_set)})" if self.value_set else "FALSE"
        # At most len(value_set) values: bounded by the spec, not by the data.
        self.present = Aggregate(
            f"list(DISTINCT {column}) FILTER (WHERE {inside})", tuple(self.value_set)
        )

    def aggregates(self) -> list[Aggregate]:
        return [ROW_COUNT, self.present]

    def evaluate(
        self, values: Mapping[Aggregate, Any], probe: TableProbe, situation: Situation
    ) -> Outcome:
        present = set(values[self.present] or [])
        missing = [value for value in self.value_set if value not in present]
        result = {
            "observed_value": None,
            "missing_count": len(missing),
            "partial_missing_list": missing[:PARTIAL_UNEXPECTED_COUNT],
        }
        return Outcome(not missing, result, f"{len(missing)} listed value(s) absent")


class QuantileValues(Evaluator):
    """`expect_column_quantile_values_to_be_between`: GX's SQL engine asks for
    `percentile_disc`, i.e. DuckDB's `quantile_disc`; `None` bounds are open."""

    def __init__(self, column: str, quantiles: Sequence[float], ranges: Sequence[Any]) -> None:
        self.quantiles = [float(q) for q in quantiles]
        self.ranges = [(low, high) for low, high in ranges]
        # DuckDB wants constant quantiles (no parameter); they are floats GX validated.
        listed = ", ".join(repr(q) for q in self.quantiles)
        self.values = Aggregate(f"quantile_disc({column}, [{listed}])")

    def aggregates(self) -> list[Aggregate]:
        return [ROW_COUNT, self.values]

    def evaluate(
        self, values: Mapping[Aggregate, Any], probe: TableProbe, situation: Situation
    ) -> Outcome:
        observed = values[self.values]
        if observed is None:
            return NO_VALUES
        observed = list(observed)
        details = [
            in_between(value, low, high, False, False)
            for value, (low, high) in zip(observed, self.ranges, strict=True)
        ]
        result = {
            "observed_value": {"quantiles": self.quantiles, "values": observed},
            "details": {"success_details": details},
        }
        text = ", ".join(f"q{q:g}={v}" for q, v in zip(self.quantiles, observed, strict=True))
        return Outcome(all(details), result, text)


class ProportionOfUnique(Evaluator):
    """`expect_column_proportion_of_unique_values_to_be_between`: distinct / non-null."""

    def __init__(self, column: str, kwargs: Mapping[str, Any]) -> None:
        self.distinct = Aggregate(f"count(DISTINCT {column})")
        self.nonnull = Aggregate(f"count({column})")
        self.bounds = (
            kwargs.get("min_value"),
            kwargs.get("max_value"),
            bool(kwargs.get("strict_min")),
            bool(kwargs.get("strict_max")),
        )

    def aggregates(self) -> list[Aggregate]:
        return [ROW_COUNT, self.distinct, self.nonnull]

    def evaluate(
        self, values: Mapping[Aggregate, Any], probe: TableProbe, situation: Situation
    ) -> Outcome:
        nonnull = int(values[self.nonnull])
        if nonnull == 0:
            return NO_VALUES
        observed = int(values[self.distinct]) / nonnull
        success = in_between(observed, *self.bounds)
        return Outcome(success, {"observed_value": observed}, f"{observed:.4g}")


class ColumnPairGreater(RowMap):
    """`expect_column_pair_values_a_to_be_greater_than_b`, GX's SQL condition included: a pair
    with a NULL compares as unknown, which is neither expected nor unexpected."""

    _IGNORED = {
        "both_values_are_missing": "{a} IS NULL AND {b} IS NULL",
        "either_value_is_missing": "{a} IS NULL OR {b} IS NULL",
        "neither": "FALSE",
    }

    def __init__(
        self, column_a: str, column_b: str, or_equal: bool, ignore_row_if: str, mostly: float
    ) -> None:
        ignored = self._IGNORED[ignore_row_if].format(a=column_a, b=column_b)
        if or_equal:
            expected = f"{column_a} >= {column_b} OR ({column_a} IS NULL AND {column_b} IS NULL)"
        else:
            expected = f"{column_a} > {column_b}"
        super().__init__(
            [column_a, column_b],
            Aggregate(f"count(*) FILTER (WHERE NOT ({ignored}))"),
            Predicate(f"NOT ({ignored}) AND NOT ({expected})"),
            mostly,
        )
