"""Distribution drift: a profile of each checked table per run, compared with earlier runs.

The profile is part of the table's one scan. Every column gets its null fraction and (for
numbers, text, booleans and times) min and max; a column a drift check watches also gets its
approximate distinct count, and for numbers its mean, sample stddev and quantiles (DuckDB's
`reservoir_quantile`, approximate), for text and booleans its value counts (`histogram`, which
is why only watched columns get it: it is as large as the column's distinct values). The
profiles go to `_duckherd.profiles` with the run's check verdict; the baseline of a drift check
is the last `runs` runs whose check stage passed.

Two expectations use it:
- `expect_column_drift_to_be_within`: the change of the mean and the stddev (percent of the
  baseline's) and of the null fraction (absolute) against the baseline's average;
- `expect_column_kl_divergence_to_previous_runs_to_be_less_than`: GX's
  `expect_column_kl_divergence_to_be_less_than` for categorical data (observed value counts
  against a partition; `tail_weight_holdout` for values the baseline never saw), its partition
  being the baseline's pooled value counts.
The first run has no baseline and passes ("no baseline"), as the row-count change does.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import duckdb

from duckherd_jobs.check.pushdown import (
    ROW_COUNT,
    Aggregate,
    Evaluator,
    Outcome,
    Situation,
    TableProbe,
)
from duckherd_jobs.sql import quote_identifier

DRIFT = "expect_column_drift_to_be_within"
KL_DIVERGENCE = "expect_column_kl_divergence_to_previous_runs_to_be_less_than"
DRIFT_EXPECTATIONS = frozenset({DRIFT, KL_DIVERGENCE})
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
NUMERIC = frozenset(
    {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT"}
    | {"UINTEGER", "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE", "DECIMAL"}
)
CATEGORICAL = frozenset({"VARCHAR", "BOOLEAN"})
_ORDERED = NUMERIC | CATEGORICAL | {"DATE", "TIME", "TIMESTAMP", "TIMESTAMP WITH TIME ZONE"}


def _base_type(data_type: str) -> str:
    return data_type.partition("(")[0].strip().upper()


@dataclass(frozen=True)
class ColumnProfile:
    """The aggregates profiling one column: `watched` (by a drift check) columns get the full
    set, `categorical` ones (watched by a KL check) their value counts too."""

    name: str
    data_type: str
    watched: bool = False
    categorical: bool = False

    @property
    def numeric(self) -> bool:
        return _base_type(self.data_type) in NUMERIC

    def _sql(self) -> dict[str, str]:
        column, kind = quote_identifier(self.name), _base_type(self.data_type)
        parts = {"nonnull": f"count({column})"}
        if self.categorical:
            parts["values"] = f"histogram({column})"
            if self._counted():
                return parts  # min, max and distinct come from the value counts (see `read`)
        if kind in _ORDERED:
            parts["min"], parts["max"] = f"min({column})", f"max({column})"
        if self.watched:
            parts["distinct"] = f"approx_count_distinct({column})"
            if kind in NUMERIC:
                listed = ", ".join(repr(q) for q in QUANTILES)
                parts["mean"] = f"avg({column})"
                parts["stddev"] = f"stddev_samp({column})"
                parts["quantiles"] = f"reservoir_quantile(CAST({column} AS DOUBLE), [{listed}])"
        return parts

    def aggregates(self) -> list[Aggregate]:
        return [Aggregate(sql) for sql in self._sql().values()]

    def _counted(self) -> bool:
        """A KL-watched string or boolean column: its value counts (needed anyway) give its
        min, max and an exact distinct count, three aggregates fewer in the shared scan.
        (Python orders str by code point, as DuckDB orders VARCHAR by UTF-8 bytes.)"""
        return self.categorical and _base_type(self.data_type) in CATEGORICAL

    def read(self, values: Mapping[Aggregate, Any]) -> dict[str, Any]:
        """The profile as JSON-ready values."""
        rows = int(values[ROW_COUNT])
        profile: dict[str, Any] = {"type": self.data_type}
        for key, sql in self._sql().items():
            value = values[Aggregate(sql)]
            if key == "values" and self._counted():
                counted = list(value or {})
                profile["min"] = min(counted) if counted else None
                profile["max"] = max(counted) if counted else None
                profile["distinct"] = len(counted)
            if key == "values":
                value = {str(k): int(v) for k, v in (value or {}).items()}
            elif key in ("mean", "stddev") and value is not None:
                value = None if math.isnan(float(value)) else float(value)
            elif key in ("min", "max") and value is not None:
                if isinstance(value, Decimal):
                    value = float(value)
                value = value if isinstance(value, int | float | bool) else str(value)
            profile[key] = value
        nonnull = int(profile.pop("nonnull"))
        profile["null_fraction"] = (rows - nonnull) / rows if rows else None
        return profile


@dataclass(frozen=True)
class BaselineProfile:
    run_id: str
    profile: dict[str, Any]


def table_profiles(
    catalog: Sequence[tuple[str, str]], watched: set[str], categorical: set[str]
) -> list[ColumnProfile]:
    """Every column's profile; the columns drift checks name get the full set."""
    return [
        ColumnProfile(name, data_type, name in watched, name in categorical)
        for name, data_type in catalog
    ]


def load_baseline(
    connection: duckdb.DuckDBPyConnection, table: str, run_id: str, runs: int
) -> dict[str, list[BaselineProfile]]:
    """Column -> profiles of the last `runs` runs whose checks passed (newest first)."""
    rows = connection.execute(
        "WITH runs AS (SELECT run_id, max(profiled_at) AS latest FROM _duckherd.profiles "
        "WHERE table_name = ? AND ok AND run_id <> ? GROUP BY run_id ORDER BY latest DESC LIMIT ?) "
        "SELECT p.run_id, p.column_name, p.profile FROM _duckherd.profiles AS p "
        "JOIN runs USING (run_id) WHERE p.table_name = ? ORDER BY runs.latest DESC",
        [table, run_id, runs, table],
    ).fetchall()
    baseline: dict[str, list[BaselineProfile]] = {}
    for found_run, column, profile in rows:
        baseline.setdefault(str(column), []).append(
            BaselineProfile(str(found_run), json.loads(profile))
        )
    return baseline


def record_profiles(
    connection: duckdb.DuckDBPyConnection,
    run_id: str,
    profiled_at: datetime,
    ok: bool,
    profiles: Mapping[str, tuple[int, Mapping[str, dict[str, Any]]]],
) -> None:
    """table -> (row count, column -> profile) into `_duckherd.profiles`."""
    rows = [
        [run_id, profiled_at, table, column, ok, row_count, json.dumps(profile, default=str)]
        for table, (row_count, columns) in profiles.items()
        for column, profile in columns.items()
    ]
    if rows:
        connection.executemany("INSERT INTO _duckherd.profiles VALUES (?, ?, ?, ?, ?, ?, ?)", rows)


def _no_baseline(current: Any) -> Outcome:
    result = {"observed_value": "no baseline", "details": {"current": current}}
    return Outcome(True, result, "no baseline")


def _change_pct(current: float | None, base: float | None) -> float | None:
    if current is None or base is None:
        return None
    if base == 0:
        return 0.0 if current == 0 else math.inf
    return abs(current - base) / abs(base) * 100


def _average(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _exceeds(change: float | None, limit: float) -> bool:
    """No value to compare (no numbers this run, or none in the baseline) fails the limit."""
    return change is None or change > limit


class Drift(Evaluator):
    """`expect_column_drift_to_be_within`: mean / stddev / null fraction vs the baseline."""

    def __init__(self, profile: ColumnProfile, kwargs: Mapping[str, Any]) -> None:
        self.profile = profile
        self.runs = int(kwargs.get("runs", 5))
        self.limits = {
            "mean_change_pct": kwargs.get("max_mean_change_pct"),
            "stddev_change_pct": kwargs.get("max_stddev_change_pct"),
            "null_fraction_change": kwargs.get("max_null_fraction_change"),
        }

    def aggregates(self) -> list[Aggregate]:
        return [ROW_COUNT, *self.profile.aggregates()]

    def evaluate(
        self, values: Mapping[Aggregate, Any], probe: TableProbe, situation: Situation
    ) -> Outcome:
        current = self.profile.read(values)
        observed = {k: current.get(k) for k in ("mean", "stddev", "null_fraction")}
        history = situation.baseline.get(self.profile.name, [])[: self.runs]
        if not history:
            return _no_baseline(observed)
        base = {k: _average([h.profile.get(k) for h in history]) for k in observed}
        nulls = None
        if observed["null_fraction"] is not None and base["null_fraction"] is not None:
            nulls = abs(observed["null_fraction"] - base["null_fraction"])
        changes = {
            "mean_change_pct": _change_pct(observed["mean"], base["mean"]),
            "stddev_change_pct": _change_pct(observed["stddev"], base["stddev"]),
            "null_fraction_change": nulls,
        }
        exceeded = [
            key
            for key, limit in self.limits.items()
            if limit is not None and _exceeds(changes[key], float(limit))
        ]
        details = {
            "baseline": base,
            "baseline_runs": [h.run_id for h in history],
            "changes": {
                k: (v if v is None or math.isfinite(v) else "inf") for k, v in changes.items()
            },
            "exceeded": exceeded,
        }
        text = ", ".join(
            f"{key} {changes[key]:.3g}" + (" > " + str(self.limits[key]) if key in exceeded else "")
            for key in self.limits
            if self.limits[key] is not None and changes[key] is not None
        )
        return Outcome(not exceeded, {"observed_value": observed, "details": details}, text)


def kl_divergence(
    observed: Mapping[str, int], expected: Mapping[str, float], tail_weight_holdout: float
) -> tuple[float, list[str], list[float], list[float]]:
    """GX's categorical KL divergence: scipy's entropy(pk=observed, qk=expected) over the
    expected values then the unexpected ones (weight `tail_weight_holdout`, shared)."""
    total = sum(observed.values())
    values = list(expected) + [v for v in observed if v not in expected]
    pk = [observed.get(v, 0) / total if total else 0.0 for v in values]
    unseen = len(values) - len(expected)
    scale = 1 - tail_weight_holdout if unseen else 1.0
    qk = [expected[v] * scale if v in expected else tail_weight_holdout / unseen for v in values]
    p_sum, q_sum = sum(pk), sum(qk)
    divergence = 0.0
    for p, q in zip(pk, qk, strict=True):
        if p == 0:
            continue
        if q == 0:
            return math.inf, values, pk, qk
        divergence += (p / p_sum) * math.log((p / p_sum) / (q / q_sum))
    return divergence, values, pk, qk


class KlDivergence(Evaluator):
    """`expect_column_kl_divergence_to_previous_runs_to_be_less_than` (categorical columns)."""

    def __init__(self, profile: ColumnProfile, kwargs: Mapping[str, Any]) -> None:
        self.profile = profile
        self.runs = int(kwargs.get("runs", 5))
        self.threshold = float(kwargs["threshold"])
        self.tail_weight_holdout = float(kwargs.get("tail_weight_holdout", 0.0))

    def aggregates(self) -> list[Aggregate]:
        return [ROW_COUNT, *self.profile.aggregates()]

    def evaluate(
        self, values: Mapping[Aggregate, Any], probe: TableProbe, situation: Situation
    ) -> Outcome:
        observed = self.profile.read(values).get("values") or {}
        history = [
            h
            for h in situation.baseline.get(self.profile.name, [])[: self.runs]
            if "values" in h.profile
        ]
        if not history:
            return _no_baseline({"values": observed})
        pooled: Counter[str] = Counter()
        for h in history:
            pooled.update(h.profile["values"])
        total = sum(pooled.values())
        expected = {value: count / total for value, count in pooled.items()} if total else {}
        divergence, listed, pk, qk = kl_divergence(observed, expected, self.tail_weight_holdout)
        finite = math.isfinite(divergence)
        result = {
            "observed_value": divergence if finite else None,
            "details": {
                "observed_partition": {"values": listed, "weights": pk},
                "expected_partition": {"values": listed, "weights": qk},
                "baseline_runs": [h.run_id for h in history],
            },
        }
        success = finite and divergence <= self.threshold
        text = f"KL {divergence:.4g}" if finite else "KL infinite (values the baseline never saw)"
        return Outcome(success, result, text + ("" if success else f" > {self.threshold:g}"))
