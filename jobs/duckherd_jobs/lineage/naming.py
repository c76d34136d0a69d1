"""Dataset and job names by the OpenLineage naming conventions (https://openlineage.io/docs/spec/naming),
and the nominal time of a scheduled run. Pure and free of the OpenLineage client: naming costs
no import.

A dataset is `(namespace, name)`: the scheme and authority of where it lives as the namespace,
the path within it as the name. No user, password, query string or fragment ever reaches
either (they are where credentials ride).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from croniter import croniter

from duckherd.api import DataPipeline, PostgresSource, Source, Stage
from duckherd.contract import RAW_SCHEMA
from duckherd_jobs.redaction import url_without_credentials

Dataset = tuple[str, str]

POSTGRES_PORT = 5432
REDIS_PORT = 6379
POSTGRES_DEFAULT_SCHEMA = "public"


def warehouse_namespace(pipeline: DataPipeline) -> str:
    """One stable namespace per pipeline warehouse: `duckdb://<namespace>.<pipeline>`."""
    namespace = pipeline.metadata.namespace or "default"
    return f"duckdb://{namespace}.{pipeline.metadata.name}"


def url_dataset(url: str) -> Dataset:
    """`scheme://host:port` and the path of a URL. Raises ValueError when unparsable."""
    clean = url_without_credentials(url)
    scheme, _, rest = clean.partition("://")
    authority, slash, path = rest.partition("/")
    return f"{scheme}://{authority}", slash + path or "/"


def postgres_namespace(host: str | None, port: int | str | None) -> str:
    return f"postgres://{host or 'localhost'}:{port or POSTGRES_PORT}"


def postgres_table(database: str, table: str, default_schema: str) -> str:
    """`db.schema.table`; a bare table name gets `default_schema`."""
    schema, _, name = table.rpartition(".")
    return f"{database}.{schema or default_schema}.{name}"


def dsn_dataset(dsn: str, table: str, default_schema: str) -> Dataset:
    """A libpq DSN (key=value or URL) and a table: only host, port and database are kept."""
    from psycopg2.extensions import parse_dsn  # only stages with PostgreSQL pay for it

    parts = parse_dsn(dsn)
    return (
        postgres_namespace(parts.get("host"), parts.get("port")),
        postgres_table(parts.get("dbname") or parts.get("user") or "", table, default_schema),
    )


def postgres_source_dataset(source: PostgresSource, env: Mapping[str, str]) -> Dataset | None:
    """A PostgreSQL source's table; None for a `query` (its tables would need a SQL parser)."""
    if source.table is None:
        return None
    if source.connection is not None:
        connection = source.connection
        return (
            postgres_namespace(connection.host, connection.port),
            postgres_table(connection.database, source.table, POSTGRES_DEFAULT_SCHEMA),
        )
    assert source.dsnSecretRef is not None
    return dsn_dataset(source.dsnSecretRef.resolve(env), source.table, POSTGRES_DEFAULT_SCHEMA)


def source_dataset(source: Source, env: Mapping[str, str]) -> Dataset | None:
    """Where a source's rows come from; None where that has no name (a local path glob, a
    PostgreSQL query). Raises PipelineError (a missing secret) or ValueError (unparsable)."""
    if source.http is not None:
        return url_dataset(source.http.url)
    if source.file is not None:
        return url_dataset(source.file.url) if source.file.url else None
    if source.postgres is not None:
        return postgres_source_dataset(source.postgres, env)
    return None


def raw_table(source: Source) -> str:
    return f"{RAW_SCHEMA}.{source.name}"


def redis_namespace(url: str) -> str:
    """`redis://host:port` (or rediss://) of a Redis URL, without its credentials."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or REDIS_PORT}"


def job_name(pipeline: DataPipeline, stage: Stage | None = None) -> str:
    """`<namespace>.<pipeline>[.<stage>]`."""
    base = f"{pipeline.metadata.namespace or 'default'}.{pipeline.metadata.name}"
    return f"{base}.{stage}" if stage else base


def _schedules(pipeline: DataPipeline) -> list[tuple[str, str]]:
    """(CronJob name, schedule) of the stages that run on a schedule: ingest, and transform
    when it has a schedule of its own."""
    name, spec = pipeline.metadata.name, pipeline.spec
    schedules = [(f"{name}-ingest", spec.schedule)]
    if spec.transform is not None and spec.transform.dbt.schedule:
        schedules.append((f"{name}-transform", spec.transform.dbt.schedule))
    return schedules


def nominal_time(pipeline: DataPipeline, run_id: str) -> tuple[datetime, datetime] | None:
    """(scheduled time, the schedule's next time) of a run its CronJob started, else None.

    A stage pod cannot read its Job's `batch.kubernetes.io/cronjob-scheduled-timestamp`
    annotation (the downward API shows the pod's own metadata only), but the CronJob
    controller names each Job `<cronjob>-<scheduled time in minutes since the epoch>`, and a
    scheduled run's id is that name (chained stages carry it in their run-id label). The time
    counts only when the schedule fires at it, so a manual Job whose name happens to end in
    digits does not pass for a scheduled one.
    """
    zone = ZoneInfo(pipeline.spec.timeZone or "UTC")
    for cronjob, schedule in _schedules(pipeline):
        match = re.fullmatch(re.escape(cronjob) + r"-([0-9]{1,12})", run_id)
        if match is None:
            continue
        scheduled = datetime.fromtimestamp(int(match.group(1)) * 60, tz=UTC)
        if croniter.match(schedule, scheduled.astimezone(zone)):
            following = croniter(schedule, scheduled.astimezone(zone)).get_next(datetime)
            return scheduled, following.astimezone(UTC)
    return None
