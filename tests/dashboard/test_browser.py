"""The dashboard in a real headless Chromium, served by a real Streamlit server on loopback.

The mart is published by the real publish stage to real PostgreSQL and Redis; the page must
show the mart's customer count and average monthly LTV, answer a customer lookup from Redis,
and, after a publish the quality gate blocked, still show the previous version and its age.
Screenshots land in artifacts/ (or $DUCKHERD_ARTIFACTS); their paths are printed.
"""

from __future__ import annotations

import os

import pytest

from tests.dashboard.browser import DashboardPage, chromium, running, streamlit_command
from tests.dashboard.serving import APP, Serving
from tests.services import free_port

pytestmark = pytest.mark.services


def test_a_person_reads_the_mart_looks_up_a_customer_and_sees_a_blocked_publish(
    serving: Serving, tmp_path: os.PathLike[str]
) -> None:
    first = serving.publish("20261202t060000-aaaaaa", rows=2000)
    assert first.ok, first.error
    customers, average = serving.query(
        "SELECT count(*), avg(monthly_ltv) FROM analytics.customer_analytics"
    )
    customer_id, name = serving.query(
        "SELECT customer_id, customer_name FROM analytics.customer_analytics "
        "WHERE monthly_ltv IS NOT NULL ORDER BY monthly_ltv DESC LIMIT 1"
    )
    port = free_port()
    env = {**os.environ, **serving.dashboard_env()}
    log = serving.warehouse.with_name("streamlit.log")

    with (
        running(streamlit_command(APP, port), env, f"http://127.0.0.1:{port}", log) as url,
        chromium() as driver,
    ):
        page = DashboardPage(driver)
        page.open(url)
        totals = page.rendered_totals()
        assert totals["Customers"] == f"{customers:,}" == "2,000"
        assert totals["Average monthly LTV"] == f"{average:,.2f}"
        shown_before = page.banner()
        assert "run 20261202t060000-aaaaaa" in shown_before
        assert "2,000 rows" in shown_before

        answer = page.look_up(str(customer_id))
        assert str(name) in answer
        page.screenshot("dashboard.png")

        blocked = serving.publish("20261203t060000-bbbbbb", rows=2100, checks_pass=False)
        assert blocked.blocked
        page.open(url)  # a reload: a new session, nothing kept from the page before
        totals = page.rendered_totals()
        assert totals["Customers"] == "2,000"
        shown_after = page.banner()
        assert shown_after.startswith("Fresh: published")
        assert " ago (" in shown_after
        assert "run 20261202t060000-aaaaaa" in shown_after
        assert shown_after.split("· version ")[1] == shown_before.split("· version ")[1]
        page.screenshot("dashboard-after-blocked-publish.png")
