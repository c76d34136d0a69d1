"""`run_publish`: gate, render the marts (warehouse read-only, briefly), publish each entry."""

from __future__ import annotations

import logging
from typing import Protocol

import duckdb

from duckherd.api import Publish
from duckherd.status import rfc3339
from duckherd.summary import PublishedTarget, StageSummary, TableSummary
from duckherd_jobs.context import StageContext, utc_now
from duckherd_jobs.fault_points import pause_point
from duckherd_jobs.publish.errors import PublishError, PublishInputError
from duckherd_jobs.publish.gate import evaluate_gate
from duckherd_jobs.publish.mart import Mart, describe_mart
from duckherd_jobs.publish.postgres_target import PostgresPublication, read_postgres_payload
from duckherd_jobs.publish.redis_target import (
    RedisPublication,
    default_prefix,
    read_redis_payload,
)
from duckherd_jobs.warehouse import connect

log = logging.getLogger("duckherd.jobs.publish")


class Publication(Protocol):
    @property
    def table(self) -> str: ...

    @property
    def label(self) -> str: ...

    def publish(self) -> int: ...

    def close(self) -> None: ...


def run_publish(ctx: StageContext) -> StageSummary:
    entries = ctx.pipeline.spec.publish
    if not entries:
        return StageSummary(stage="publish", ok=True)
    if not ctx.warehouse.exists():
        raise PublishInputError(f"warehouse {ctx.warehouse} does not exist: nothing to publish")
    # Gate and validation happen here; each mart renders in a feed on its own read-only
    # connection, closed when the read is done. Targets are written while feeds render, but a
    # slow target never keeps the warehouse locked for the next stage.
    with connect(ctx.warehouse, timeout_seconds=ctx.lock_timeout_seconds, read_only=True) as db:
        gate = evaluate_gate(db, ctx)
        if not gate.open:
            log.warning("%s", gate.reason)
            return StageSummary(stage="publish", ok=False, blocked=True, error=gate.reason)
        log.info("quality gate open: %s", gate.reason)
        publications = prepare_publications(db, ctx)
    return publish_all(publications)


def prepare_publications(db: duckdb.DuckDBPyConnection, ctx: StageContext) -> list[Publication]:
    """Validate every entry and start rendering it; bad input fails here, before any write."""
    published_at = rfc3339(utc_now())
    publications: list[Publication] = []
    try:
        for index, entry in enumerate(ctx.pipeline.spec.publish):
            field = f"publish[{index}]"
            mart = describe_mart(db, entry.table, field)
            publications.append(_publication(db, ctx, entry, mart, field, published_at))
    except BaseException:
        close_all(publications)
        raise
    return publications


def close_all(publications: list[Publication]) -> None:
    for publication in publications:
        publication.close()


def _publication(
    db: duckdb.DuckDBPyConnection,
    ctx: StageContext,
    entry: Publish,
    mart: Mart,
    field: str,
    published_at: str,
) -> Publication:
    pipeline = f"{ctx.namespace}/{ctx.name}"
    if entry.redis is not None:
        target = entry.redis
        return RedisPublication(
            table=mart.name,
            prefix=target.keyPrefix or default_prefix(ctx.namespace, ctx.name, mart.name),
            url=target.urlSecretRef.resolve(ctx.env),
            secret_name=f"{target.urlSecretRef.name}/{target.urlSecretRef.key}",
            ttl_seconds=target.ttlSeconds,
            payload=read_redis_payload(
                db, ctx.warehouse, mart, target.keyColumns, f"{field}.redis"
            ),
            run_id=ctx.run_id,
            pipeline=pipeline,
            published_at=published_at,
        )
    if entry.postgres is not None:
        target_pg = entry.postgres
        return PostgresPublication(
            table=mart.name,
            schema=target_pg.schema_,
            target_table=target_pg.table or mart.name.partition(".")[2],
            dsn=target_pg.dsnSecretRef.resolve(ctx.env),
            secret_name=f"{target_pg.dsnSecretRef.name}/{target_pg.dsnSecretRef.key}",
            payload=read_postgres_payload(db, ctx.warehouse, mart),
            run_id=ctx.run_id,
            pipeline=pipeline,
            published_at=published_at,
        )
    raise PublishInputError(f"{field}: set exactly one of redis, postgres")


def publish_all(publications: list[Publication]) -> StageSummary:
    """Publish each target on its own: one target down does not hold back the others."""
    published: list[PublishedTarget] = []
    tables: dict[str, TableSummary] = {}
    errors: list[str] = []
    try:
        for publication in publications:
            try:
                rows = publication.publish()
            except PublishError as error:
                log.error("publishing %s failed: %s", publication.table, error)
                errors.append(f"{publication.table} → {error}")
                continue
            finally:
                publication.close()
            published.append(
                PublishedTarget(table=publication.table, target=publication.label, rows=rows)
            )
            tables[publication.table] = TableSummary(rows=rows)
            pause_point("publish.target-done")
    finally:
        close_all(publications)
    if errors:
        done = f" ({len(published)} of {len(publications)} targets published)"
        return StageSummary(
            stage="publish",
            ok=False,
            published=published,
            tables=tables,
            error="; ".join(errors) + done,
        )
    return StageSummary(stage="publish", ok=True, published=published, tables=tables)
