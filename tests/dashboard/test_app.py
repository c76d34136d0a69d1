"""The dashboard's logic with Streamlit's own test runner, over real PostgreSQL and Redis.

Each test publishes with the real publish stage (see conftest), runs the app script through
`streamlit.testing.v1.AppTest` and reads what it rendered.
"""

from __future__ import annotations

import psycopg2
import pytest
from streamlit.testing.v1 import AppTest

from tests.dashboard.serving import APP, Serving

pytestmark = pytest.mark.services


def run_app(serving: Serving, monkeypatch: pytest.MonkeyPatch, **overrides: str) -> AppTest:
    for name, value in {**serving.dashboard_env(), **overrides}.items():
        monkeypatch.setenv(name, value)
    app = AppTest.from_file(str(APP), default_timeout=60)
    app.run()
    assert not app.exception, [error.message for error in app.exception]
    return app


def metrics(app: AppTest) -> dict[str, str]:
    return {metric.label: metric.value for metric in app.metric}


def test_the_totals_are_the_published_tables(
    serving: Serving, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert serving.publish("20261202t060000-aaaaaa", rows=500).ok

    app = run_app(serving, monkeypatch)

    customers, total, average, with_ltv = serving.query(
        "SELECT count(*), sum(monthly_ltv), avg(monthly_ltv), count(monthly_ltv) "
        "FROM analytics.customer_analytics"
    )
    assert customers == 500
    assert with_ltv == 480  # every 25th customer is younger than a month
    shown = metrics(app)
    assert shown["Customers"] == "500"
    assert shown["Total monthly LTV"] == f"{total:,.0f}"
    assert shown["Average monthly LTV"] == f"{average:,.2f}"
    (banner,) = app.success
    assert "run `20261202t060000-aaaaaa`" in banner.value
    assert "500 rows" in banner.value


def test_the_distribution_counts_every_customer_with_a_monthly_ltv_once(
    serving: Serving, monkeypatch: pytest.MonkeyPatch
) -> None:
    from serving_layer import read_mart_summary

    assert serving.publish("20261202t060000-aaaaaa", rows=500).ok
    summary = read_mart_summary(serving.dsn, "analytics.customer_analytics")

    assert sum(bucket.customers for bucket in summary.distribution) == summary.with_ltv == 480
    assert summary.distribution[0].low == 0
    (highest,) = serving.query("SELECT max(monthly_ltv) FROM analytics.customer_analytics")
    assert summary.distribution[-1].low <= float(highest) < summary.distribution[-1].high  # type: ignore[arg-type]
    top_ids = [row["customer_id"] for row in summary.top]
    expected = serving.query(
        "SELECT array_agg(customer_id) FROM (SELECT customer_id FROM analytics.customer_analytics "
        "WHERE monthly_ltv IS NOT NULL ORDER BY monthly_ltv DESC, customer_id LIMIT 10) t"
    )
    assert top_ids == expected[0]
    assert summary.run_id == "20261202t060000-aaaaaa"


def test_a_customer_is_looked_up_in_the_redis_hash(
    serving: Serving, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert serving.publish("20261202t060000-aaaaaa", rows=300).ok
    app = run_app(serving, monkeypatch)

    app.text_input(key="customer_id").input(" 42 ").run()

    name, ltv = serving.query(
        "SELECT customer_name, monthly_ltv FROM analytics.customer_analytics WHERE customer_id = 42"
    )
    assert any(f"**{name}** · customer 42" in text.value for text in app.markdown)
    assert metrics(app)["Monthly LTV"] == f"{ltv:,.2f}"

    app.text_input(key="customer_id").input("999999").run()

    assert [info.value for info in app.info] == ["No customer 999999 in the published mart."]


def test_figures_are_cached_until_a_new_version_is_published(
    serving: Serving, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert serving.publish("20261202t060000-aaaaaa", rows=400).ok
    app = run_app(serving, monkeypatch)
    assert metrics(app)["Customers"] == "400"

    # The table changes behind the dashboard's back, with no new publish: still the cache.
    with psycopg2.connect(serving.dsn) as connection, connection.cursor() as cursor:
        cursor.execute("DELETE FROM analytics.customer_analytics WHERE customer_id > 100")
    connection.close()
    app.run()
    assert metrics(app)["Customers"] == "400"

    # A publish writes a new version: the next run reads the new table.
    assert serving.publish("20261202t070000-bbbbbb", rows=450).ok
    app.run()
    assert metrics(app)["Customers"] == "450"
    assert "run `20261202t070000-bbbbbb`" in app.success[0].value


def test_a_blocked_publish_leaves_the_previous_version_on_show(
    serving: Serving, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert serving.publish("20261202t060000-aaaaaa", rows=400).ok
    app = run_app(serving, monkeypatch)

    blocked = serving.publish("20261203t060000-cccccc", rows=420, checks_pass=False)
    app.run()

    assert blocked.blocked
    assert metrics(app)["Customers"] == "400"
    assert "run `20261202t060000-aaaaaa`" in app.success[0].value
    assert "published **under a minute ago**" in app.success[0].value


@pytest.mark.parametrize(
    ("warn_after", "error_after", "level", "words"),
    [
        ("26h", "48h", "success", "Fresh:"),
        ("0s", "48h", "warning", "Late (older than 0 seconds):"),
        ("0s", "0s", "error", "Stale (older than 0 seconds):"),
    ],
)
def test_the_banner_turns_amber_then_red_past_the_pipelines_thresholds(
    serving: Serving,
    monkeypatch: pytest.MonkeyPatch,
    warn_after: str,
    error_after: str,
    level: str,
    words: str,
) -> None:
    assert serving.publish("20261202t060000-aaaaaa", rows=50).ok

    app = run_app(
        serving, monkeypatch, DASHBOARD_WARN_AFTER=warn_after, DASHBOARD_ERROR_AFTER=error_after
    )

    banners = {
        kind: [e.value for e in getattr(app, kind)] for kind in ("success", "warning", "error")
    }
    (banner,) = banners.pop(level)
    assert banner.startswith(words)
    assert "run `20261202t060000-aaaaaa`" in banner
    assert banners == {kind: [] for kind in banners}


def test_postgresql_behind_redis_is_said_and_not_cached(
    serving: Serving, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert serving.publish("20261202t060000-aaaaaa", rows=400).ok
    assert serving.publish("20261202t070000-bbbbbb", rows=410, redis_only=True).ok

    app = run_app(serving, monkeypatch)

    (warning,) = app.warning
    assert warning.value.startswith(
        "PostgreSQL serves run 20261202t060000-aaaaaa, Redis run 20261202t070000-bbbbbb"
    )
    assert metrics(app)["Customers"] == "400"

    assert serving.publish("20261202t080000-dddddd", rows=420).ok  # PostgreSQL catches up
    app.run()
    assert not app.warning
    assert metrics(app)["Customers"] == "420"


def test_nothing_published_is_an_error_naming_the_key(
    serving: Serving, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = run_app(serving, monkeypatch)

    (error,) = app.error
    assert error.value.startswith(
        "Nothing published: Redis has no "
        "duckherd:default:customer-analytics:marts.customer_analytics:meta"
    )
    assert not app.metric


def test_a_missing_setting_is_named_in_one_line(
    serving: Serving, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DASHBOARD_REDIS_URL", raising=False)
    env = serving.dashboard_env()
    del env["DASHBOARD_REDIS_URL"]
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    app = AppTest.from_file(str(APP), default_timeout=60).run()

    assert [error.value for error in app.error] == [
        "Dashboard configuration: DASHBOARD_REDIS_URL is not set"
    ]


def test_an_unreachable_database_is_said_without_its_password(
    serving: Serving, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert serving.publish("20261202t060000-aaaaaa", rows=50).ok
    wrong = serving.dsn.replace(serving.postgres.password, "not-the-password")

    app = run_app(serving, monkeypatch, DASHBOARD_POSTGRES_DSN=wrong)

    (error,) = app.error
    assert error.value.startswith("Cannot read analytics.customer_analytics: OperationalError")
    assert "not-the-password" not in error.value
