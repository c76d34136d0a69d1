"""The pushdown's results equal Great Expectations' own evaluation of the same data.

GX runs through its SQL execution engine on the same DuckDB file (repaired, see
`tests/jobs/gx_duckdb.py`); regex matching, which GX's SQL engine cannot express for the
duckdb dialect, is compared with GX's pandas engine on the table's rows instead.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import great_expectations as gx
import pytest
from great_expectations.data_context.types.base import ProgressBarsConfig

from duckherd_jobs.check.config import expectation_class
from tests.jobs.check_support import check, make_warehouse, query
from tests.jobs.gx_duckdb import GxDuckDB, gx_duckdb

# Cases with few unexpected rows (the unexpected sample is then the whole set, order aside)
# and cases with many (only the sample's size and membership can be compared).
CASES: list[tuple[str, dict[str, Any]]] = [
    ("expect_column_values_to_not_be_null", {"column": "email"}),
    ("expect_column_values_to_not_be_null", {"column": "customer_id"}),
    ("expect_column_values_to_not_be_null", {"column": "revenue", "mostly": 0.9}),
    ("expect_column_values_to_be_unique", {"column": "customer_id"}),
    ("expect_column_values_to_be_unique", {"column": "months_active"}),
    ("expect_column_values_to_be_unique", {"column": "segment"}),
    ("expect_column_values_to_be_between", {"column": "revenue", "min_value": 0}),
    ("expect_column_values_to_be_between", {"column": "revenue", "max_value": 2000}),
    (
        "expect_column_values_to_be_between",
        {"column": "segment", "min_value": 0, "max_value": 4, "strict_min": True},
    ),
    (
        "expect_column_values_to_be_between",
        {"column": "revenue", "min_value": 0, "max_value": 2400, "mostly": 0.95},
    ),
    (
        "expect_column_values_to_be_in_set",
        {"column": "status", "value_set": ["active", "churned", "trial"]},
    ),
    ("expect_column_values_to_be_in_set", {"column": "region", "value_set": [0, 1]}),
    ("expect_column_values_to_be_in_set", {"column": "segment", "value_set": []}),
    ("expect_column_min_to_be_between", {"column": "revenue", "min_value": 0}),
    (
        "expect_column_max_to_be_between",
        {"column": "revenue", "max_value": 2450, "strict_max": True},
    ),
    (
        "expect_column_mean_to_be_between",
        {"column": "revenue", "min_value": 1000, "max_value": 1300},
    ),
    ("expect_column_sum_to_be_between", {"column": "segment", "min_value": 400}),
    ("expect_column_sum_to_be_between", {"column": "revenue", "min_value": 1, "max_value": 2}),
    ("expect_column_max_to_be_between", {"column": "updated_at", "min_value": "2024-01-05"}),
    ("expect_column_min_to_be_between", {"column": "updated_at", "max_value": "2023-12-31"}),
    (
        "expect_column_values_to_be_between",
        {
            "column": "updated_at",
            "min_value": "2024-01-02T00:00:00",
            "max_value": "2024-01-08T00:00:00",
        },
    ),
    ("expect_table_row_count_to_be_between", {"min_value": 100, "max_value": 200}),
    ("expect_table_row_count_to_be_between", {"min_value": 201}),
    ("expect_compound_columns_to_be_unique", {"column_list": ["customer_id", "segment"]}),
    ("expect_compound_columns_to_be_unique", {"column_list": ["segment", "region"]}),
]
MAP_SAMPLE_KEYS = ("partial_unexpected_list", "partial_unexpected_counts")
# Row positions: only GX's pandas engine has them (a SQL table has no row order).
PANDAS_ONLY_KEYS = ("partial_unexpected_index_list",)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    warehouse = make_warehouse(tmp_path_factory.mktemp("parity") / "warehouse.duckdb")
    checks = [
        {"table": "customers", "expectation": name, "kwargs": kwargs, "severity": "warn"}
        for name, kwargs in CASES
    ]
    summary = check(warehouse, checks)
    assert summary.ok, summary.error
    rows = query(warehouse, "SELECT result FROM _duckherd.checks ORDER BY rowid")
    return warehouse, [json.loads(row[0]) for row in rows]


@pytest.fixture(scope="module")
def reference(evaluated: tuple[Path, list[dict[str, Any]]]) -> Iterator[GxDuckDB]:
    with gx_duckdb(evaluated[0]) as validator:
        yield validator


def _comparable(values: list[Any]) -> list[str]:
    return sorted(json.dumps(value, sort_keys=True) for value in values)


def assert_same_result(ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    assert ours["success"] == theirs["success"]
    mine = ours["result"]
    gxs = {k: v for k, v in theirs["result"].items() if k not in PANDAS_ONLY_KEYS}
    assert set(mine) == set(gxs)
    for key in set(mine) - set(MAP_SAMPLE_KEYS):
        expected = gxs[key]
        if isinstance(expected, float):
            expected = pytest.approx(expected, rel=1e-12)
        assert mine[key] == expected, key
    if "partial_unexpected_list" in gxs:
        if gxs["unexpected_count"] <= len(gxs["partial_unexpected_list"]):
            for key in MAP_SAMPLE_KEYS:
                assert _comparable(mine[key]) == _comparable(gxs[key]), key
        else:  # both sampled: same size, and every sampled value is a genuine unexpected one
            assert len(mine["partial_unexpected_list"]) == len(gxs["partial_unexpected_list"])


@pytest.mark.parametrize(("index", "case"), list(enumerate(CASES)), ids=[c[0] for c in CASES])
def test_pushdown_equals_gx_sql_engine(
    evaluated: tuple[Path, list[dict[str, Any]]],
    reference: GxDuckDB,
    index: int,
    case: tuple[str, dict[str, Any]],
) -> None:
    results = evaluated[1]
    expectation, kwargs = case
    theirs = reference.validate("marts.customers", expectation, kwargs).to_json_dict()
    assert "'raised_exception': True" not in str(theirs["exception_info"]), theirs["exception_info"]
    assert results[index]["expectation_config"]["type"] == expectation
    assert_same_result(results[index], theirs)


def test_the_cases_cover_both_verdicts(evaluated: tuple[Path, list[dict[str, Any]]]) -> None:
    verdicts = {result["success"] for result in evaluated[1]}
    assert verdicts == {True, False}


def _gx_pandas(frame: Any, expectation: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (
        context.data_sources.add_pandas("frame")
        .add_dataframe_asset("rows")
        .add_batch_definition_whole_dataframe("all")
        .get_batch(batch_parameters={"dataframe": frame})
    )
    result: dict[str, Any] = batch.validate(expectation_class(expectation)(**kwargs)).to_json_dict()
    return result


@pytest.mark.parametrize(
    "kwargs",
    [
        {"column": "contact", "regex": r"^[a-z0-9]+@example\.com$"},
        {"column": "email", "regex": r"@example\.com"},
        {"column": "status", "regex": "^(?:active|trial)$", "mostly": 0.5},
    ],
)
def test_regex_equals_gx_pandas_engine(tmp_path: Path, kwargs: dict[str, Any]) -> None:
    warehouse = make_warehouse(tmp_path / "warehouse.duckdb")
    expectation = "expect_column_values_to_match_regex"
    summary = check(
        warehouse, [{"table": "customers", "expectation": expectation, "kwargs": kwargs}]
    )
    ours = json.loads(query(warehouse, "SELECT result FROM _duckherd.checks")[0][0])
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        frame = connection.execute("SELECT * FROM marts.customers ORDER BY rowid").df()
    theirs = _gx_pandas(frame, expectation, kwargs)
    assert "'raised_exception': True" not in str(theirs["exception_info"]), theirs["exception_info"]
    assert_same_result(ours, theirs)
    assert summary.ok == ours["success"]
