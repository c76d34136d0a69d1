"""Referential integrity: every key of this table exists in another table (a foreign key).

`expect_column_values_to_exist_in_table` means what dbt's `relationships` test means: rows whose
key is NULL are not checked (they are GX's "missing"), every other row whose key has no match in
`to_table` is an orphan (GX's "unexpected"). A composite key (`column_list` ->
`to_column_list`) matches column by column; a row with a NULL in any key column is not checked,
as SQL's MATCH SIMPLE foreign keys do.

The shared scan counts the checked rows; the orphans take one anti-join (`NOT EXISTS`, which
DuckDB plans as a hash anti-join over the parent's key), and only a failed check reads its
sample of orphan values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from duckherd_jobs.check.pushdown import (
    ROW_COUNT,
    Aggregate,
    Evaluator,
    Outcome,
    Predicate,
    Situation,
    TableProbe,
    map_result,
    mostly_met,
)

EXIST_IN_TABLE = "expect_column_values_to_exist_in_table"


@dataclass(frozen=True)
class RelatedKey:
    """The parent side, resolved against the catalog: its relation and key columns (quoted)."""

    table: str  # schema.table, for messages
    relation: str
    columns: tuple[str, ...]
    names: tuple[str, ...]


def key_columns(kwargs: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(this table's key columns, the related table's) as the spec names them."""
    if kwargs.get("column_list"):
        ours = [str(name) for name in kwargs["column_list"]]
        theirs = kwargs.get("to_column_list") or ours
    else:
        ours = [str(kwargs["column"])]
        theirs = [kwargs.get("to_column") or kwargs["column"]]
    return ours, [str(name) for name in theirs]


class ExistInTable(Evaluator):
    def __init__(
        self, columns: Sequence[str], names: Sequence[str], related: RelatedKey, mostly: float
    ) -> None:
        self.columns, self.names, self.related = list(columns), list(names), related
        self.mostly = mostly
        self.considered = Aggregate(
            "count(*) FILTER (WHERE " + " AND ".join(f"{c} IS NOT NULL" for c in columns) + ")"
        )
        checked = " AND ".join(f"t.{c} IS NOT NULL" for c in self.columns)
        matches = " AND ".join(
            f"p.{parent} = t.{child}"
            for child, parent in zip(self.columns, related.columns, strict=True)
        )
        self.orphan = Predicate(
            f"{checked} AND NOT EXISTS (SELECT 1 FROM {related.relation} AS p WHERE {matches})"
        )

    def aggregates(self) -> list[Aggregate]:
        return [ROW_COUNT, self.considered]

    def evaluate(
        self, values: Mapping[Aggregate, Any], probe: TableProbe, situation: Situation
    ) -> Outcome:
        rows, considered = int(values[ROW_COUNT]), int(values[self.considered])
        found = probe.rows(f"SELECT count(*) FROM {probe.relation} AS t WHERE {self.orphan.sql}")
        orphans = int(found[0][0])
        sample: list[Any] = []
        if orphans:
            rows_found = probe.sample(self.columns, self.orphan)
            if len(self.columns) == 1:
                sample = [row[0] for row in rows_found]
            else:
                sample = [dict(zip(self.names, row, strict=True)) for row in rows_found]
        result = map_result(
            element_count=rows,
            nonnull_count=considered,
            unexpected_count=orphans,
            unexpected_list=sample,
        )
        target = f"{self.related.table}({', '.join(self.related.names)})"
        result["details"] = {"to": target, "orphan_count": orphans}
        success = rows == 0 or mostly_met(considered, orphans, self.mostly)
        return Outcome(success, result, f"{orphans} orphan(s) of {considered} not in {target}")
