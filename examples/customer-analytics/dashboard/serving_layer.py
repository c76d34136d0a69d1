"""What the sales dashboard reads: the published mart, never the warehouse.

The publish stage serves `marts.customer_analytics` twice (see jobs/duckherd_jobs/publish):
a PostgreSQL table, swapped in atomically (its COMMENT names the run that published it), and
a Redis hash of one JSON document per customer next to a `<prefix>:meta` document (`version`,
`runId`, `rows`, `publishedAt`, ...). The dashboard aggregates the PostgreSQL table, looks
single customers up in the Redis hash, and judges freshness from the metadata.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import humanize
import psycopg2
import redis
from psycopg2 import sql

from duckherd.api import DataPipeline, parse_duration
from duckherd_jobs.publish.redis_target import default_prefix
from duckherd_jobs.sql import table_name

TOP_CUSTOMERS = 10
_COMMENT_RUN = re.compile(r"\brun (\S+), at (\S+)$")  # postgres_target's table COMMENT


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the environment variable."""


@dataclass(frozen=True)
class Settings:
    postgres_dsn: str
    postgres_table: str  # `schema.table`
    redis_url: str
    redis_prefix: str
    warn_after: timedelta
    error_after: timedelta
    refresh_seconds: int

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        warn_after = _duration(env, "DASHBOARD_WARN_AFTER")
        error_after = _duration(env, "DASHBOARD_ERROR_AFTER")
        if error_after < warn_after:
            raise ConfigError("DASHBOARD_ERROR_AFTER must not be shorter than DASHBOARD_WARN_AFTER")
        table = env.get("DASHBOARD_POSTGRES_TABLE", "analytics.customer_analytics")
        if table.count(".") != 1:
            raise ConfigError(f"DASHBOARD_POSTGRES_TABLE: {table!r} is not schema.table")
        refresh = env.get("DASHBOARD_REFRESH_SECONDS", "60")
        if not refresh.isdigit() or int(refresh) < 1:
            raise ConfigError(f"DASHBOARD_REFRESH_SECONDS: {refresh!r} is not a whole number > 0")
        return cls(
            postgres_dsn=_required(env, "DASHBOARD_POSTGRES_DSN"),
            postgres_table=table,
            redis_url=_required(env, "DASHBOARD_REDIS_URL"),
            redis_prefix=_required(env, "DASHBOARD_REDIS_PREFIX"),
            warn_after=warn_after,
            error_after=error_after,
            refresh_seconds=int(refresh),
        )


def settings_from_manifest(pipeline: DataPipeline, table: str, namespace: str) -> dict[str, str]:
    """The non-secret settings for a dashboard over `table`, as the manifest publishes it.

    `namespace` is the pipeline's (`default` in local mode). The two connection settings
    (DASHBOARD_POSTGRES_DSN, DASHBOARD_REDIS_URL) come from the publish Secrets instead.
    """
    mart = table_name(table)
    env: dict[str, str] = {}
    for entry in pipeline.spec.publish:
        if table_name(entry.table) != mart:
            continue
        if entry.redis is not None:
            prefix = entry.redis.keyPrefix or default_prefix(
                namespace, pipeline.metadata.name, mart
            )
            env["DASHBOARD_REDIS_PREFIX"] = prefix
        if entry.postgres is not None:
            name = entry.postgres.table or mart.partition(".")[2]
            env["DASHBOARD_POSTGRES_TABLE"] = f"{entry.postgres.schema_}.{name}"
    if len(env) != 2:
        raise ConfigError(
            f"{pipeline.metadata.name} does not publish {mart} to Redis and PostgreSQL"
        )
    freshness = pipeline.spec.freshness
    if freshness is None or freshness.warnAfter is None or freshness.errorAfter is None:
        raise ConfigError(
            f"{pipeline.metadata.name}: spec.freshness needs warnAfter and errorAfter"
        )
    env["DASHBOARD_WARN_AFTER"] = freshness.warnAfter
    env["DASHBOARD_ERROR_AFTER"] = freshness.errorAfter
    return env


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"{name} is not set")
    return value


def _duration(env: Mapping[str, str], name: str) -> timedelta:
    try:
        return parse_duration(_required(env, name))
    except ValueError as error:
        raise ConfigError(f"{name}: {error}") from None


@dataclass(frozen=True)
class PublishMeta:
    """`<prefix>:meta`, as the publish stage's swap wrote it."""

    version: str
    run_id: str
    rows: int
    published_at: datetime
    table: str


def read_meta(client: redis.Redis, prefix: str) -> PublishMeta | None:
    """The metadata of the version Redis serves; None when nothing is (or is no longer) there."""
    raw = client.get(f"{prefix}:meta")
    if raw is None:
        return None
    document = json.loads(raw)
    return PublishMeta(
        version=str(document["version"]),
        run_id=str(document["runId"]),
        rows=int(document["rows"]),
        published_at=datetime.fromisoformat(document["publishedAt"]),
        table=str(document["table"]),
    )


def lookup_customer(client: redis.Redis, prefix: str, customer_id: str) -> dict[str, Any] | None:
    """One customer's row, from the Redis hash (one HGET: always one complete version)."""
    raw = client.hget(f"{prefix}:rows", customer_id.strip())
    return None if raw is None else dict(json.loads(raw))


@dataclass(frozen=True)
class Bucket:
    low: float  # inclusive
    high: float  # exclusive
    customers: int

    @property
    def label(self) -> str:
        if self.low == float("-inf"):
            return f"< {compact(self.high)}"
        return f"{compact(self.low)}\N{EN DASH}{compact(self.high)}"


def compact(amount: float) -> str:
    """10, 200, 5k, 20M: band edges as people say them."""
    for factor, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(amount) >= factor:
            return f"{amount / factor:g}{suffix}"
    return f"{amount:g}"


@dataclass(frozen=True)
class MartSummary:
    run_id: str | None  # from the table's COMMENT; None when someone else created the table
    published_at: str | None
    customers: int
    with_ltv: int  # customers with a monthly LTV (those younger than a month have none)
    total_monthly_ltv: float
    average_monthly_ltv: float | None
    distribution: tuple[Bucket, ...]
    top: tuple[dict[str, Any], ...]


_TOTALS = """
SELECT obj_description(to_regclass(%(table)s), 'pg_class'), count(*), count(monthly_ltv),
       coalesce(sum(monthly_ltv), 0), avg(monthly_ltv), max(monthly_ltv)
FROM {table}
"""
_BANDS = """
SELECT width_bucket(monthly_ltv, %(edges)s::double precision[]) AS band, count(*)
FROM {table} WHERE monthly_ltv IS NOT NULL GROUP BY band ORDER BY band
"""
_TOP = """
SELECT customer_id, customer_name, segment, country, monthly_ltv
FROM {table} WHERE monthly_ltv IS NOT NULL ORDER BY monthly_ltv DESC, customer_id LIMIT %(n)s
"""


def read_mart_summary(dsn: str, table: str) -> MartSummary:
    """Totals, LTV distribution and top customers of the published table, in ONE transaction.

    The first statement takes the table's lock, which the publisher's swap (a RENAME) waits
    for: every statement of the transaction reads the same version.
    """
    schema, _, name = table.partition(".")
    relation = sql.Identifier(schema, name)
    connection = psycopg2.connect(dsn, connect_timeout=10, application_name="duckherd-dashboard")
    try:
        connection.set_session(readonly=True)
        with connection, connection.cursor() as cursor:
            cursor.execute(sql.SQL(_TOTALS).format(table=relation), {"table": table})
            totals = cursor.fetchone()
            assert totals is not None  # an aggregate always returns a row
            comment, customers, with_ltv, total, average, highest = totals
            distribution = _distribution(cursor, relation, highest)
            cursor.execute(sql.SQL(_TOP).format(table=relation), {"n": TOP_CUSTOMERS})
            columns = [column.name for column in cursor.description or ()]
            top = tuple(dict(zip(columns, row, strict=True)) for row in cursor.fetchall())
    finally:
        connection.close()
    run = _COMMENT_RUN.search(comment or "")
    return MartSummary(
        run_id=run.group(1) if run else None,
        published_at=run.group(2) if run else None,
        customers=int(customers),
        with_ltv=int(with_ltv),
        total_monthly_ltv=float(total),
        average_monthly_ltv=None if average is None else float(average),
        distribution=distribution,
        top=top,
    )


def band_edges(highest: float) -> list[float]:
    """0, 10, 20, 50, 100, 200, 500, 1000, ...: the first edge above `highest` ends the list.

    Monthly LTVs span several orders of magnitude (a few customers are worth a thousand times
    the median), so equal-width bands would put nearly everyone in the first bar.
    """
    edges = [0.0]
    scale = 10.0
    while edges[-1] <= highest:
        edges += [scale, 2 * scale, 5 * scale]
        scale *= 10
    while len(edges) > 2 and edges[-2] > highest:
        edges.pop()
    return edges


def _distribution(
    cursor: Any, relation: sql.Identifier, highest: float | None
) -> tuple[Bucket, ...]:
    if highest is None:
        return ()
    edges = band_edges(float(highest))
    cursor.execute(sql.SQL(_BANDS).format(table=relation), {"edges": edges})
    counts = {int(band): int(customers) for band, customers in cursor.fetchall()}
    # Band 0 holds values below the first edge (negative LTV: a refund-heavy customer).
    below = [Bucket(float("-inf"), 0.0, counts[0])] if counts.get(0) else []
    return (
        *below,
        *(
            Bucket(edges[index], edges[index + 1], counts.get(index + 1, 0))
            for index in range(len(edges) - 1)
        ),
    )


FreshnessLevel = Literal["fresh", "warn", "stale"]


@dataclass(frozen=True)
class Freshness:
    level: FreshnessLevel
    age: timedelta

    @property
    def age_text(self) -> str:
        if self.age < timedelta(minutes=1):
            return "under a minute"
        return humanize.precisedelta(self.age, minimum_unit="minutes", format="%0.0f")


def freshness(
    published_at: datetime, now: datetime, warn_after: timedelta, error_after: timedelta
) -> Freshness:
    """How old the served data is, judged by the pipeline's thresholds (`spec.freshness`)."""
    age = max(now - published_at, timedelta(0))
    level: FreshnessLevel = (
        "stale" if age >= error_after else "warn" if age >= warn_after else "fresh"
    )
    return Freshness(level, age)
