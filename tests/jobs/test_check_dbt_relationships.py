"""Referential integrity means what dbt's `relationships` test means: same data, same orphans.

A small dbt project builds a parent and a child table (NULL keys, orphans, a composite key is
not dbt's, so single keys only) and runs dbt's own `relationships` test at warn severity; the
check stage's `expect_column_values_to_exist_in_table` on the same tables must count the same
failing rows.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from duckherd_jobs.runner import run_stage
from tests.jobs.check_support import check, query
from tests.jobs.test_transform import DBT_PROJECT, context

PARENTS_SQL = "select range as customer_id from range(1, 51)"
CHILDREN_SQL = """
select range as order_id,
    case when range % 7 = 0 then null when range % 11 = 0 then 1000 + range
        else 1 + range % 50 end as customer_id
from range(1, 301)
"""
SCHEMA_YML = """
version: 2
models:
  - name: orders
    columns:
      - name: customer_id
        data_tests:
          - relationships:
              arguments:
                to: ref('customers')
                field: customer_id
              config:
                severity: warn
"""


def write_project(root: Path) -> Path:
    project = root / "project"
    (project / "models" / "marts").mkdir(parents=True)
    shutil.copytree(DBT_PROJECT / "macros", project / "macros")
    shutil.copy(DBT_PROJECT / "dbt_project.yml", project / "dbt_project.yml")
    (project / "models" / "marts" / "customers.sql").write_text(PARENTS_SQL)
    (project / "models" / "marts" / "orders.sql").write_text(CHILDREN_SQL)
    (project / "models" / "marts" / "_marts.yml").write_text(SCHEMA_YML)
    return project


def test_orphans_equal_dbts_relationships_failures(tmp_path: Path) -> None:
    project = write_project(tmp_path)
    ctx = context(tmp_path, {"project": {"path": str(project)}})
    transformed = run_stage("transform", ctx)
    assert transformed.ok, transformed.error
    assert transformed.checks is not None
    (dbt_result,) = transformed.checks.results
    dbt_failures = json.loads(
        query(
            ctx.warehouse,
            "SELECT observed_value FROM _duckherd.checks WHERE expectation = 'dbt_test'",
        )[0][0]
    )

    check(
        ctx.warehouse,
        [
            {
                "table": "orders",
                "expectation": "expect_column_values_to_exist_in_table",
                "kwargs": {"column": "customer_id", "to_table": "customers"},
                "severity": "warn",
            }
        ],
        run_id="check-1",
    )
    ours = json.loads(
        query(
            ctx.warehouse,
            "SELECT result FROM _duckherd.checks WHERE expectation <> 'dbt_test'",
        )[0][0]
    )

    orphans = sum(1 for i in range(1, 301) if i % 7 != 0 and i % 11 == 0)
    assert dbt_failures == ours["result"]["unexpected_count"] == orphans
    assert not dbt_result.success and not ours["success"]
    assert ours["result"]["missing_count"] == 300 // 7  # NULL keys: not checked by either
