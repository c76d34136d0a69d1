"""The sales team's dashboard: marts.customer_analytics as the publish stage serves it.

    streamlit run examples/customer-analytics/dashboard/app.py   (or: make dashboard)

Settings come from the environment (see serving_layer.Settings and docs/dashboard.md).
Aggregates are read from the PostgreSQL table and cached per published version: every rerun
(and every DASHBOARD_REFRESH_SECONDS) reads only the small `<prefix>:meta` document from
Redis, and a new `version` there reads the table again.
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import humanize
import psycopg2
import redis
import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent))  # serving_layer, however we are run

from serving_layer import (
    ConfigError,
    MartSummary,
    PublishMeta,
    Settings,
    freshness,
    lookup_customer,
    read_mart_summary,
    read_meta,
)

from duckherd_jobs.redaction import describe_error

NOTHING = "\N{EN DASH}"  # a figure that does not exist (no customer old enough for an LTV)


@st.cache_resource
def redis_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=10)


@st.cache_data(max_entries=4, show_spinner="Reading the published mart…")
def mart_summary(table: str, version: str, _dsn: str) -> MartSummary:
    """Cached per published version: a publish writes a new `version`, which reads again."""
    return read_mart_summary(_dsn, table)


def show_freshness(meta: PublishMeta, settings: Settings) -> None:
    judged = freshness(
        meta.published_at, datetime.now(UTC), settings.warn_after, settings.error_after
    )
    published_at = meta.published_at.astimezone(UTC)
    served = (
        f"published **{judged.age_text} ago** ({published_at:%Y-%m-%d %H:%M} UTC) · "
        f"run `{meta.run_id}` · version `{meta.version}` · {meta.rows:,} rows"
    )
    with st.container(key="freshness"):
        if judged.level == "fresh":
            st.success(f"Fresh: {served}", icon=":material/check_circle:")
        elif judged.level == "warn":
            limit = humanize.precisedelta(settings.warn_after)
            st.warning(f"Late (older than {limit}): {served}", icon=":material/warning:")
        else:
            limit = humanize.precisedelta(settings.error_after)
            st.error(f"Stale (older than {limit}): {served}", icon=":material/error:")


def show_totals(summary: MartSummary) -> None:
    average = summary.average_monthly_ltv
    with st.container(key="totals"):
        customers, total, mean = st.columns(3)
        customers.metric("Customers", f"{summary.customers:,}")
        total.metric("Total monthly LTV", f"{summary.total_monthly_ltv:,.0f}")
        mean.metric(
            "Average monthly LTV",
            NOTHING if average is None else f"{average:,.2f}",
            help=f"Over the {summary.with_ltv:,} customers active for at least a month",
        )


def show_distribution(summary: MartSummary) -> None:
    st.subheader("Monthly LTV distribution")
    if not summary.distribution:
        st.info("No customer has a monthly LTV yet.")
        return
    bands = {
        "Monthly LTV": [bucket.label for bucket in summary.distribution],
        "Customers": [bucket.customers for bucket in summary.distribution],
    }
    st.bar_chart(bands, x="Monthly LTV", y="Customers", sort=False, height=320)
    st.caption(
        f"Customers per monthly LTV band ({summary.with_ltv:,} customers active for at least "
        "a month; the bands widen tenfold every three bars)."
    )


def show_top(summary: MartSummary) -> None:
    st.subheader("Top customers by monthly LTV")
    if not summary.top:
        st.info("No customer has a monthly LTV yet.")
        return
    st.dataframe(
        list(summary.top),
        hide_index=True,
        column_config={
            "customer_id": st.column_config.NumberColumn("Id", format="%d"),
            "customer_name": "Customer",
            "segment": "Segment",
            "country": "Country",
            "monthly_ltv": st.column_config.NumberColumn("Monthly LTV", format="%.2f"),
        },
    )


def show_served(settings: Settings) -> None:
    """Freshness, totals, distribution and top customers of the version Redis announces."""
    try:
        meta = read_meta(redis_client(settings.redis_url), settings.redis_prefix)
    except redis.RedisError as error:
        st.error(f"Cannot read the publish metadata from Redis: {_say(error, settings)}")
        return
    if meta is None:
        st.error(
            f"Nothing published: Redis has no {settings.redis_prefix}:meta (the pipeline has not "
            "published yet, or its publish expired after ttlSeconds)."
        )
        return
    show_freshness(meta, settings)
    try:
        summary = mart_summary(settings.postgres_table, meta.version, settings.postgres_dsn)
    except psycopg2.Error as error:
        st.error(f"Cannot read {settings.postgres_table}: {_say(error, settings)}")
        return
    if summary.run_id != meta.run_id:
        mart_summary.clear()  # not this version's table: read again at the next rerun
        st.warning(
            f"PostgreSQL serves run {summary.run_id}, Redis run {meta.run_id}: a publish is "
            "under way or one of its targets failed. The figures come from PostgreSQL."
        )
    show_totals(summary)
    distribution, top = st.columns(2)
    with distribution:
        show_distribution(summary)
    with top:
        show_top(summary)


def show_lookup(settings: Settings) -> None:
    st.subheader("Look up a customer")
    customer_id = st.text_input("Customer id", placeholder="e.g. 42", key="customer_id").strip()
    if not customer_id:
        return
    try:
        row = lookup_customer(redis_client(settings.redis_url), settings.redis_prefix, customer_id)
    except redis.RedisError as error:
        st.error(f"Cannot look the customer up in Redis: {_say(error, settings)}")
        return
    with st.container(key="lookup"):
        if row is None:
            st.info(f"No customer {customer_id} in the published mart.")
            return
        st.markdown(
            f"**{row.get('customer_name')}** · customer {row.get('customer_id')} · "
            f"{row.get('segment')} · {row.get('country')}"
        )
        ltv, revenue, orders, months = st.columns(4)
        monthly_ltv = row.get("monthly_ltv")
        ltv.metric("Monthly LTV", NOTHING if monthly_ltv is None else f"{monthly_ltv:,.2f}")
        revenue.metric("Total revenue", f"{float(row.get('total_revenue') or 0):,.2f}")
        orders.metric("Orders", f"{row.get('orders_count')}")
        months.metric("Months active", f"{row.get('months_active')}")
        with st.expander("Every field"):
            st.json(row)


def _say(error: BaseException, settings: Settings) -> str:
    return describe_error(error, [settings.postgres_dsn, settings.redis_url])


def main() -> None:
    st.set_page_config(page_title="Customer analytics", page_icon="🦆", layout="wide")
    st.title("Customer analytics")
    st.caption(
        "Lifetime value of every customer, as the customer-analytics pipeline publishes it "
        "after its quality checks pass (daily, by 08:00)."
    )
    try:
        settings = Settings.from_env(os.environ)
    except ConfigError as error:
        st.error(f"Dashboard configuration: {error}")
        return
    st.fragment(show_served, run_every=settings.refresh_seconds)(settings)
    show_lookup(settings)


main()
