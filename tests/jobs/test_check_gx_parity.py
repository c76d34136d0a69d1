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
from tests.jobs.check_support import COLUMNS, check, make_warehouse, query
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
    # schema validation
    ("expect_column_to_exist", {"column": "email"}),
    ("expect_column_to_exist", {"column": "emails"}),
    ("expect_column_to_exist", {"column": "EMAIL"}),
    ("expect_column_to_exist", {"column": "email", "column_index": 1}),
    ("expect_column_to_exist", {"column": "email", "column_index": 2}),
    ("expect_column_to_exist", {"column": "customer_id", "column_index": 0}),
    ("expect_column_to_exist", {"column": "email", "column_index": 40}),
    ("expect_table_columns_to_match_set", {"column_set": COLUMNS}),
    ("expect_table_columns_to_match_set", {"column_set": ["email", "customer_id"]}),
    (
        "expect_table_columns_to_match_set",
        {"column_set": ["EMAIL", "customer_id"], "exact_match": False},
    ),
    (
        "expect_table_columns_to_match_set",
        {"column_set": ["email", '"contact"', '"Revenue"', "gone"], "exact_match": False},
    ),
    ("expect_table_columns_to_match_ordered_list", {"column_list": COLUMNS}),
    ("expect_table_columns_to_match_ordered_list", {"column_list": COLUMNS[::-1]}),
    ("expect_table_columns_to_match_ordered_list", {"column_list": [*COLUMNS, "extra"]}),
    ("expect_table_columns_to_match_ordered_list", {"column_list": ["Customer_ID", "email"]}),
    ("expect_table_column_count_to_equal", {"value": 9}),
    ("expect_table_column_count_to_equal", {"value": 10}),
    # business rules
    ("expect_column_values_to_not_be_in_set", {"column": "status", "value_set": ["unknown"]}),
    (
        "expect_column_values_to_not_be_in_set",
        {"column": "status", "value_set": ["unknown", "trial"], "mostly": 0.6},
    ),
    ("expect_column_values_to_not_be_in_set", {"column": "region", "value_set": [7]}),
    (
        "expect_column_distinct_values_to_be_in_set",
        {"column": "status", "value_set": ["active", "churned", "trial"]},
    ),
    ("expect_column_distinct_values_to_be_in_set", {"column": "segment", "value_set": [0, 1, 2]}),
    (
        "expect_column_distinct_values_to_be_in_set",
        {"column": "region", "value_set": [0, 1, 2, 3]},
    ),
    (
        "expect_column_distinct_values_to_contain_set",
        {"column": "status", "value_set": ["active", "unknown"]},
    ),
    (
        "expect_column_distinct_values_to_contain_set",
        {"column": "status", "value_set": ["active", "gold", "silver"]},
    ),
    ("expect_column_value_lengths_to_be_between", {"column": "status", "min_value": 6}),
    (
        "expect_column_value_lengths_to_be_between",
        {"column": "status", "min_value": 5, "max_value": 6, "mostly": 0.6},
    ),
    (
        "expect_column_value_lengths_to_be_between",
        {"column": "email", "max_value": 20, "strict_max": True},
    ),
    ("expect_column_median_to_be_between", {"column": "revenue", "min_value": 1194.375}),
    ("expect_column_median_to_be_between", {"column": "months_active", "max_value": 100}),
    ("expect_column_median_to_be_between", {"column": "region", "min_value": 1, "max_value": 1}),
    (
        "expect_column_quantile_values_to_be_between",
        {
            "column": "revenue",
            "quantile_ranges": {
                "quantiles": [0.05, 0.5, 0.95],
                "value_ranges": [[0, 100], [1000, 1300], [2000, None]],
            },
        },
    ),
    (
        "expect_column_quantile_values_to_be_between",
        {
            "column": "months_active",
            "quantile_ranges": {
                "quantiles": [0.0, 0.25, 0.333, 1.0],
                "value_ranges": [[1, 1], [None, 40], [67, 67], [150, None]],
            },
        },
    ),
    ("expect_column_stdev_to_be_between", {"column": "revenue", "min_value": 600}),
    ("expect_column_stdev_to_be_between", {"column": "segment", "max_value": 1.4}),
    (
        "expect_column_proportion_of_unique_values_to_be_between",
        {"column": "segment", "max_value": 0.025},
    ),
    (
        "expect_column_proportion_of_unique_values_to_be_between",
        {"column": "customer_id", "min_value": 1.0},
    ),
    (
        "expect_column_proportion_of_unique_values_to_be_between",
        {"column": "region", "min_value": 0.1, "strict_min": True},
    ),
    (
        "expect_column_pair_values_a_to_be_greater_than_b",
        {"column_A": "months_active", "column_B": "segment"},
    ),
    (
        "expect_column_pair_values_a_to_be_greater_than_b",
        {"column_A": "months_active", "column_B": "segment", "or_equal": True},
    ),
    (
        "expect_column_pair_values_a_to_be_greater_than_b",
        {"column_A": "revenue", "column_B": "region", "mostly": 0.97},
    ),
    (
        "expect_column_pair_values_a_to_be_greater_than_b",
        {"column_A": "revenue", "column_B": "region", "ignore_row_if": "either_value_is_missing"},
    ),
    (
        "expect_column_pair_values_a_to_be_greater_than_b",
        {"column_A": "region", "column_B": "revenue", "ignore_row_if": "neither", "or_equal": True},
    ),
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
            for key in set(MAP_SAMPLE_KEYS) & set(gxs):
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


MATCH, NOT_MATCH = "expect_column_values_to_match_regex", "expect_column_values_to_not_match_regex"
REGEX_CASES = [
    (MATCH, {"column": "contact", "regex": r"^[a-z0-9]+@example\.com$"}),
    (MATCH, {"column": "email", "regex": r"@example\.com"}),
    (MATCH, {"column": "status", "regex": "^(?:active|trial)$", "mostly": 0.5}),
    (NOT_MATCH, {"column": "contact", "regex": "^Bad"}),
    (NOT_MATCH, {"column": "email", "regex": "user1"}),
    (NOT_MATCH, {"column": "status", "regex": "^(?:active|trial)$", "mostly": 0.3}),
    (NOT_MATCH, {"column": "status", "regex": "gold"}),
]


@pytest.mark.parametrize(("expectation", "kwargs"), REGEX_CASES)
def test_regex_equals_gx_pandas_engine(
    tmp_path: Path, expectation: str, kwargs: dict[str, Any]
) -> None:
    warehouse = make_warehouse(tmp_path / "warehouse.duckdb")
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


# Type expectations name DuckDB types; GX's SQL engine on DuckDB sees SQLAlchemy's classes.
# Each DuckDB type below maps to one class GX reports, so the verdicts must agree once the
# name is translated. (REAL/DOUBLE both read FLOAT in GX, TIMESTAMPTZ reads TIMESTAMP: those
# GX cannot tell apart; TINYINT/HUGEINT are duckdb_engine classes GX cannot look up by name;
# GX matches a class and its subclasses, so its Integer and NUMERIC also accept BIGINT and
# DOUBLE, where a DuckDB name means that type. Those are tested in test_check.py instead.)
GX_TYPE_NAMES = {
    "SMALLINT": "SmallInteger",
    "BIGINT": "BigInteger",
    "DOUBLE": "FLOAT",
    "VARCHAR": "String",
    "BOOLEAN": "BOOLEAN",
    "DATE": "DATE",
    "TIMESTAMP": "TIMESTAMP",
}
TYPED_SQL = "CREATE SCHEMA marts; CREATE TABLE marts.typed AS SELECT " + ", ".join(
    f"CAST(NULL AS {name}) AS c_{name.lower()}" for name in GX_TYPE_NAMES
)
TYPE_CASES: list[tuple[str, list[str]]] = [
    (f"c_{column.lower()}", names)
    for index, column in enumerate(GX_TYPE_NAMES)
    for names in (
        [column],
        [list(GX_TYPE_NAMES)[(index + 1) % len(GX_TYPE_NAMES)]],
        [list(GX_TYPE_NAMES)[(index + 5) % len(GX_TYPE_NAMES)], column],
        [list(GX_TYPE_NAMES)[(index + 3) % len(GX_TYPE_NAMES)], "UUID"],
    )
]


def _type_check(column: str, names: list[str]) -> tuple[str, dict[str, Any]]:
    if len(names) == 1:
        return "expect_column_values_to_be_of_type", {"column": column, "type_": names[0]}
    return "expect_column_values_to_be_in_type_list", {"column": column, "type_list": names}


def test_type_expectations_agree_with_gx_sql_engine(tmp_path: Path) -> None:
    warehouse = make_warehouse(tmp_path / "warehouse.duckdb", TYPED_SQL)
    checks = [
        {"table": "typed", "expectation": name, "kwargs": kwargs, "severity": "warn"}
        for name, kwargs in (_type_check(column, names) for column, names in TYPE_CASES)
    ]
    check(warehouse, checks)
    ours = [json.loads(row[0]) for row in query(warehouse, "SELECT result FROM _duckherd.checks")]
    verdicts = []
    with gx_duckdb(warehouse) as reference:
        for (column, names), result in zip(TYPE_CASES, ours, strict=True):
            translated = [GX_TYPE_NAMES.get(name, name) for name in names]
            expectation, kwargs = _type_check(column, translated)
            theirs: dict[str, Any] = reference.validate(
                "marts.typed", expectation, kwargs
            ).to_json_dict()
            assert result["success"] == theirs["success"], (column, names, theirs["result"])
            assert set(result["result"]) == set(theirs["result"]) == {"observed_value"}
            observed = result["result"]["observed_value"]
            assert GX_TYPE_NAMES[observed.partition("(")[0]] == theirs["result"]["observed_value"]
            verdicts.append(result["success"])
    assert set(verdicts) == {True, False}


# Drift's categorical test is GX's expect_column_kl_divergence_to_be_less_than with the
# partition taken from earlier runs' profiles: GX, given that partition, must agree.
KL = "expect_column_kl_divergence_to_previous_runs_to_be_less_than"
KL_CASES: list[dict[str, Any]] = [
    {"threshold": 0.5},  # a value the baseline never saw: infinite
    {"threshold": 0.5, "tail_weight_holdout": 0.05},
    {"threshold": 0.01, "tail_weight_holdout": 0.05},
    {"threshold": 0.2, "tail_weight_holdout": 0.3},
]
SHIFT_SQL = (
    "UPDATE marts.customers SET status = CASE WHEN customer_id % 10 = 1 THEN 'paused' "
    "WHEN customer_id % 4 = 0 THEN 'active' ELSE status END"
)


def test_kl_divergence_to_previous_runs_equals_gx(tmp_path: Path) -> None:
    warehouse = make_warehouse(tmp_path / "warehouse.duckdb")
    checks = [
        {
            "table": "customers",
            "expectation": KL,
            "kwargs": {"column": "status", **kwargs},
            "severity": "warn",
        }
        for kwargs in KL_CASES
    ]
    check(warehouse, checks, run_id="run-1")
    baseline = dict(
        query(
            warehouse,
            "SELECT status, count(*) FROM marts.customers WHERE status IS NOT NULL GROUP BY ALL",
        )
    )
    with duckdb.connect(str(warehouse)) as connection:
        connection.execute(SHIFT_SQL)
    check(warehouse, checks, run_id="run-2")
    ours = [
        json.loads(row[0])
        for row in query(
            warehouse, "SELECT result FROM _duckherd.checks WHERE run_id = 'run-2' ORDER BY rowid"
        )
    ]
    total = sum(baseline.values())
    partition = {
        "values": list(baseline),
        "weights": [count / total for count in baseline.values()],
    }
    with gx_duckdb(warehouse) as reference:
        for kwargs, result in zip(KL_CASES, ours, strict=True):
            gx_kwargs = {"column": "status", "partition_object": partition, **kwargs}
            theirs: dict[str, Any] = reference.validate(
                "marts.customers", "expect_column_kl_divergence_to_be_less_than", gx_kwargs
            ).to_json_dict()
            assert "'raised_exception': True" not in str(theirs["exception_info"])
            assert result["success"] == theirs["success"], kwargs
            expected = theirs["result"]["observed_value"]
            mine = result["result"]["observed_value"]
            assert mine == (None if expected is None else pytest.approx(expected, rel=1e-9))
            for side in ("observed_partition", "expected_partition"):
                gx_side = theirs["result"]["details"][side]
                my_side = result["result"]["details"][side]
                assert dict(zip(my_side["values"], my_side["weights"], strict=True)) == (
                    pytest.approx(dict(zip(gx_side["values"], gx_side["weights"], strict=True)))
                )
