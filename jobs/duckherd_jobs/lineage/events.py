"""OpenLineage run events of a stage run (and of the dbt models its transform built).

Imported only when lineage is on: the OpenLineage client costs a stage start about 0.4 s.
Names come from `naming`, facts from the warehouse from `facts`; docs/lineage.md lists what
goes where.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.generated import (
    data_quality_assertions_dataset as assertions_facet,
)
from openlineage.client.generated import (
    data_quality_metrics_input_dataset as metrics_facet,
)
from openlineage.client.generated import (
    error_message_run,
    job_type_job,
    nominal_time_run,
    parent_run,
    schema_dataset,
)
from openlineage.client.generated.base import (
    DatasetFacet,
    InputDatasetFacet,
    OutputDatasetFacet,
    RunFacet,
)
from openlineage.client.generated.output_statistics_output_dataset import (
    OutputStatisticsOutputDatasetFacet as OutputStatistics,
)

from duckherd.api import PostgresTarget, RedisTarget, Source, Stage
from duckherd.contract import MARTS_SCHEMA
from duckherd.errors import PipelineError
from duckherd.status import rfc3339
from duckherd.summary import StageSummary
from duckherd_jobs.context import StageContext, utc_now
from duckherd_jobs.lineage import naming
from duckherd_jobs.lineage.facts import WarehouseFacts
from duckherd_jobs.sql import table_name

log = logging.getLogger("duckherd.jobs.lineage")

PRODUCER = "https://github.com/duckherd/duckherd"
# Duckherd run ids map to pipeline run UUIDs under this fixed namespace (uuid5: stable).
_RUN_NAMESPACE = uuid.UUID("6f1d2a43-5d0e-4c55-9a39-1c3b8a4e7d21")


def pipeline_run_uuid(ctx: StageContext) -> str:
    """The pipeline run's UUID: the same for every stage of one Duckherd run."""
    return str(uuid.uuid5(_RUN_NAMESPACE, f"{ctx.namespace}/{ctx.name}/{ctx.run_id}"))


@dataclass(frozen=True)
class StageRun:
    """One stage run as lineage sees it."""

    stage: Stage
    ctx: StageContext
    run_id: str
    job_namespace: str

    @property
    def job_name(self) -> str:
        return naming.job_name(self.ctx.pipeline, self.stage)

    def parent(self) -> parent_run.ParentRunFacet:
        """The pipeline run: parent and root of every stage run."""
        pipeline_job = naming.job_name(self.ctx.pipeline)
        run_id = pipeline_run_uuid(self.ctx)
        return parent_run.ParentRunFacet(
            run=parent_run.Run(runId=run_id),
            job=parent_run.Job(namespace=self.job_namespace, name=pipeline_job),
            root=parent_run.Root(
                run=parent_run.RootRun(runId=run_id),
                job=parent_run.RootJob(namespace=self.job_namespace, name=pipeline_job),
            ),
        )


# --------------------------------------------------------------------------- datasets


class Datasets:
    """Builds the datasets of one event, with the facets the warehouse facts allow."""

    def __init__(self, ctx: StageContext, facts: WarehouseFacts | None) -> None:
        self.ctx = ctx
        self.facts = facts or WarehouseFacts()
        self.warehouse = naming.warehouse_namespace(ctx.pipeline)

    def _schema(self, table: str) -> dict[str, DatasetFacet]:
        columns = self.facts.columns.get(table)
        if not columns:
            return {}
        fields = [
            schema_dataset.SchemaDatasetFacetFields(name=name, type=kind, ordinal_position=i)
            for i, (name, kind) in enumerate(columns, start=1)
        ]
        return {"schema": schema_dataset.SchemaDatasetFacet(fields=fields)}

    def table_in(self, table: str, *, quality: bool = False) -> InputDataset:
        input_facets: dict[str, InputDatasetFacet] = {}
        if quality:
            input_facets.update(self._quality(table))
        return InputDataset(
            namespace=self.warehouse,
            name=table,
            facets=self._schema(table),
            inputFacets=input_facets,
        )

    def table_out(self, table: str, rows: int | None) -> OutputDataset:
        return OutputDataset(
            namespace=self.warehouse,
            name=table,
            facets=self._schema(table),
            outputFacets=_statistics(rows),
        )

    def _quality(self, table: str) -> dict[str, InputDatasetFacet]:
        found: dict[str, InputDatasetFacet] = {}
        assertions = self.facts.assertions.get(table)
        if assertions:
            found["dataQualityAssertions"] = assertions_facet.DataQualityAssertionsDatasetFacet(
                assertions=[
                    assertions_facet.Assertion(
                        assertion=fact.expectation,
                        success=fact.success,
                        column=fact.column,
                        severity=fact.severity,
                        name=fact.name,
                        actual=fact.actual,
                    )
                    for fact in assertions
                ]
            )
        metrics = self.facts.metrics.get(table)
        if metrics is not None:
            found["dataQualityMetrics"] = metrics_facet.DataQualityMetricsInputDatasetFacet(
                rowCount=metrics.row_count,
                columnMetrics={
                    column: metrics_facet.ColumnMetrics(
                        nullCount=metric.null_count, distinctCount=metric.distinct_count
                    )
                    for column, metric in metrics.columns.items()
                },
            )
        return found


def _statistics(rows: int | None) -> dict[str, OutputDatasetFacet]:
    return {} if rows is None else {"outputStatistics": OutputStatistics(rowCount=rows)}


def _rows(summary: StageSummary | None, table: str) -> int | None:
    stats = None if summary is None else summary.tables.get(table)
    if stats is None:
        return None
    return stats.loaded if stats.loaded is not None else stats.rows


def ingest_datasets(
    datasets: Datasets, summary: StageSummary | None
) -> tuple[list[InputDataset], list[OutputDataset]]:
    """Each source where it can be named → `raw.<source>`."""
    inputs: list[InputDataset] = []
    outputs: list[OutputDataset] = []
    for source in datasets.ctx.pipeline.spec.sources:
        inputs += _source_in(datasets.ctx, source)
        table = naming.raw_table(source)
        outputs.append(datasets.table_out(table, _rows(summary, table)))
    return inputs, outputs


def _source_in(ctx: StageContext, source: Source) -> list[InputDataset]:
    """The source's dataset, where it can be named."""
    try:
        found = naming.source_dataset(source, ctx.env)
    except (PipelineError, ValueError):
        log.warning("lineage: source %s cannot be named (no or bad secret)", source.name)
        return []
    return [] if found is None else [InputDataset(namespace=found[0], name=found[1])]


def transform_datasets(
    datasets: Datasets, summary: StageSummary | None
) -> tuple[list[InputDataset], list[OutputDataset]]:
    """What the models read from outside the build → every relation it built."""
    models = [] if summary is None else summary.lineage
    built = {model.relation for model in models}
    read = sorted({table for model in models for table in model.inputs} - built)
    return (
        [datasets.table_in(table) for table in read],
        [datasets.table_out(m.relation, _rows(summary, m.relation)) for m in models],
    )


def checked_tables(ctx: StageContext, facts: WarehouseFacts | None) -> list[str]:
    """The tables the checks name, and those the run's dbt tests tested."""
    quality = ctx.pipeline.spec.quality
    tables = [table_name(check.table) for check in (quality.checks if quality else [])]
    tables += list(facts.assertions) if facts else []
    return list(dict.fromkeys(tables))


def check_datasets(
    datasets: Datasets, summary: StageSummary | None
) -> tuple[list[InputDataset], list[OutputDataset]]:
    tables = checked_tables(datasets.ctx, datasets.facts)
    return [datasets.table_in(table, quality=summary is not None) for table in tables], []


def _target(ctx: StageContext, entry_table: str, target: object) -> tuple[str, str, str] | None:
    """(namespace, name, summary label) of one publish target; None if it cannot be named."""
    from duckherd_jobs.publish.redis_target import default_prefix

    if isinstance(target, PostgresTarget):
        table = target.table or entry_table.partition(".")[2]
        namespace, name = naming.dsn_dataset(
            target.dsnSecretRef.resolve(ctx.env), table, target.schema_
        )
        return namespace, name, f"postgres:{target.schema_}.{table}"
    if isinstance(target, RedisTarget):
        prefix = target.keyPrefix or default_prefix(ctx.namespace, ctx.name, entry_table)
        url = target.urlSecretRef.resolve(ctx.env)
        return naming.redis_namespace(url), prefix, f"redis:{prefix}"
    return None


def publish_datasets(
    datasets: Datasets, summary: StageSummary | None
) -> tuple[list[InputDataset], list[OutputDataset]]:
    """Each mart → its PostgreSQL table or Redis key prefix (no credentials)."""
    import psycopg2  # only the publish stage pays for it

    ctx = datasets.ctx
    published = {(p.table, p.target): p.rows for p in (summary.published if summary else [])}
    inputs: dict[str, InputDataset] = {}
    outputs: list[OutputDataset] = []
    for entry in ctx.pipeline.spec.publish:
        mart = table_name(entry.table, MARTS_SCHEMA)
        inputs.setdefault(mart, datasets.table_in(mart))
        try:
            found = _target(ctx, mart, entry.postgres or entry.redis)
        except (PipelineError, ValueError, psycopg2.Error):
            log.warning("lineage: the target of %s cannot be named (no or bad secret)", mart)
            continue
        if found is not None:
            namespace, name, label = found
            rows = published.get((mart, label))
            outputs.append(
                OutputDataset(namespace=namespace, name=name, outputFacets=_statistics(rows))
            )
    return list(inputs.values()), outputs


_STAGE_DATASETS = {
    "ingest": ingest_datasets,
    "transform": transform_datasets,
    "check": check_datasets,
    "publish": publish_datasets,
}


def warehouse_tables(stage: Stage, ctx: StageContext, summary: StageSummary) -> list[str]:
    """The warehouse tables a finished stage's event names (their columns are read)."""
    spec = ctx.pipeline.spec
    if stage == "ingest":
        return [naming.raw_table(source) for source in spec.sources]
    if stage == "transform":
        return sorted({t for m in summary.lineage for t in [m.relation, *m.inputs]})
    if stage == "check":
        return checked_tables(ctx, None)
    return [table_name(entry.table, MARTS_SCHEMA) for entry in spec.publish]


# --------------------------------------------------------------------------- events


def _job(namespace: str, name: str) -> Job:
    job_type = job_type_job.JobTypeJobFacet(
        processingType="BATCH", integration="DUCKHERD", jobType="STAGE"
    )
    return Job(namespace=namespace, name=name, facets={"jobType": job_type})


def stage_event(
    state: RunState,
    run: StageRun,
    summary: StageSummary | None,
    facts: WarehouseFacts | None,
    error: str | None = None,
) -> RunEvent:
    """START (no summary yet: the datasets by name) or COMPLETE / FAIL of a stage run."""
    inputs, outputs = _STAGE_DATASETS[run.stage](Datasets(run.ctx, facts), summary)
    facets: dict[str, RunFacet] = {"parent": run.parent()}
    scheduled = naming.nominal_time(run.ctx.pipeline, run.ctx.run_id)
    if scheduled is not None:
        facets["nominalTime"] = nominal_time_run.NominalTimeRunFacet(
            nominalStartTime=rfc3339(scheduled[0]), nominalEndTime=rfc3339(scheduled[1])
        )
    if error is not None:
        facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
            message=error, programmingLanguage="python"
        )
    return RunEvent(
        eventType=state,
        eventTime=rfc3339(utc_now()),
        run=Run(runId=run.run_id, facets=facets),
        job=_job(run.job_namespace, run.job_name),
        inputs=inputs,
        outputs=outputs,
        producer=PRODUCER,
    )


def model_events(
    run: StageRun, summary: StageSummary, facts: WarehouseFacts | None
) -> list[RunEvent]:
    """START and COMPLETE / FAIL of each dbt model the transform built, as a child run of the
    transform's run: model-level lineage (sources → staging → marts)."""
    datasets = Datasets(run.ctx, facts)
    events: list[RunEvent] = []
    for model in summary.lineage:
        child = ChildRun(model.name, model.status == "success", model.startedAt, model.finishedAt)
        inputs = [datasets.table_in(table) for table in model.inputs]
        rows = _rows(summary, model.relation)
        events += _child_events(run, child, inputs, datasets, model.relation, rows)
    return events


def source_events(
    run: StageRun, summary: StageSummary, facts: WarehouseFacts | None
) -> list[RunEvent]:
    """After an ingest that succeeded, each source's own child run (its dataset →
    `raw.<source>`), so the graph pairs each source with its table."""
    if not summary.ok:
        return []
    datasets = Datasets(run.ctx, facts)
    events: list[RunEvent] = []
    for source in run.ctx.pipeline.spec.sources:
        table = naming.raw_table(source)
        child = ChildRun(source.name, True, None, None)
        inputs = _source_in(run.ctx, source)
        events += _child_events(run, child, inputs, datasets, table, _rows(summary, table))
    return events


@dataclass(frozen=True)
class ChildRun:
    """A part of a stage run with lineage of its own: a source of an ingest, a dbt model."""

    name: str
    ok: bool
    started: str | None
    finished: str | None


def _child_events(
    run: StageRun,
    child: ChildRun,
    inputs: list[InputDataset],
    datasets: Datasets,
    output: str,
    rows: int | None,
) -> Sequence[RunEvent]:
    """START and COMPLETE / FAIL of a child run: job `<stage job>.<name>`, parent the stage
    run, root the pipeline run."""
    parent = parent_run.ParentRunFacet(
        run=parent_run.Run(runId=run.run_id),
        job=parent_run.Job(namespace=run.job_namespace, name=run.job_name),
        root=run.parent().root,
    )
    run_id = str(uuid.uuid5(uuid.UUID(run.run_id), output))
    job = _job(run.job_namespace, f"{run.job_name}.{child.name}")
    now = rfc3339(utc_now())
    ends = [
        (RunState.START, child.started or now, None),
        (RunState.COMPLETE if child.ok else RunState.FAIL, child.finished or now, rows),
    ]
    return [
        RunEvent(
            eventType=state,
            eventTime=when,
            run=Run(runId=run_id, facets={"parent": parent}),
            job=job,
            inputs=inputs,
            outputs=[datasets.table_out(output, counted if child.ok else None)],
            producer=PRODUCER,
        )
        for state, when, counted in ends
    ]
