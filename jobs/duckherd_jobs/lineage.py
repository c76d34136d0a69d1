"""OpenLineage events per stage run, through the `openlineage-python` client.

Off unless configured, by the client's own conventions (`OPENLINEAGE_URL`,
`OPENLINEAGE_API_KEY`, `OPENLINEAGE_CONFIG` / `openlineage.yml`, `OPENLINEAGE__TRANSPORT__*`)
or by `duckherd run --lineage-file PATH` (JSON lines, the client's file transport).
Never in the way: every emit runs on a daemon thread bounded by `DUCKHERD_LINEAGE_TIMEOUT`
seconds; the first failure or timeout is logged in one line and lineage is off for the rest of
the run. docs/lineage.md describes what is emitted.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from openlineage.client.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.generated import (
    error_message_run,
    job_type_job,
    parent_run,
)
from openlineage.client.generated.base import OutputDatasetFacet, RunFacet
from openlineage.client.generated.output_statistics_output_dataset import (
    OutputStatisticsOutputDatasetFacet as OutputStatistics,
)
from openlineage.client.transport.file import FileConfig, FileTransport

from duckherd.api import Stage
from duckherd.contract import MARTS_SCHEMA, RAW_SCHEMA
from duckherd.errors import PipelineError
from duckherd.status import rfc3339
from duckherd.summary import StageSummary
from duckherd_jobs.context import StageContext, utc_now
from duckherd_jobs.redaction import redact, stage_secrets, url_without_credentials

log = logging.getLogger("duckherd.jobs.lineage")

PRODUCER = "https://github.com/duckherd/duckherd"
ENV_TIMEOUT = "DUCKHERD_LINEAGE_TIMEOUT"
DEFAULT_TIMEOUT_SECONDS = 5.0
# Duckherd run ids map to pipeline run UUIDs under this fixed namespace (uuid5: stable).
_RUN_NAMESPACE = uuid.UUID("6f1d2a43-5d0e-4c55-9a39-1c3b8a4e7d21")


def pipeline_run_uuid(ctx: StageContext) -> str:
    """The pipeline run's UUID: the same for every stage of one Duckherd run."""
    return str(uuid.uuid5(_RUN_NAMESPACE, f"{ctx.namespace}/{ctx.name}/{ctx.run_id}"))


def is_configured(env: Mapping[str, str]) -> bool:
    """Whether the client's own configuration is present (else lineage stays off)."""
    if env.get("OPENLINEAGE_URL") or env.get("OPENLINEAGE_CONFIG"):
        return True
    if any(key.startswith("OPENLINEAGE__TRANSPORT") for key in env):
        return True
    return any(
        path.is_file()
        for path in (Path("openlineage.yml"), Path.home() / ".openlineage" / "openlineage.yml")
    )


def warehouse_namespace(ctx: StageContext) -> str:
    """One stable namespace per pipeline warehouse."""
    return f"duckdb://{ctx.namespace}.{ctx.name}"


def _qualified(table: str, default_schema: str) -> str:
    return table if "." in table else f"{default_schema}.{table}"


def _split_dataset(url: str) -> tuple[str, str]:
    """(namespace, name) of a URL by the naming spec: scheme://authority and the path."""
    clean = url_without_credentials(url)
    scheme, _, rest = clean.partition("://")
    authority, slash, path = rest.partition("/")
    return f"{scheme}://{authority}", slash + path or "/"


def ingest_datasets(
    ctx: StageContext, summary: StageSummary
) -> tuple[list[InputDataset], list[OutputDataset]]:
    inputs: list[InputDataset] = []
    outputs: list[OutputDataset] = []
    for source in ctx.pipeline.spec.sources:
        url = source.http.url if source.http else (source.file.url if source.file else None)
        if url:
            try:
                namespace, name = _split_dataset(url)
                inputs.append(InputDataset(namespace=namespace, name=name))
            except ValueError:
                log.warning("lineage: source %s has an unparsable URL", source.name)
        table = f"{RAW_SCHEMA}.{source.name}"
        outputs.append(_output(ctx, table, summary))
    return inputs, outputs


def _output(ctx: StageContext, table: str, summary: StageSummary) -> OutputDataset:
    stats = summary.tables.get(table)
    rows = None if stats is None else (stats.loaded if stats.loaded is not None else stats.rows)
    return _dataset_out(warehouse_namespace(ctx), table, rows)


def _dataset_out(namespace: str, name: str, rows: int | None) -> OutputDataset:
    facets: dict[str, OutputDatasetFacet] = {}
    if rows is not None:
        facets["outputStatistics"] = OutputStatistics(rowCount=rows)
    return OutputDataset(namespace=namespace, name=name, outputFacets=facets)


def publish_datasets(
    ctx: StageContext, summary: StageSummary
) -> tuple[list[InputDataset], list[OutputDataset]]:
    """Each mart in the warehouse → its PostgreSQL table or Redis key prefix (no credentials)."""
    # Here, not at the top: only the publish stage pays for psycopg2 and redis.
    import psycopg2
    from psycopg2.extensions import parse_dsn

    from duckherd_jobs.publish.redis_target import default_prefix

    published = {(item.table, item.target): item.rows for item in summary.published}
    inputs: dict[str, InputDataset] = {}
    outputs: list[OutputDataset] = []
    for entry in ctx.pipeline.spec.publish:
        mart = _qualified(entry.table, MARTS_SCHEMA)
        inputs.setdefault(mart, InputDataset(namespace=warehouse_namespace(ctx), name=mart))
        try:
            if entry.postgres is not None:
                target = entry.postgres
                dsn = parse_dsn(target.dsnSecretRef.resolve(ctx.env))
                table = target.table or mart.partition(".")[2]
                namespace = f"postgres://{dsn.get('host', 'localhost')}:{dsn.get('port', 5432)}"
                name = f"{dsn.get('dbname', '')}.{target.schema_}.{table}"
                label = f"postgres:{target.schema_}.{table}"
            elif entry.redis is not None:
                prefix = entry.redis.keyPrefix or default_prefix(ctx.namespace, ctx.name, mart)
                parts = urlsplit(entry.redis.urlSecretRef.resolve(ctx.env))
                namespace = f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}"
                name, label = prefix, f"redis:{prefix}"
            else:
                continue
        except (PipelineError, ValueError, psycopg2.Error):
            log.warning(
                "lineage: the target of %s cannot be named (secret missing or invalid)", mart
            )
            continue
        outputs.append(_dataset_out(namespace, name, published.get((mart, label))))
    return list(inputs.values()), outputs


def stage_datasets(
    stage: Stage, ctx: StageContext, summary: StageSummary | None
) -> tuple[list[InputDataset], list[OutputDataset]]:
    """What a stage reads and writes, as far as it is known cheaply (none for transform and
    check yet: dbt model-level lineage is future work)."""
    summary = summary or StageSummary(stage=stage, ok=True)
    if stage == "ingest":
        return ingest_datasets(ctx, summary)
    if stage == "publish":
        return publish_datasets(ctx, summary)
    return [], []


class Lineage:
    """Emits the events of one Duckherd run; `client` None means lineage is off."""

    def __init__(self, client: OpenLineageClient | None, timeout_seconds: float) -> None:
        self.client = client
        self.timeout_seconds = timeout_seconds

    @classmethod
    def from_environment(
        cls, lineage_file: Path | None = None, env: Mapping[str, str] | None = None
    ) -> Lineage:
        env = os.environ if env is None else env
        try:
            timeout = float(env.get(ENV_TIMEOUT, DEFAULT_TIMEOUT_SECONDS))
        except ValueError:
            log.warning("%s is not a number: using %ss", ENV_TIMEOUT, DEFAULT_TIMEOUT_SECONDS)
            timeout = DEFAULT_TIMEOUT_SECONDS
        try:
            if lineage_file is not None:
                config = FileConfig(log_file_path=str(lineage_file), append=True)
                return cls(OpenLineageClient(transport=FileTransport(config)), timeout)
            if is_configured(env):
                return cls(OpenLineageClient(), timeout)
        except Exception as error:  # lineage never fails a run
            log.warning("lineage off: cannot configure OpenLineage: %s", redact(str(error)))
        return cls(None, timeout)

    @property
    def enabled(self) -> bool:
        return self.client is not None

    def start(self, stage: Stage, ctx: StageContext) -> str:
        """Emit START; returns the stage run's UUID."""
        run_id = str(uuid.uuid4())
        if self.client is not None:
            inputs, outputs = stage_datasets(stage, ctx, None)
            self._emit(self._event(RunState.START, stage, ctx, run_id, inputs, outputs, None))
        return run_id

    def finish(self, stage: Stage, ctx: StageContext, run_id: str, summary: StageSummary) -> None:
        """Emit COMPLETE or FAIL (with the summary's error, redacted)."""
        if self.client is None:
            return
        inputs, outputs = stage_datasets(stage, ctx, summary)
        error = None
        if not summary.ok:
            message = redact(summary.error or "failed", stage_secrets(ctx.pipeline, stage, ctx.env))
            error = error_message_run.ErrorMessageRunFacet(
                message=message, programmingLanguage="python"
            )
        state = RunState.COMPLETE if summary.ok else RunState.FAIL
        self._emit(self._event(state, stage, ctx, run_id, inputs, outputs, error))

    def _event(
        self,
        state: RunState,
        stage: Stage,
        ctx: StageContext,
        run_id: str,
        inputs: list[InputDataset],
        outputs: list[OutputDataset],
        error: error_message_run.ErrorMessageRunFacet | None,
    ) -> RunEvent:
        namespace = ctx.namespace
        run_facets: dict[str, RunFacet] = {
            "parent": parent_run.ParentRunFacet(
                run=parent_run.Run(runId=pipeline_run_uuid(ctx)),
                job=parent_run.Job(namespace=namespace, name=f"{namespace}.{ctx.name}"),
            )
        }
        if error is not None:
            run_facets["errorMessage"] = error
        job_type = job_type_job.JobTypeJobFacet(
            processingType="BATCH", integration="DUCKHERD", jobType="STAGE"
        )
        return RunEvent(
            eventType=state,
            eventTime=rfc3339(utc_now()),
            run=Run(runId=run_id, facets=run_facets),
            job=Job(
                namespace=namespace,
                name=f"{namespace}.{ctx.name}.{stage}",
                facets={"jobType": job_type},
            ),
            inputs=inputs,
            outputs=outputs,
            producer=PRODUCER,
        )

    def _emit(self, event: RunEvent) -> None:
        """Emit on a daemon thread, waiting at most the timeout; the first failure turns
        lineage off for the rest of the run (one log line, never an exception)."""
        client = self.client
        if client is None:
            return
        failure: list[str] = []

        def send() -> None:
            try:
                client.emit(event)
            except Exception as error:
                failure.append(redact(" ".join(str(error).split()) or type(error).__name__))

        sender = threading.Thread(target=send, name="duckherd-lineage", daemon=True)
        sender.start()
        sender.join(self.timeout_seconds)
        if sender.is_alive():
            failure.append(f"no answer within {self.timeout_seconds}s")
        if failure:
            log.warning(
                "lineage off for this run: emitting %s failed: %s", event.eventType, failure[0]
            )
            self.client = None
