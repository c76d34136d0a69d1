"""The type-widening rule of schema evolution (pure, no warehouse)."""

from __future__ import annotations

import pytest

from duckherd_jobs.ingest.schema import IncompatibleType, column_type_for_new_column, widen


@pytest.mark.parametrize(
    ("current", "incoming", "expected"),
    [
        ("BIGINT", "BIGINT", "BIGINT"),
        ("INTEGER", "BIGINT", "BIGINT"),
        ("BIGINT", "INTEGER", "BIGINT"),
        ("INTEGER", "UINTEGER", "BIGINT"),
        ("BIGINT", "UBIGINT", "HUGEINT"),
        ("BIGINT", "DOUBLE", "DOUBLE"),
        ("DECIMAL(12,2)", "BIGINT", "DOUBLE"),
        ("FLOAT", "DOUBLE", "DOUBLE"),
        ("DATE", "TIMESTAMP", "TIMESTAMP"),
        ("TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "TIMESTAMP WITH TIME ZONE"),
        ("TIMESTAMP WITH TIME ZONE", "DATE", "TIMESTAMP WITH TIME ZONE"),
        ("DATE", "VARCHAR", "VARCHAR"),
        ("UUID", "VARCHAR", "VARCHAR"),
        ("VARCHAR", "BIGINT", "VARCHAR"),
        ("BIGINT", "NULL", "BIGINT"),
        ("timestamptz", "TIMESTAMP WITH TIME ZONE", "TIMESTAMP WITH TIME ZONE"),
    ],
)
def test_types_widen_without_losing_values(current: str, incoming: str, expected: str) -> None:
    assert widen(current, incoming) == expected


@pytest.mark.parametrize(
    ("current", "incoming"),
    [
        ("BIGINT", "VARCHAR"),
        ("DOUBLE", "VARCHAR"),
        ("BOOLEAN", "VARCHAR"),
        ("BOOLEAN", "BIGINT"),
        ("STRUCT(a BIGINT)", "STRUCT(a BIGINT, b VARCHAR)"),
        ("BIGINT[]", "VARCHAR[]"),
    ],
)
def test_incompatible_changes_are_refused(current: str, incoming: str) -> None:
    with pytest.raises(IncompatibleType, match=current.split("(")[0].split("[")[0]):
        widen(current, incoming)


def test_a_column_born_all_null_becomes_text() -> None:
    assert column_type_for_new_column("NULL") == "VARCHAR"
    assert column_type_for_new_column("BIGINT") == "BIGINT"
