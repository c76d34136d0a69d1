"""`duckherd run PIPELINE.yaml`: the stages of a manifest, in order, in this process.

The status printed at the end is computed by the same pure function the operator uses, so
it shows the data columns of `kubectl get datapipelines -o wide` (deployment health, `Ready`,
has no meaning without a cluster). The tables section lists what the warehouse holds, also
after a failed run. A failed stage is one line naming the cause; `--verbose` adds tracebacks.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from duckherd.api import STAGES, DataPipelineSpec, DataPipelineStatus, Stage
from duckherd.errors import PipelineError
from duckherd.status import (
    DATA_READY,
    RunObservation,
    StageObservation,
    compute_status,
    get_condition,
)
from duckherd.summary import BackupRecord, StageSummary
from duckherd_jobs.backup import TaskContext, list_backups, run_task
from duckherd_jobs.context import StageContext, new_run_id
from duckherd_jobs.kpis import plan_kpis
from duckherd_jobs.lineage import Lineage
from duckherd_jobs.runner import ManifestError, configure_logging, load_manifest, run_stage
from duckherd_jobs.warehouse import WarehouseTable, list_tables


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


def _table(title: str, *, message_column: bool = False) -> Table:
    # kubectl-like: a header rule, no borders. Key columns never wrap nor shrink; with a
    # MESSAGE column the table spans the console and MESSAGE takes the width that is left,
    # cut to one line (the full message is printed above the tables).
    return Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        expand=message_column,
    )


def _add_columns(table: Table, names: Sequence[str]) -> None:
    for name in names:
        if name == "MESSAGE":
            table.add_column(name, no_wrap=True, overflow="ellipsis", ratio=1)
        else:
            table.add_column(name, no_wrap=True)


def _add_row(table: Table, *cells: str) -> None:
    # Text, not markup: a message may contain `[...]` (a list, a JSON body).
    table.add_row(*(Text(cell) for cell in cells))


def status_table(name: str, spec: DataPipelineSpec, status: DataPipelineStatus) -> Table:
    """The data columns of `kubectl get datapipelines -o wide`."""
    table = _table(f"datapipeline/{name}", message_column=True)
    _add_columns(
        table,
        ("NAME", "SCHEDULE", "DATA", "LAST RUN", "ROWS", "FRESHNESS", "CHECKS", "MESSAGE"),
    )
    data = get_condition(status.conditions, DATA_READY)
    checks = get_condition(status.conditions, "ChecksPassed")
    table.add_row(
        name,
        spec.schedule,
        data.status if data else "",
        status.lastRun.result if status.lastRun else "",
        "" if status.totalRows is None else str(status.totalRows),
        status.freshness.state if status.freshness else "",
        checks.reason if checks else "",
        data.message if data else "",
    )
    return table


def stages_table(status: DataPipelineStatus) -> Table:
    table = _table("stages", message_column=True)
    _add_columns(table, ("STAGE", "RESULT", "SECONDS", "ROWS", "MESSAGE"))
    for stage in status.lastRun.stages if status.lastRun else []:
        _add_row(
            table,
            stage.stage,
            stage.result,
            f"{stage.durationSeconds:.2f}" if stage.durationSeconds is not None else "",
            "" if stage.rows is None else str(stage.rows),
            stage.message or "",
        )
    return table


def warehouse_table(tables: Sequence[WarehouseTable]) -> Table:
    """What the warehouse holds now, whatever this run did."""
    table = _table("tables" if tables else "tables: the warehouse holds none yet")
    _add_columns(table, ("TABLE", "ROWS", "LAST WRITTEN"))
    for entry in tables:
        table.add_row(entry.name, str(entry.rows), entry.written_at or "")
    return table


def checks_table(summaries: Sequence[StageSummary]) -> Table | None:
    checks = [s.checks for s in summaries if s.checks is not None]
    if not checks:
        return None
    table = _table("checks")
    _add_columns(table, ("CHECK", "SEVERITY", "RESULT", "OBSERVED"))
    for check in checks[-1].results:
        outcome = "pass" if check.success else ("WARN" if check.severity == "warn" else "FAIL")
        table.add_row(check.name, check.severity, outcome, check.observed or "")
    return table


def _kpi_value(value: float | None) -> str:
    if value is None:
        return ""
    return f"{int(value):,}" if value.is_integer() else f"{value:,.4f}"


def kpis_table(status: DataPipelineStatus) -> Table | None:
    if not status.kpis:
        return None
    table = _table("kpis", message_column=True)
    _add_columns(table, ("KPI", "TABLE", "VALUE", "MESSAGE"))
    for kpi in status.kpis:
        _add_row(table, kpi.name, kpi.table, _kpi_value(kpi.value), kpi.message or "")
    return table


def _warehouse_contents(warehouse: Path, console: Console) -> list[WarehouseTable]:
    try:
        return list_tables(warehouse)
    except PipelineError as error:
        console.print(f"[yellow]cannot list the warehouse's tables:[/yellow] {error}")
        return []


LOCAL_ROOT = Path(".warehouse")


def default_warehouse(name: str) -> Path:
    return LOCAL_ROOT / f"{name}.duckdb"


def run_local(
    manifest: Path,
    *,
    warehouse: Path | None = None,
    stages: str | None = None,
    console: Console | None = None,
    verbose: bool = False,
    lineage_file: Path | None = None,
) -> int:
    """Run the manifest's stages: 0 when every stage succeeded, 1 when one failed, 2 when
    the manifest or the options are wrong. OpenLineage events go to `lineage_file` (JSON
    lines) or where the environment configures them (docs/lineage.md)."""
    configure_logging(level=logging.WARNING, verbose=verbose)
    # Wide like `kubectl -o wide` even when stdout is not a terminal (CI logs, pipes).
    console = console or Console(width=None if Console().is_terminal else 200)
    try:
        pipeline = load_manifest(manifest)
        selected = _stages_to_run(pipeline.spec, stages)
        plan_kpis(pipeline.spec.metrics)  # DuckDB's verdict on the KPIs, before any work
    except PipelineError as error:
        console.print(Text.assemble(("error: ", "red"), str(error)))
        return 2
    name = pipeline.metadata.name
    warehouse = warehouse or default_warehouse(name)
    ctx = StageContext(
        pipeline=pipeline,
        warehouse=warehouse,
        run_id=new_run_id(),
        manifest_dir=manifest.resolve().parent,
    )
    console.print(f"run [bold]{ctx.run_id}[/bold] of {name} into {warehouse}")
    summaries: list[StageSummary] = []
    lineage = Lineage.from_environment(lineage_file, pipeline=pipeline)
    for stage in selected:
        with console.status(f"[bold]{stage}[/bold] running..."):
            summary = run_stage(stage, ctx, lineage)
        summaries.append(summary)
        mark = "[green]✓[/green]" if summary.ok else "[red]✗[/red]"
        console.print(f"{mark} {stage} in {summary.durationSeconds or 0:.2f}s")
        if not summary.ok:
            console.print(Text(f"  {summary.error}", style="red"))
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
    console.print(stages_table(status))
    console.print(warehouse_table(_warehouse_contents(warehouse, console)))
    for extra in (checks_table(summaries), kpis_table(status)):
        if extra is not None:
            console.print(extra)
    return 0 if summaries and all(s.ok for s in summaries) else 1


def _task_context(
    manifest: Path, warehouse: Path | None, backup_dir: Path | None, console: Console
) -> TaskContext | None:
    try:
        pipeline = load_manifest(manifest)
    except ManifestError as error:
        console.print(Text.assemble(("error: ", "red"), str(error)), soft_wrap=True)
        return None
    if pipeline.spec.backup is None:
        console.print(
            Text.assemble(("error: ", "red"), f"{manifest}: spec.backup is not set"),
            soft_wrap=True,
        )
        return None
    return TaskContext(
        pipeline=pipeline,
        warehouse=warehouse or default_warehouse(pipeline.metadata.name),
        backup_dir=backup_dir or LOCAL_ROOT / "backups",
    )


def backups_table(records: Sequence[BackupRecord]) -> Table:
    table = _table("backups" if records else "backups: none at the destination")
    _add_columns(table, ["ID", "TIME", "SIZE", "RUN", "LOCATION"])
    for record in records:
        size = f"{record.sizeBytes / 1e6:.1f} MB"
        _add_row(table, record.id, record.time, size, record.runId or "", record.location)
    return table


def backup_local(
    manifest: Path,
    *,
    warehouse: Path | None = None,
    backup_dir: Path | None = None,
    list_only: bool = False,
    console: Console | None = None,
    verbose: bool = False,
) -> int:
    """`duckherd backup`: 0 on success, 1 when the backup failed, 2 for a wrong manifest."""
    configure_logging(level=logging.WARNING, verbose=verbose)
    console = console or Console(width=None if Console().is_terminal else 200)
    ctx = _task_context(manifest, warehouse, backup_dir, console)
    if ctx is None:
        return 2
    if list_only:
        try:
            records = list_backups(ctx)
        except PipelineError as error:
            console.print(Text.assemble(("error: ", "red"), str(error)), soft_wrap=True)
            return 1
        console.print(backups_table(records))
        return 0
    summary = run_task("backup", ctx)
    if not summary.ok or summary.backup is None:
        console.print(
            Text.assemble(("error: ", "red"), summary.error or "backup failed"), soft_wrap=True
        )
        return 1
    console.print(f"[green]✓[/green] backup {summary.backup.id} of {ctx.warehouse}")
    if summary.pruned:
        console.print(f"deleted beyond keep: {', '.join(summary.pruned)}")
    console.print(backups_table(summary.backups))
    return 0


def restore_local(
    manifest: Path,
    backup_id: str,
    *,
    warehouse: Path | None = None,
    backup_dir: Path | None = None,
    console: Console | None = None,
    verbose: bool = False,
) -> int:
    """`duckherd restore`: 0 on success, 1 when the restore failed (the warehouse is then as
    it was), 2 for a wrong manifest."""
    configure_logging(level=logging.WARNING, verbose=verbose)
    console = console or Console(width=None if Console().is_terminal else 200)
    ctx = _task_context(manifest, warehouse, backup_dir, console)
    if ctx is None:
        return 2
    summary = run_task("restore", ctx, backup_id)
    if not summary.ok or summary.backup is None:
        console.print(
            Text.assemble(("error: ", "red"), summary.error or "restore failed"), soft_wrap=True
        )
        return 1
    restored = summary.backup
    console.print(
        f"[green]✓[/green] restored backup {restored.id} (taken {restored.time}, newest run "
        f"{restored.runId or 'none'}) into {ctx.warehouse}"
    )
    return 0
