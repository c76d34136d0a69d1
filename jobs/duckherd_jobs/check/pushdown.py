"""Expectations computed inside DuckDB, one scan per table, results in GX's format.

Every expectation on a table contributes aggregates (`count(*)`, `count(col)`,
`count(*) FILTER (WHERE <unexpected>)`, `min`, `avg`, `max`, ...) to ONE
`SELECT ... FROM table`; identical aggregates are computed once. Uniqueness runs its own
`GROUP BY ... HAVING count(*) > 1` (see `Unique` for the measurement behind that). Only a
check that fails pays for more: a bounded follow-up query for its sample of unexpected values
(GX's `partial_unexpected_list`).

The result dictionaries follow GX's `_format_map_output` (SUMMARY format) and
`_validate_metric_value_between` field for field; the tests compare them with GX's own
evaluation of the same data.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import duckdb

from duckherd.api import parse_duration

PARTIAL_UNEXPECTED_COUNT = 20  # GX's default for the SUMMARY result format


@dataclass(frozen=True)
class Aggregate:
    """One aggregate expression over a table, with its bound parameters."""

    sql: str
    params: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Predicate:
    """A row condition (SQL with `?` placeholders) selecting unexpected rows."""

    sql: str
    params: tuple[Any, ...] = ()


ROW_COUNT = Aggregate("count(*)")


@dataclass(frozen=True)
class Outcome:
    """A check's verdict: GX's `result` dictionary and a short text for the summary."""

    success: bool
    result: dict[str, Any]
    observed: str


# An aggregate over no (non-null) values: GX reports observed_value None and fails.
NO_VALUES = Outcome(False, {"observed_value": None}, "no values")


@dataclass(frozen=True)
class Situation:
    """What an evaluation needs besides the scan: the time, the previous run's row count and the
    drift baseline (column -> earlier profiles, newest first; see `drift.py`)."""

    now: datetime
    previous_row_count: int | None
    run_id: str = ""
    baseline: Mapping[str, Sequence[Any]] = field(default_factory=dict)


class TableProbe:
    """Queries beyond the shared scan: uniqueness's GROUP BY, and samples for failed checks."""

    def __init__(
        self,
        connection: duckdb.DuckDBPyConnection,
        relation: str,
        columns: Sequence[tuple[str, str]] = (),
    ) -> None:
        self._connection = connection
        self.relation = relation
        self.columns = list(columns)  # (name, DuckDB type) in table order, from the catalog

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """A follow-up query (bounded by its author: a LIMIT, an aggregate)."""
        return [tuple(row) for row in self._connection.execute(sql, list(params)).fetchall()]

    def sample(self, columns: Sequence[str], where: Predicate) -> list[tuple[Any, ...]]:
        select = ", ".join(columns)
        rows = self._connection.execute(
            f"SELECT {select} FROM {self.relation} AS t WHERE {where.sql} "
            f"LIMIT {PARTIAL_UNEXPECTED_COUNT}",
            list(where.params),
        ).fetchall()
        return [tuple(row) for row in rows]

    def duplicates(self, columns: Sequence[str], candidates: Predicate) -> tuple[int, Predicate]:
        """How many `candidates` rows share their value (combination) with another, and a
        predicate selecting them."""
        keys = ", ".join(columns)
        groups = (
            f"SELECT {keys} FROM {self.relation} WHERE {candidates.sql} "
            f"GROUP BY ALL HAVING count(*) > 1"
        )
        row = self._connection.execute(
            f"SELECT coalesce(sum(n), 0) FROM (SELECT count(*) AS n FROM {self.relation} "
            f"WHERE {candidates.sql} GROUP BY {keys} HAVING count(*) > 1)",
            list(candidates.params),
        ).fetchone()
        count = int(row[0]) if row else 0
        # `t` is the sampled relation (see `sample`); unqualified names would bind to `d`.
        matches = " AND ".join(f"t.{c} = d.{c}" for c in columns)
        predicate = Predicate(
            f"({candidates.sql}) AND EXISTS (SELECT 1 FROM ({groups}) AS d WHERE {matches})",
            candidates.params + candidates.params,
        )
        return count, predicate


class Evaluator(ABC):
    """An expectation bound to a table's columns: what to aggregate, how to judge."""

    @abstractmethod
    def aggregates(self) -> list[Aggregate]: ...

    @abstractmethod
    def evaluate(
        self, values: Mapping[Aggregate, Any], probe: TableProbe, situation: Situation
    ) -> Outcome: ...


def _percent(part: int, whole: int | None) -> float | None:
    return part / whole * 100 if whole else None


def _counts(values: list[Any]) -> list[dict[str, Any]]:
    try:
        common = Counter(values).most_common(PARTIAL_UNEXPECTED_COUNT)
        return [
            {"value": value, "count": count}
            for value, count in sorted(common, key=lambda item: (-item[1], item[0]))
        ]
    except TypeError:  # unorderable or unhashable values: GX reports the same marker
        return [{"error": "partial_exception_counts requires a hashable type"}]


def _hashable(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(value.values())
    return tuple(value) if isinstance(value, list) else value


def map_result(
    *,
    element_count: int,
    nonnull_count: int | None,
    unexpected_count: int,
    unexpected_list: list[Any],
) -> dict[str, Any]:
    """GX's `_format_map_output` in the SUMMARY format."""
    missing_count = None if nonnull_count is None else element_count - nonnull_count
    total = _percent(unexpected_count, element_count)
    if nonnull_count is None:
        nonmissing = total
    else:
        nonmissing = _percent(unexpected_count, nonnull_count) if element_count else None
    result: dict[str, Any] = {
        "element_count": element_count,
        "unexpected_count": unexpected_count,
        "unexpected_percent": nonmissing,
        "partial_unexpected_list": unexpected_list[:PARTIAL_UNEXPECTED_COUNT],
    }
    if missing_count is not None:
        result["missing_count"] = missing_count
        result["missing_percent"] = _percent(missing_count, element_count)
        result["unexpected_percent_total"] = total
        result["unexpected_percent_nonmissing"] = nonmissing
    hashable = [_hashable(v) for v in unexpected_list]
    result["partial_unexpected_counts"] = _counts(hashable)
    return result


def mostly_met(considered: int, unexpected: int, mostly: float) -> bool:
    if considered == 0:
        return True  # GX: vacuously true
    return (considered - unexpected) / considered >= mostly


def map_observed(unexpected: int, considered: int) -> str:
    share = f" ({unexpected / considered * 100:.3g}%)" if considered else ""
    return f"{unexpected} unexpected of {considered}{share}"


class NotNull(Evaluator):
    def __init__(self, column: str, mostly: float) -> None:
        self.nonnull = Aggregate(f"count({column})")
        self.mostly = mostly

    def aggregates(self) -> list[Aggregate]:
        return [ROW_COUNT, self.nonnull]

    def evaluate(
        self, values: Mapping[Aggregate, Any], probe: TableProbe, situation: Situation
    ) -> Outcome:
        rows, nonnull = int(values[ROW_COUNT]), int(values[self.nonnull])
        unexpected = rows - nonnull
        result = map_result(
            element_count=rows,
            nonnull_count=None,
            unexpected_count=unexpected,
            unexpected_list=[None] * min(unexpected, PARTIAL_UNEXPECTED_COUNT),
        )
        success = mostly_met(rows, unexpected, self.mostly)
        return Outcome(success, result, map_observed(unexpected, rows))


class RowMap(Evaluator):
    """A map expectation: each considered row is expected or not (`predicate` marks the
    unexpected ones); the sample holds the value, or the list of values, of `columns`."""

    def __init__(
        self, columns: Sequence[str], considered: Aggregate, predicate: Predicate, mostly: float
    ) -> None:
        self.columns = list(columns)
        self.considered = considered
        self.predicate = predicate
        self.unexpected = Aggregate(f"count(*) FILTER (WHERE {predicate.sql})", predicate.params)
        self.mostly = mostly

    def aggregates(self) -> list[Aggregate]:
        return [ROW_COUNT, self.considered, self.unexpected]

    def evaluate(
        self, values: Mapping[Aggregate, Any], probe: TableProbe, situation: Situation
    ) -> Outcome:
        rows, considered = int(values[ROW_COUNT]), int(values[self.considered])
        unexpected = int(values[self.unexpected])
        sample: list[Any] = []
        if unexpected:
            found = probe.sample(self.columns, self.predicate)
            sample = [row[0] if len(row) == 1 else list(row) for row in found]
        result = map_result(
            element_count=rows,
            nonnull_count=considered,
            unexpected_count=unexpected,
            unexpected_list=sample,
        )
        success = rows == 0 or mostly_met(considered, unexpected, self.mostly)
        return Outcome(success, result, map_observed(unexpected, considered))


class ColumnValues(RowMap):
    """A column map expectation: nulls are missing, not unexpected; `predicate` marks the rest."""

    def __init__(self, column: str, predicate: Predicate, mostly: float) -> None:
        unexpected = Predicate(f"{column} IS NOT NULL AND ({predicate.sql})", predicate.params)
        super().__init__([column], Aggregate(f"count({column})"), unexpected, mostly)


class Unique(Evaluator):
    """Single-column and compound uniqueness, as GX defines them.

    Every row of a repeated value (combination) is unexpected; a row with a NULL in any of the
    columns never counts as a repeat (GX matches with `=`). Compound checks ignore only rows
    whose columns are all NULL (GX's default `ignore_row_if="all_values_are_missing"`).

    Uniqueness is the one metric kept out of the shared scan, on measurement (B4, 10 M rows):
    a `count(DISTINCT id)` inside the many-aggregate SELECT costs more time and about twice the
    memory of a separate `GROUP BY id HAVING count(*) > 1`, which also yields GX's exact
    unexpected count at once.
    """

    def __init__(self, columns: Sequence[str], names: Sequence[str], mostly: float) -> None:
        self.columns = list(columns)
        self.names = list(names)
        self.compound = len(columns) > 1
        self.candidates = Predicate(" AND ".join(f"{c} IS NOT NULL" for c in columns))
        if self.compound:
            considered = " OR ".join(f"{c} IS NOT NULL" for c in columns)
            self.considered = Aggregate(f"count(*) FILTER (WHERE {considered})")
        else:
            self.considered = Aggregate(f"count({columns[0]})")
        self.mostly = mostly

    def aggregates(self) -> list[Aggregate]:
        return [ROW_COUNT, self.considered]

    def evaluate(
        self, values: Mapping[Aggregate, Any], probe: TableProbe, situation: Situation
    ) -> Outcome:
        rows, considered = int(values[ROW_COUNT]), int(values[self.considered])
        unexpected, duplicated = probe.duplicates(self.columns, self.candidates)
        sample: list[Any] = []
        if unexpected:
            rows_found = probe.sample(self.columns, duplicated)
            if self.compound:
                sample = [dict(zip(self.names, row, strict=True)) for row in rows_found]
            else:
                sample = [row[0] for row in rows_found]
        result = map_result(
            element_count=rows,
            nonnull_count=considered,
            unexpected_count=unexpected,
            unexpected_list=sample,
        )
        success = rows == 0 or mostly_met(considered, unexpected, self.mostly)
        return Outcome(success, result, map_observed(unexpected, considered))


def between_predicate(
    value: str, min_value: Any, max_value: Any, strict_min: bool, strict_max: bool
) -> Predicate:
    """Rows outside [min_value, max_value] (either bound may be open)."""
    parts, params = [], []
    if min_value is not None:
        parts.append(f"{value} {'<=' if strict_min else '<'} ?")
        params.append(min_value)
    if max_value is not None:
        parts.append(f"{value} {'>=' if strict_max else '>'} ?")
        params.append(max_value)
    return Predicate(" OR ".join(parts) or "FALSE", tuple(params))


def _is_day(value: Any) -> bool:
    return isinstance(value, date) and not isinstance(value, datetime)


def _align_datetime(observed: datetime, bound: Any) -> Any:
    if not isinstance(bound, datetime):
        return bound
    if observed.tzinfo is not None and bound.tzinfo is None:
        return bound.replace(tzinfo=UTC)  # naive means UTC, as Duckherd stores time
    if observed.tzinfo is None and bound.tzinfo is not None:
        return bound.astimezone(UTC).replace(tzinfo=None)
    return bound


def align_temporal(observed: Any, min_value: Any, max_value: Any) -> tuple[Any, Any, Any]:
    """Make GX's parsed bounds and DuckDB's value comparable, as GX does: against a date bound
    (`"2024-01-05"`) a timestamp is compared, and reported, as its date."""
    if not isinstance(observed, date):
        return observed, min_value, max_value
    if isinstance(observed, datetime) and (_is_day(min_value) or _is_day(max_value)):
        observed = observed.date()
    if _is_day(observed):
        return observed, _day(min_value), _day(max_value)
    return observed, _align_datetime(observed, min_value), _align_datetime(observed, max_value)


def _day(bound: Any) -> Any:
    return bound.date() if isinstance(bound, datetime) else bound


def in_between(
    observed: Any, min_value: Any, max_value: Any, strict_min: bool, strict_max: bool
) -> bool:
    if min_value is not None and (observed <= min_value if strict_min else observed < min_value):
        return False
    return not (
        max_value is not None and (observed >= max_value if strict_max else observed > max_value)
    )


class AggregateBetween(Evaluator):
    """`expect_column_{min,max,mean,sum}_to_be_between` and the table row count bounds."""

    def __init__(self, aggregate: Aggregate, kwargs: Mapping[str, Any]) -> None:
        self.aggregate = aggregate
        self.bounds = (
            kwargs.get("min_value"),
            kwargs.get("max_value"),
            bool(kwargs.get("strict_min")),
            bool(kwargs.get("strict_max")),
        )

    def aggregates(self) -> list[Aggregate]:
        return [ROW_COUNT, self.aggregate]

    def evaluate(
        self, values: Mapping[Aggregate, Any], probe: TableProbe, situation: Situation
    ) -> Outcome:
        observed = values[self.aggregate]
        if observed is None or (isinstance(observed, float) and math.isnan(observed)):
            return NO_VALUES
        min_value, max_value, strict_min, strict_max = self.bounds
        observed, min_value, max_value = align_temporal(observed, min_value, max_value)
        success = in_between(observed, min_value, max_value, strict_min, strict_max)
        return Outcome(success, {"observed_value": observed}, str(observed))


class RowCountChange(Evaluator):
    """Duckherd's `expect_table_row_count_change_to_be_within` (versus the previous run)."""

    def __init__(self, max_change_pct: float) -> None:
        self.max_change_pct = max_change_pct

    def aggregates(self) -> list[Aggregate]:
        return [ROW_COUNT]

    def evaluate(
        self, values: Mapping[Aggregate, Any], probe: TableProbe, situation: Situation
    ) -> Outcome:
        rows, previous = int(values[ROW_COUNT]), situation.previous_row_count
        details = {"row_count": rows, "previous_row_count": previous}
        if previous is None:
            return Outcome(
                True, {"observed_value": "no previous run", "details": details}, "no previous run"
            )
        if previous == 0:
            change = 0.0 if rows == 0 else math.inf
        else:
            change = (rows - previous) / previous * 100
        success = abs(change) <= self.max_change_pct
        observed_value = change if math.isfinite(change) else "previous run had 0 rows"
        text = f"{change:+.2f}% ({previous} -> {rows} rows)"
        return Outcome(success, {"observed_value": observed_value, "details": details}, text)


class MaxRecent(Evaluator):
    """Duckherd's `expect_column_max_to_be_recent`: max(column) no older than `max_age`."""

    def __init__(self, column: str, max_age: str) -> None:
        # epoch() reads a naive TIMESTAMP (and a DATE) as UTC and a TIMESTAMPTZ as the instant.
        self.latest = Aggregate(f"epoch(max({column}))")
        self.max_age = parse_duration(max_age)

    def aggregates(self) -> list[Aggregate]:
        return [ROW_COUNT, self.latest]

    def evaluate(
        self, values: Mapping[Aggregate, Any], probe: TableProbe, situation: Situation
    ) -> Outcome:
        seconds = values[self.latest]
        if seconds is None:
            return NO_VALUES
        latest = datetime.fromtimestamp(float(seconds), UTC)
        age = situation.now - latest
        details = {
            "age_seconds": age.total_seconds(),
            "max_age_seconds": self.max_age.total_seconds(),
        }
        observed = latest.isoformat().replace("+00:00", "Z")
        text = f"max {observed} ({_humanize(age)} old)"
        return Outcome(age <= self.max_age, {"observed_value": observed, "details": details}, text)


def _humanize(age: timedelta) -> str:
    seconds = int(age.total_seconds())
    sign, seconds = ("-", -seconds) if seconds < 0 else ("", seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{sign}{hours}h{rest // 60:02d}m"


def scan(
    connection: duckdb.DuckDBPyConnection, relation: str, aggregates: Sequence[Aggregate]
) -> dict[Aggregate, Any]:
    """Compute every distinct aggregate in one SELECT over the table (one scan)."""
    unique = list(dict.fromkeys(aggregates))
    select = ", ".join(aggregate.sql for aggregate in unique)
    params = [param for aggregate in unique for param in aggregate.params]
    row = connection.execute(f"SELECT {select} FROM {relation}", params).fetchone()
    assert row is not None  # an aggregate query always returns one row
    return dict(zip(unique, row, strict=True))
