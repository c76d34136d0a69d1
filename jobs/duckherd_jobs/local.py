"""`duckherd run PIPELINE.yaml`: the stages of a manifest, in order, in this process.

The status printed at the end is computed by the same pure function the operator uses, so
it shows what `kubectl get datapipelines -o wide` would.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table

from duckherd.api import STAGES, DataPipelineSpec, DataPipelineStatus, Stage
from duckherd.status import (
    READY,
    RunObservation,
    StageObservation,
    compute_status,
    get_condition,
)
from duckherd.summary import StageSummary
from duckherd_jobs.context import StageContext, new_run_id
from duckherd_jobs.runner import ManifestError, load_manifest, run_stage


def _stages_to_run(spec: DataPipelineSpec, wanted: str | None) -> list[Stage]:
    planned = spec.stages()
    if not wanted:
        return planned
    chosen = [s.strip() for s in wanted.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in STAGES]
    if unknown:
        raise ManifestError(f"--stages: unknown stage(s) {', '.join(unknown)}")
    return [s for s in planned if s in chosen]


def _observation(summary: StageSummary) -> StageObservation:
    return StageObservation(
        stage=summary.stage,
        job=None,
        state="Succeeded" if summary.ok else "Failed",
        start_time=summary.startedAt,
        completion_time=summary.finishedAt,
        summary=summary,
    )


def _table(title: str) -> Table:
    # kubectl-like: a header rule, no borders, no wrapping inside cells.
    return Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)


def status_table(name: str, spec: DataPipelineSpec, status: DataPipelineStatus) -> Table:
    """The columns of `kubectl get datapipelines -o wide`."""
    table = _table(f"datapipeline/{name}")
    for column in (
        "NAME",
        "SCHEDULE",
        "READY",
        "LAST RUN",
        "ROWS",
        "FRESHNESS",
        "CHECKS",
        "MESSAGE",
    ):
        table.add_column(column, no_wrap=True)
    ready = get_condition(status.conditions, READY)
    checks = get_condition(status.conditions, "ChecksPassed")
    table.add_row(
        name,
        spec.schedule,
        ready.status if ready else "",
        status.lastRun.result if status.lastRun else "",
        str(status.totalRows or 0),
        status.freshness.state if status.freshness else "",
        checks.reason if checks else "",
        ready.message if ready else "",
    )
    return table


def _details(status: DataPipelineStatus, summaries: list[StageSummary]) -> list[Table]:
    stages = _table("stages")
    for column in ("STAGE", "RESULT", "SECONDS", "ROWS", "MESSAGE"):
        stages.add_column(column, no_wrap=True)
    for stage in status.lastRun.stages if status.lastRun else []:
        stages.add_row(
            stage.stage,
            stage.result,
            f"{stage.durationSeconds:.2f}" if stage.durationSeconds is not None else "",
            "" if stage.rows is None else str(stage.rows),
            (stage.message or "")[:200],
        )
    tables = _table("tables")
    for column in ("TABLE", "ROWS", "LOADED AT"):
        tables.add_column(column, no_wrap=True)
    for entry in status.tables:
        tables.add_row(entry.name, str(entry.rows), entry.loadedAt or "")
    result = [stages, tables]
    checks = [s.checks for s in summaries if s.checks is not None]
    if checks:
        check_table = _table("checks")
        for column in ("CHECK", "SEVERITY", "RESULT", "OBSERVED"):
            check_table.add_column(column, no_wrap=True)
        for check in checks[-1].results:
            outcome = "pass" if check.success else ("WARN" if check.severity == "warn" else "FAIL")
            check_table.add_row(check.name, check.severity, outcome, check.observed or "")
        result.append(check_table)
    return result


def run_local(
    manifest: Path,
    *,
    warehouse: Path | None = None,
    stages: str | None = None,
    console: Console | None = None,
) -> int:
    """Run the manifest's stages; 0 when every stage succeeded."""
    # Wide like `kubectl -o wide` even when stdout is not a terminal (CI logs, pipes).
    console = console or Console(width=None if Console().is_terminal else 200)
    try:
        pipeline = load_manifest(manifest)
        selected = _stages_to_run(pipeline.spec, stages)
    except ManifestError as error:
        console.print(f"[red]error:[/red] {error}")
        return 2
    name = pipeline.metadata.name
    warehouse = warehouse or Path(".warehouse") / f"{name}.duckdb"
    ctx = StageContext(
        pipeline=pipeline,
        warehouse=warehouse,
        run_id=new_run_id(),
        manifest_dir=manifest.resolve().parent,
    )
    console.print(f"run [bold]{ctx.run_id}[/bold] of {name} into {warehouse}")
    summaries: list[StageSummary] = []
    for stage in selected:
        with console.status(f"[bold]{stage}[/bold] running..."):
            summary = run_stage(stage, ctx)
        summaries.append(summary)
        mark = "[green]✓[/green]" if summary.ok else "[red]✗[/red]"
        console.print(f"{mark} {stage} in {summary.durationSeconds or 0:.2f}s")
        if not summary.ok:
            console.print(f"  [red]{summary.error}[/red]")
            break
    status = compute_status(
        spec=pipeline.spec,
        generation=None,
        previous=DataPipelineStatus(),
        run=RunObservation(
            run_id=ctx.run_id,
            trigger="Manual",
            stages=tuple(_observation(s) for s in summaries),
        ),
        now=datetime.now(UTC),
    )
    console.print(status_table(name, pipeline.spec, status))
    for table in _details(status, summaries):
        console.print(table)
    return 0 if summaries and all(s.ok for s in summaries) else 1
