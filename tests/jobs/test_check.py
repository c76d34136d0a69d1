"""The check stage on a real DuckDB file: severities, history, our own expectations, bad input."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from duckherd.summary import decode
from duckherd_jobs.check.config import CheckConfigError
from duckherd_jobs.check.stage import CheckComputeError, CheckTargetError
from duckherd_jobs.runner import run_stage_cli
from tests import pipelines
from tests.jobs.check_support import COLUMNS, check, check_stage, make_warehouse, query

NOT_NULL = "expect_column_values_to_not_be_null"
UNIQUE = "expect_column_values_to_be_unique"
BETWEEN = "expect_column_values_to_be_between"
ROW_COUNT_CHANGE = "expect_table_row_count_change_to_be_within"
MAX_RECENT = "expect_column_max_to_be_recent"


def _check(expectation: str, severity: str = "error", **kwargs: Any) -> dict[str, Any]:
    return {
        "table": "customers",
        "expectation": expectation,
        "kwargs": kwargs,
        "severity": severity,
    }


def _history(warehouse: Path) -> list[tuple[Any, ...]]:
    if not query(warehouse, "SELECT 1 FROM duckdb_tables() WHERE schema_name = '_duckherd'"):
        return []
    return query(
        warehouse,
        "SELECT run_id, name, table_name, expectation, severity, success, observed_value "
        "FROM _duckherd.checks ORDER BY checked_at, rowid",
    )


def _fingerprint(warehouse: Path) -> list[tuple[Any, ...]]:
    """Every user table and its content hash: what a check stage must never change."""
    tables = query(
        warehouse,
        "SELECT schema_name, table_name FROM duckdb_tables() "
        "WHERE schema_name <> '_duckherd' ORDER BY ALL",
    )
    return [
        (
            schema,
            name,
            query(warehouse, f'SELECT count(*), sum(hash(t)) FROM "{schema}"."{name}" t'),
        )
        for schema, name in tables
    ]


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    return make_warehouse(tmp_path / "warehouse.duckdb")


def test_passing_checks_succeed_and_are_recorded(warehouse: Path) -> None:
    checks = [
        _check(NOT_NULL, column="months_active"),
        _check(UNIQUE, column="months_active"),
        _check(BETWEEN, column="segment", min_value=0, max_value=4),
        _check("expect_table_row_count_to_be_between", min_value=1),
    ]
    summary = check(warehouse, checks)
    assert summary.ok, summary.error
    assert summary.checks is not None
    assert (summary.checks.passed, summary.checks.failed, summary.checks.warned) == (4, 0, 0)
    assert [r.name for r in summary.checks.results] == [
        "customers.months_active:expect_column_values_to_not_be_null",
        "customers.months_active:expect_column_values_to_be_unique",
        "customers.segment:expect_column_values_to_be_between",
        "customers:expect_table_row_count_to_be_between",
    ]
    assert summary.tables["marts.customers"].rows == 200
    history = _history(warehouse)
    assert [(row[0], row[2], row[5]) for row in history] == [("run-1", "marts.customers", True)] * 4
    assert json.loads(history[3][6]) == 200


def test_a_failed_error_check_fails_the_stage_and_names_it(warehouse: Path) -> None:
    before = _fingerprint(warehouse)
    summary = check_stage(
        warehouse,
        [
            _check(UNIQUE, column="customer_id"),
            _check(NOT_NULL, severity="warn", column="email"),
            _check(NOT_NULL, column="months_active"),
        ],
    )
    assert not summary.ok
    assert summary.checks is not None
    assert (summary.checks.passed, summary.checks.failed, summary.checks.warned) == (1, 1, 1)
    assert summary.error is not None
    assert "1 error-severity check(s) failed" in summary.error
    assert "customers.customer_id:expect_column_values_to_be_unique" in summary.error
    assert "3 unexpected of 200" in summary.error  # ids 5, 7 and 8 all read 5
    assert "email" not in summary.error  # a warn failure does not fail the stage
    # History is written even for a failed stage; nothing else changes.
    assert [row[5] for row in _history(warehouse)] == [False, False, True]
    assert _fingerprint(warehouse) == before
    runs = query(warehouse, "SELECT stage, ok FROM _duckherd.runs")
    assert runs == [("check", False)]


def test_warn_failures_are_reported_but_the_stage_succeeds(warehouse: Path) -> None:
    summary = check_stage(
        warehouse, [_check(BETWEEN, severity="warn", column="revenue", min_value=0)]
    )
    assert summary.ok, summary.error
    assert summary.checks is not None
    assert summary.checks.warned == 1
    result = summary.checks.results[0]
    assert (result.success, result.severity) == (False, "warn")
    assert result.observed == "5 unexpected of 194 (2.58%)"


def test_the_stored_result_is_a_gx_validation_result(warehouse: Path) -> None:
    check(warehouse, [_check(BETWEEN, column="revenue", min_value=0, mostly=0.9, severity="warn")])
    stored = json.loads(query(warehouse, "SELECT result FROM _duckherd.checks")[0][0])
    assert stored["success"] is True
    assert stored["expectation_config"] == {
        "type": BETWEEN,
        "kwargs": {"column": "revenue", "min_value": 0.0, "mostly": 0.9},
        "meta": {},
        "severity": "warning",
    }
    assert stored["result"]["unexpected_count"] == 5
    assert sorted(stored["result"]["partial_unexpected_list"]) == [-10.5] * 5
    assert stored["meta"]["row_count"] == 200
    assert stored["exception_info"]["raised_exception"] is False


def test_row_count_change_compares_with_the_previous_run(warehouse: Path) -> None:
    checks = [_check(ROW_COUNT_CHANGE, max_change_pct=10)]
    first = check(warehouse, checks, run_id="run-1")
    assert first.ok
    assert first.checks is not None
    assert first.checks.results[0].observed == "no previous run"

    with duckdb.connect(str(warehouse)) as connection:
        connection.execute("INSERT INTO marts.customers SELECT * FROM marts.customers LIMIT 10")
    grown = check(warehouse, checks, run_id="run-2")
    assert grown.ok, grown.error
    assert grown.checks is not None
    assert grown.checks.results[0].observed == "+5.00% (200 -> 210 rows)"

    with duckdb.connect(str(warehouse)) as connection:
        connection.execute("DELETE FROM marts.customers WHERE customer_id > 150")
    shrunk = check(warehouse, checks, run_id="run-3")
    assert not shrunk.ok
    assert shrunk.checks is not None
    assert shrunk.checks.results[0].observed == "-23.81% (210 -> 160 rows)"
    assert [json.loads(row[6]) for row in _history(warehouse)] == [
        "no previous run",
        pytest.approx(5.0),
        pytest.approx(-23.8095238),
    ]


def test_the_previous_run_is_per_table_and_not_the_current_run(tmp_path: Path) -> None:
    warehouse = make_warehouse(tmp_path / "warehouse.duckdb")
    with duckdb.connect(str(warehouse)) as connection:
        connection.execute("CREATE TABLE marts.orders AS SELECT range AS id FROM range(1000)")
    checks = [
        _check(ROW_COUNT_CHANGE, max_change_pct=1),
        {**_check(ROW_COUNT_CHANGE, max_change_pct=1), "table": "marts.orders"},
    ]
    assert check(warehouse, checks, run_id="run-1").ok
    again = check(warehouse, checks, run_id="run-2")
    assert again.ok, again.error
    assert again.checks is not None
    observed = [result.observed for result in again.checks.results]
    assert observed == ["+0.00% (200 -> 200 rows)", "+0.00% (1000 -> 1000 rows)"]


@pytest.mark.parametrize("column_type", ["TIMESTAMP", "TIMESTAMPTZ", "DATE"])
def test_max_to_be_recent_reads_each_temporal_type(tmp_path: Path, column_type: str) -> None:
    now = datetime.now(UTC)
    fresh, stale = now - timedelta(hours=30), now - timedelta(hours=80)
    literal = "%Y-%m-%d" if column_type == "DATE" else "%Y-%m-%d %H:%M:%S+00"
    warehouse = make_warehouse(
        tmp_path / "warehouse.duckdb",
        f"CREATE SCHEMA marts; CREATE TABLE marts.events AS SELECT * FROM (VALUES "
        f"(CAST('{stale:{literal}}' AS {column_type})), "
        f"(CAST('{fresh:{literal}}' AS {column_type})), (NULL)) AS t(seen_at)",
    )
    checks = [
        {
            "table": "events",
            "expectation": MAX_RECENT,
            "kwargs": {"column": "seen_at", "max_age": age},
        }
        for age in ("72h", "24h")
    ]
    summary = check(warehouse, checks)
    assert summary.checks is not None
    assert [result.success for result in summary.checks.results] == [True, False]
    stored = json.loads(query(warehouse, "SELECT result FROM _duckherd.checks LIMIT 1")[0][0])
    latest = datetime.fromisoformat(stored["result"]["observed_value"])
    expected = fresh.replace(hour=0, minute=0, second=0) if column_type == "DATE" else fresh
    assert abs(latest - expected) < timedelta(seconds=1)


@pytest.mark.parametrize("column_type", ["TIMESTAMP", "TIMESTAMPTZ", "DATE"])
def test_date_bounds_compare_with_each_temporal_type(tmp_path: Path, column_type: str) -> None:
    warehouse = make_warehouse(
        tmp_path / "warehouse.duckdb",
        f"CREATE SCHEMA marts; CREATE TABLE marts.events AS SELECT * FROM (VALUES "
        f"(CAST('2024-03-01' AS {column_type})), (CAST('2024-03-10' AS {column_type}))) "
        "AS t(seen_at)",
    )

    def max_between(**kwargs: Any) -> dict[str, Any]:
        return {
            "table": "events",
            "expectation": "expect_column_max_to_be_between",
            "kwargs": {"column": "seen_at", **kwargs},
        }

    summary = check(
        warehouse,
        [
            max_between(min_value="2024-03-09"),
            max_between(min_value="2024-03-10T00:00:00", strict_min=True),
            max_between(max_value="2024-03-05T12:00:00"),
            {
                "table": "events",
                "expectation": BETWEEN,
                "kwargs": {"column": "seen_at", "min_value": "2024-03-02"},
            },
        ],
    )
    assert summary.checks is not None
    assert [r.success for r in summary.checks.results] == [True, False, False, False]


def test_a_missing_table_is_named_and_nothing_is_recorded(warehouse: Path) -> None:
    checks = [
        _check(NOT_NULL, column="email"),
        {**_check(NOT_NULL, column="x"), "table": "marts.gone"},
    ]
    with pytest.raises(CheckTargetError, match=r"table marts\.gone does not exist"):
        check(warehouse, checks)
    assert _history(warehouse) == []


def test_a_missing_column_is_named(warehouse: Path) -> None:
    with pytest.raises(
        CheckTargetError, match=r"column 'revenu' does not exist in table marts\.customers"
    ):
        check(
            warehouse,
            [_check(NOT_NULL, column="email"), _check(BETWEEN, column="revenu", min_value=0)],
        )
    summary = check_stage(
        warehouse, [_check("expect_compound_columns_to_be_unique", column_list=["segment", "nope"])]
    )
    assert not summary.ok
    assert summary.error is not None
    assert "column 'nope' does not exist" in summary.error
    assert _history(warehouse) == []


@pytest.mark.parametrize(
    ("expectation", "kwargs", "message"),
    [
        (
            BETWEEN,
            {"column": "revenue", "min_value": "cheap"},
            "kwargs.min_value: value is not a valid float",
        ),
        (BETWEEN, {"column": "revenue"}, "min_value and max_value cannot both be None"),
        (
            NOT_NULL,
            {"column": "email", "colour": "red"},
            "kwargs.colour: extra fields not permitted",
        ),
        (UNIQUE, {}, "kwargs.column: field required"),
        (
            ROW_COUNT_CHANGE,
            {"max_change_pct": -1},
            "kwargs.max_change_pct: Input should be greater than or equal to 0",
        ),
        (MAX_RECENT, {"column": "updated_at", "max_age": "1 day"}, "invalid duration '1 day'"),
        (MAX_RECENT, {"column": "updated_at"}, "kwargs.max_age: Field required"),
        (
            "expect_column_values_to_match_regex",
            {"column": "email", "regex": "(unclosed"},
            "kwargs.regex: not a valid regular expression (RE2 syntax)",
        ),
    ],
)
def test_invalid_kwargs_name_the_check_and_field(
    warehouse: Path, expectation: str, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(CheckConfigError) as raised:
        check(warehouse, [_check(NOT_NULL, column="email"), _check(expectation, **kwargs)])
    assert str(raised.value).startswith("quality.checks[1] (customers")
    assert message in str(raised.value)
    assert _history(warehouse) == []


def test_arguments_of_the_wrong_type_for_the_column_name_the_check(warehouse: Path) -> None:
    checks = [
        _check(NOT_NULL, column="email"),
        _check("expect_column_values_to_be_in_set", column="segment", value_set=["gold"]),
    ]
    with pytest.raises(CheckComputeError) as raised:
        check(warehouse, checks)
    message = str(raised.value)
    assert message.startswith(
        "check customers.segment:expect_column_values_to_be_in_set on marts.customers: "
    )
    assert "gold" in message
    assert _history(warehouse) == []


def test_values_are_bound_not_spliced_into_sql(warehouse: Path) -> None:
    hostile = "x' OR 1=1; DROP TABLE marts.customers; --"
    summary = check(
        warehouse,
        [
            _check(
                "expect_column_values_to_be_in_set", column="status", value_set=[hostile, "active"]
            ),
            _check(
                "expect_column_values_to_match_regex",
                column="email",
                regex=hostile,
                severity="warn",
            ),
        ],
    )
    assert summary.checks is not None
    assert [r.success for r in summary.checks.results] == [False, False]
    assert query(warehouse, "SELECT count(*) FROM marts.customers") == [(200,)]


def test_an_invalid_column_identifier_is_refused(warehouse: Path) -> None:
    with pytest.raises(CheckTargetError, match=r"does not exist in table marts\.customers"):
        check(warehouse, [_check(NOT_NULL, column='email" IS NULL OR "1')])


def test_column_names_match_case_insensitively_like_duckdb(warehouse: Path) -> None:
    summary = check(warehouse, [_check(NOT_NULL, column="Months_Active")])
    assert summary.ok, summary.error


def test_any_catalog_column_name_is_quoted_safely(tmp_path: Path) -> None:
    warehouse = make_warehouse(
        tmp_path / "warehouse.duckdb",
        'CREATE SCHEMA marts; CREATE TABLE marts.odd AS SELECT 1 AS "Total ""Net"" Revenue"',
    )
    checks = [
        {
            "table": "odd",
            "expectation": "expect_column_sum_to_be_between",
            "kwargs": {"column": 'total "net" revenue', "min_value": 1, "max_value": 1},
        }
    ]
    summary = check(warehouse, checks)
    assert summary.ok, summary.error


def test_an_empty_table_passes_map_checks_and_fails_aggregates(tmp_path: Path) -> None:
    warehouse = make_warehouse(
        tmp_path / "warehouse.duckdb",
        "CREATE SCHEMA marts; CREATE TABLE marts.customers (customer_id INTEGER, revenue DOUBLE)",
    )
    summary = check(
        warehouse,
        [
            _check(NOT_NULL, column="customer_id"),
            _check(UNIQUE, column="customer_id"),
            _check(
                "expect_column_mean_to_be_between", severity="warn", column="revenue", min_value=0
            ),
        ],
    )
    assert summary.ok
    assert summary.checks is not None
    assert [r.success for r in summary.checks.results] == [True, True, False]
    assert summary.checks.results[2].observed == "no values"


def test_no_checks_is_a_successful_no_op(warehouse: Path) -> None:
    summary = check(warehouse, [])
    assert summary.ok
    assert summary.checks is not None
    assert summary.checks.results == []


def test_the_pod_entry_point_reports_through_the_termination_log(
    warehouse: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = pipelines.manifest(
        sources=[{"name": "customers", "file": {"path": "x.csv", "format": "csv"}}],
        quality={
            "checks": [
                _check(UNIQUE, column="customer_id"),
                _check(NOT_NULL, severity="warn", column="email"),
            ]
        },
    )
    spec_path = tmp_path / "pipeline.yaml"
    spec_path.write_text(json.dumps(manifest))  # JSON is YAML
    termination_log = tmp_path / "termination-log"

    code = run_stage_cli(
        "check",
        spec_path=spec_path,
        warehouse=warehouse,
        termination_log=termination_log,
        run_id="run-7",
    )

    assert code == 1
    summary = decode(termination_log.read_bytes(), stage="check")
    assert (summary.ok, summary.runId) == (False, "run-7")
    assert summary.checks is not None
    assert (summary.checks.failed, summary.checks.warned) == (1, 1)
    assert capsys.readouterr().out.strip().splitlines()[-1] == termination_log.read_text()
    assert {row[0] for row in _history(warehouse)} == {"run-7"}


def test_type_expectations_use_duckdb_type_names(tmp_path: Path) -> None:
    warehouse = make_warehouse(
        tmp_path / "warehouse.duckdb",
        "CREATE SCHEMA marts; CREATE TABLE marts.typed AS SELECT 1.5::DECIMAL(12, 2) AS amount, "
        "1.5::REAL AS ratio, 2.5::DOUBLE AS score, TIMESTAMPTZ '2024-01-01 00:00:00+00' AS seen, "
        "1::TINYINT AS tiny, 1::INTEGER AS n",
    )

    def of_type(column: str, type_: str) -> dict[str, Any]:
        kwargs = {"column": column, "type_": type_}
        return {
            "table": "typed",
            "expectation": "expect_column_values_to_be_of_type",
            "kwargs": kwargs,
            "severity": "warn",
        }

    cases = [
        (of_type("amount", "DECIMAL"), True),  # no parameters: any precision and scale
        (of_type("amount", "decimal(12,2)"), True),
        (of_type("amount", "DECIMAL(18,3)"), False),
        (of_type("ratio", "FLOAT"), True),  # REAL and FLOAT are one DuckDB type
        (of_type("ratio", "DOUBLE"), False),
        (of_type("score", "DOUBLE"), True),
        (of_type("seen", "TIMESTAMPTZ"), True),
        (of_type("seen", "TIMESTAMP"), False),
        (of_type("tiny", "TINYINT"), True),
        (of_type("n", "int"), True),  # DuckDB's aliases resolve to its own name
        (of_type("n", "BIGINT"), False),
        (
            {
                "table": "typed",
                "expectation": "expect_column_values_to_be_in_type_list",
                "kwargs": {"column": "n", "type_list": ["BIGINT", "INTEGER"]},
            },
            True,
        ),
    ]
    summary = check(warehouse, [case for case, _ in cases])
    assert summary.checks is not None
    assert [r.success for r in summary.checks.results] == [expected for _, expected in cases]
    observed = [
        json.loads(row[0])
        for row in query(warehouse, "SELECT observed_value FROM _duckherd.checks ORDER BY rowid")
    ]
    assert observed[:4] == ["DECIMAL(12,2)", "DECIMAL(12,2)", "DECIMAL(12,2)", "FLOAT"]
    assert observed[6] == "TIMESTAMP WITH TIME ZONE"


def test_an_unknown_type_name_is_refused_before_any_work(warehouse: Path) -> None:
    with pytest.raises(CheckConfigError, match=r"kwargs\.type_: not a DuckDB type name: 'INTEGR'"):
        check(warehouse, [_check("expect_column_values_to_be_of_type", column="n", type_="INTEGR")])
    with pytest.raises(CheckConfigError, match=r"kwargs\.type_list: not a DuckDB type name"):
        check(
            warehouse,
            [
                _check(
                    "expect_column_values_to_be_in_type_list",
                    column="n",
                    type_list=["INTEGER", "INT); DROP TABLE x; --"],
                )
            ],
        )
    assert _history(warehouse) == []


def test_column_to_exist_fails_the_check_not_the_stage_for_a_missing_column(
    warehouse: Path,
) -> None:
    summary = check_stage(
        warehouse,
        [
            _check("expect_column_to_exist", column="email"),
            _check("expect_column_to_exist", severity="warn", column="loyalty_tier"),
            _check("expect_table_columns_to_match_ordered_list", column_list=["gone"]),
        ],
    )
    assert summary.checks is not None
    assert [r.success for r in summary.checks.results] == [True, False, False]
    assert summary.checks.results[1].observed == "loyalty_tier: absent"
    assert not summary.ok
    with pytest.raises(CheckTargetError, match="column 'gone' does not exist"):
        check(warehouse, [_check("expect_column_values_to_be_of_type", column="gone", type_="INT")])


ORDERS_SQL = """
CREATE TABLE marts.orders AS SELECT * FROM (VALUES
    (1, 1, 5), (2, 2, 0), (3, 999, 1), (4, NULL, 2), (5, 999, 2), (6, 998, 4), (7, 3, NULL)
) AS t(order_id, customer_id, segment);
"""
EXIST_IN_TABLE = "expect_column_values_to_exist_in_table"


def _orders_check(severity: str = "error", **kwargs: Any) -> dict[str, Any]:
    return {
        "table": "orders",
        "expectation": EXIST_IN_TABLE,
        "kwargs": kwargs,
        "severity": severity,
    }


def test_referential_integrity_counts_orphans_and_samples_them(warehouse: Path) -> None:
    with duckdb.connect(str(warehouse)) as connection:
        connection.execute(ORDERS_SQL)
    summary = check_stage(
        warehouse,
        [
            _orders_check(column="customer_id", to_table="customers"),
            _orders_check(column="order_id", to_table="marts.customers", to_column="Months_Active"),
            _orders_check("warn", column="customer_id", to_table="customers", mostly=0.5),
        ],
    )
    assert summary.checks is not None
    assert [r.success for r in summary.checks.results] == [False, True, True]
    assert summary.checks.results[0].observed == (
        "3 orphan(s) of 6 not in marts.customers(customer_id)"
    )
    stored = json.loads(query(warehouse, "SELECT result FROM _duckherd.checks LIMIT 1")[0][0])
    result = stored["result"]
    # dbt's relationships: NULL keys are not checked (GX's missing), orphans are unexpected.
    assert (result["element_count"], result["missing_count"], result["unexpected_count"]) == (
        7,
        1,
        3,
    )
    assert sorted(result["partial_unexpected_list"]) == [998, 999, 999]
    assert result["partial_unexpected_counts"] == [
        {"value": 999, "count": 2},
        {"value": 998, "count": 1},
    ]
    assert result["details"] == {"to": "marts.customers(customer_id)", "orphan_count": 3}
    assert not summary.ok
    assert summary.error is not None and "3 orphan(s)" in summary.error


def test_referential_integrity_on_a_composite_key(warehouse: Path) -> None:
    with duckdb.connect(str(warehouse)) as connection:
        connection.execute(ORDERS_SQL)
    summary = check(
        warehouse,
        [
            _orders_check(
                "warn",
                column_list=["customer_id", "segment"],
                to_table="customers",
                to_column_list=["customer_id", "segment"],
            )
        ],
    )
    stored = json.loads(query(warehouse, "SELECT result FROM _duckherd.checks")[0][0])
    result = stored["result"]
    # (1, 5): customer 1 has segment 1; (2, 0): customer 2 has segment 2; 999 and 998 do not
    # exist; (3, NULL) and (NULL, 2) are not checked.
    assert (result["missing_count"], result["unexpected_count"]) == (2, 5)
    assert {"customer_id": 1, "segment": 5} in result["partial_unexpected_list"]
    assert summary.checks is not None and not summary.checks.results[0].success


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"column": "customer_id", "to_table": "gone"}, CheckTargetError, "marts.gone does not"),
        (
            {"column": "customer_id", "to_table": "customers", "to_column": "nope"},
            CheckTargetError,
            "column 'nope' does not exist in related table marts.customers",
        ),
        ({"to_table": "customers"}, CheckConfigError, "give either column or column_list"),
        (
            {"column_list": ["customer_id"], "to_table": "customers", "to_column_list": []},
            CheckConfigError,
            "kwargs.to_column_list",
        ),
        (
            {"column": "customer_id", "to_table": "Customers; DROP"},
            CheckConfigError,
            "kwargs.to_table",
        ),
        (
            {"column": "customer_id", "to_table": "customers", "to_column": "email"},
            CheckComputeError,
            "on marts.orders",
        ),
    ],
)
def test_referential_integrity_bad_input_is_named(
    warehouse: Path, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with duckdb.connect(str(warehouse)) as connection:
        connection.execute(ORDERS_SQL)
    with pytest.raises(error, match=message):
        check(warehouse, [_orders_check(**kwargs)])
    assert _history(warehouse) == []


DRIFT = "expect_column_drift_to_be_within"
KL = "expect_column_kl_divergence_to_previous_runs_to_be_less_than"


def _observed(warehouse: Path, run_id: str) -> list[Any]:
    rows = query(
        warehouse,
        "SELECT observed_value FROM _duckherd.checks WHERE run_id = ? ORDER BY rowid",
        [run_id],
    )
    return [json.loads(row[0]) for row in rows]


def test_drift_compares_with_the_last_runs_that_passed(warehouse: Path) -> None:
    checks = [
        _check(DRIFT, column="revenue", max_mean_change_pct=10, max_null_fraction_change=0.05),
        _check(DRIFT, severity="warn", column="status", max_null_fraction_change=0.01),
    ]
    first = check(warehouse, checks, run_id="run-1")
    assert first.ok and first.checks is not None
    assert [r.observed for r in first.checks.results] == ["no baseline", "no baseline"]

    same = check(warehouse, checks, run_id="run-2")
    assert same.ok, same.error

    # Every value still in range, the same row count, the mean 20% higher: only drift sees it.
    with duckdb.connect(str(warehouse)) as connection:
        connection.execute("UPDATE marts.customers SET revenue = revenue * 1.2")
    shifted = check(warehouse, checks, run_id="run-3")
    assert not shifted.ok
    assert shifted.checks is not None
    assert [r.success for r in shifted.checks.results] == [False, True]
    assert (shifted.checks.results[0].observed or "").startswith("mean_change_pct 20 > 10")
    stored = json.loads(
        query(warehouse, "SELECT result FROM _duckherd.checks WHERE run_id = 'run-3' LIMIT 1")[0][0]
    )
    details = stored["result"]["details"]
    assert details["baseline_runs"] == ["run-2", "run-1"]
    assert details["exceeded"] == ["mean_change_pct"]
    assert details["changes"]["mean_change_pct"] == pytest.approx(20.0)
    assert details["changes"]["null_fraction_change"] == pytest.approx(0.0)

    # The failed run is no baseline: the next run still compares with runs 1 and 2.
    again = check(warehouse, checks, run_id="run-4")
    assert not again.ok
    baseline_runs = json.loads(
        query(
            warehouse,
            "SELECT result->'$.result.details.baseline_runs' FROM _duckherd.checks "
            "WHERE run_id = 'run-4' LIMIT 1",
        )[0][0]
    )
    assert baseline_runs == ["run-2", "run-1"]


def test_every_checked_table_is_profiled_once_per_run(warehouse: Path) -> None:
    check(warehouse, [_check(DRIFT, column="revenue", max_stddev_change_pct=5)], run_id="run-1")
    rows = query(
        warehouse,
        "SELECT column_name, ok, row_count, profile FROM _duckherd.profiles ORDER BY rowid",
    )
    profiles = {row[0]: json.loads(row[3]) for row in rows}
    assert list(profiles) == COLUMNS
    assert {(row[1], row[2]) for row in rows} == {(True, 200)}
    revenue = profiles["revenue"]
    assert revenue["null_fraction"] == pytest.approx(6 / 200)
    assert revenue["min"] == -10.5 and revenue["max"] == 2450.0
    assert revenue["mean"] == pytest.approx(
        query(warehouse, "SELECT avg(revenue) FROM marts.customers")[0][0]
    )
    assert len(revenue["quantiles"]) == 5 and revenue["distinct"] > 100
    assert set(profiles["email"]) == {"type", "min", "max", "null_fraction"}  # not watched


def test_kl_divergence_against_previous_runs(warehouse: Path) -> None:
    checks = [
        _check(KL, column="status", threshold=0.05),
        _check(KL, severity="warn", column="status", threshold=0.05, tail_weight_holdout=0.01),
    ]
    assert check(warehouse, checks, run_id="run-1").ok
    assert check(warehouse, checks, run_id="run-2").ok
    assert _observed(warehouse, "run-2") == [0.0, 0.0]
    with duckdb.connect(str(warehouse)) as connection:
        connection.execute(
            "UPDATE marts.customers SET status = 'paused' WHERE customer_id % 10 = 1"
        )
    shifted = check(warehouse, checks, run_id="run-3")
    assert shifted.checks is not None
    assert [r.success for r in shifted.checks.results] == [False, False]
    assert (shifted.checks.results[0].observed or "").startswith("KL infinite")
    observed = _observed(warehouse, "run-3")
    assert observed[0] is None and observed[1] > 0.05


@pytest.mark.parametrize(
    ("expectation", "kwargs", "message"),
    [
        (DRIFT, {"column": "revenue"}, "give at least one of max_mean_change_pct"),
        (DRIFT, {"column": "revenue", "max_mean_change_pct": -1}, "kwargs.max_mean_change_pct"),
        (KL, {"column": "status"}, "kwargs.threshold"),
        (KL, {"column": "status", "threshold": 1, "runs": 0}, "kwargs.runs"),
    ],
)
def test_drift_arguments_are_validated(
    warehouse: Path, expectation: str, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(CheckConfigError, match=message):
        check(warehouse, [_check(expectation, **kwargs)])


def test_mean_drift_on_text_is_refused_naming_the_column(warehouse: Path) -> None:
    with pytest.raises(CheckTargetError, match="column 'status' is VARCHAR; mean and stddev"):
        check(warehouse, [_check(DRIFT, column="status", max_mean_change_pct=1)])
