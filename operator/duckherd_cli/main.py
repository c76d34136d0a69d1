"""The `duckherd` command line: operator, CRD, stage jobs and local runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from duckherd import __version__
from duckherd.contract import (
    BACKUP_MOUNT,
    ENV_BACKUP_DIR,
    ENV_BACKUP_ID,
    ENV_RUN_ID,
    ENV_SPEC,
    ENV_TERMINATION_LOG,
    ENV_WAREHOUSE,
    SPEC_PATH,
    TERMINATION_LOG,
    WAREHOUSE_PATH,
)

VerboseOption = Annotated[
    bool,
    typer.Option(
        "--verbose",
        "-v",
        help="Debug logs, and the traceback of a failure the pipeline caused "
        "(a bug in Duckherd always shows its traceback).",
    ),
]

app = typer.Typer(
    name="duckherd",
    help="DuckDB data pipelines as Kubernetes resources.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"duckherd {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """DuckDB data pipelines as Kubernetes resources."""


@app.command()
def crd() -> None:
    """Print the DataPipeline CustomResourceDefinition generated from the API models."""
    from duckherd.crd import render_crd_yaml

    typer.echo(render_crd_yaml(), nl=False)


@app.command("operator")
def run_operator(
    namespace: Annotated[
        list[str] | None,
        typer.Option("--namespace", "-n", help="Watch only these namespaces (default: all)."),
    ] = None,
    liveness: Annotated[
        str, typer.Option(help="Liveness endpoint served by Kopf.")
    ] = "http://0.0.0.0:8080/healthz",
    metrics_port: Annotated[int, typer.Option(help="Prometheus metrics port (0 disables).")] = 9090,
    notify_secret: Annotated[
        str | None,
        typer.Option(
            help="NAMESPACE/NAME of the Secret holding the webhook URL for notifications "
            "(docs/notifications.md); unset: no notifications."
        ),
    ] = None,
    notify_secret_key: Annotated[str, typer.Option(help="The key of that Secret.")] = "url",
    notify_format: Annotated[
        str, typer.Option(help="Payload: slack (text and blocks) or json (a plain body).")
    ] = "slack",
) -> None:
    """Run the Kopf operator."""
    from duckherd_operator.lean_imports import use_lean_kubernetes_client

    use_lean_kubernetes_client()  # first: before anything imports kubernetes_asyncio or Kopf
    from duckherd_operator.main import run
    from duckherd_operator.validation import stage_resources
    from duckherd_operator.webhook import WebhookConfig

    try:
        stage_resources()  # the chart's stagePods.resources, refused here rather than per pod
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None

    webhook = None
    if notify_secret:
        try:
            webhook = WebhookConfig.parse(notify_secret, notify_secret_key, notify_format)
        except ValueError as error:
            raise typer.BadParameter(str(error)) from None
    run(
        namespaces=namespace or [],
        liveness=liveness,
        metrics_port=metrics_port,
        webhook=webhook,
    )


@app.command()
def job(
    stage: Annotated[
        str, typer.Argument(help="ingest | transform | check | publish | backup | restore")
    ],
    spec: Annotated[
        Path, typer.Option(envvar=ENV_SPEC, help="Pipeline manifest or spec file.")
    ] = Path(SPEC_PATH),
    warehouse: Annotated[
        Path, typer.Option(envvar=ENV_WAREHOUSE, help="DuckDB warehouse file.")
    ] = Path(WAREHOUSE_PATH),
    termination_log: Annotated[
        Path, typer.Option(envvar=ENV_TERMINATION_LOG, help="Where the summary goes.")
    ] = Path(TERMINATION_LOG),
    run_id: Annotated[
        str | None, typer.Option(envvar=ENV_RUN_ID, help="Run id shared by a run's stages.")
    ] = None,
    backup_dir: Annotated[
        Path, typer.Option(envvar=ENV_BACKUP_DIR, help="The backup volume (backup, restore).")
    ] = Path(BACKUP_MOUNT),
    backup_id: Annotated[
        str | None, typer.Option(envvar=ENV_BACKUP_ID, help="The backup to restore.")
    ] = None,
    verbose: VerboseOption = False,
) -> None:
    """Run one pipeline stage, or a backup or restore (what a Job's pod runs)."""
    import logging
    import os
    import sys

    from duckherd.contract import TASKS

    if stage in TASKS:
        from duckherd_jobs.backup import run_task_cli

        code = run_task_cli(
            stage,
            spec_path=spec,
            warehouse=warehouse,
            backup_dir=backup_dir,
            termination_log=termination_log,
            backup_id=backup_id,
            verbose=verbose,
        )
    else:
        from duckherd_jobs.runner import run_stage_cli

        code = run_stage_cli(
            stage,
            spec_path=spec,
            warehouse=warehouse,
            termination_log=termination_log,
            run_id=run_id,
            verbose=verbose,
        )
    # The summary is written and the warehouse closed: skip interpreter teardown, which with
    # Great Expectations and dbt loaded costs about a second per stage pod.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@app.command()
def run(
    manifest: Annotated[Path, typer.Argument(help="DataPipeline manifest (pipeline.yaml).")],
    warehouse: Annotated[
        Path | None, typer.Option(help="DuckDB file (default: .warehouse/<name>.duckdb).")
    ] = None,
    stages: Annotated[
        str | None, typer.Option(help="Comma-separated stages to run (default: all configured).")
    ] = None,
    verbose: VerboseOption = False,
    lineage_file: Annotated[
        Path | None,
        typer.Option(help="Append the run's OpenLineage events to this file (JSON lines)."),
    ] = None,
) -> None:
    """Run a pipeline manifest locally, without a cluster.

    Exits 0 when every stage succeeded, 1 when a stage failed (one line says why), 2 when the
    manifest or the options are wrong.
    """
    from duckherd_jobs.local import run_local

    raise typer.Exit(
        run_local(
            manifest,
            warehouse=warehouse,
            stages=stages,
            verbose=verbose,
            lineage_file=lineage_file,
        )
    )


WarehouseOption = Annotated[
    Path | None, typer.Option(help="DuckDB file (default: .warehouse/<name>.duckdb).")
]
BackupDirOption = Annotated[
    Path | None,
    typer.Option(help="Where spec.backup.volume backups go (default: .warehouse/backups)."),
]


@app.command()
def backup(
    manifest: Annotated[Path, typer.Argument(help="DataPipeline manifest with spec.backup.")],
    warehouse: WarehouseOption = None,
    backup_dir: BackupDirOption = None,
    list_only: Annotated[
        bool, typer.Option("--list", help="Only list the backups at the destination.")
    ] = False,
    verbose: VerboseOption = False,
) -> None:
    """Back the local warehouse up to spec.backup's destination (or list the backups there).

    Exits 0 on success, 1 when the backup failed (one line says why), 2 when the manifest
    or the options are wrong."""
    from duckherd_jobs.local import backup_local

    raise typer.Exit(
        backup_local(
            manifest,
            warehouse=warehouse,
            backup_dir=backup_dir,
            list_only=list_only,
            verbose=verbose,
        )
    )


@app.command()
def restore(
    manifest: Annotated[Path, typer.Argument(help="DataPipeline manifest with spec.backup.")],
    backup_id: Annotated[
        str, typer.Argument(help="The backup to restore (`duckherd backup --list`), or latest.")
    ],
    warehouse: WarehouseOption = None,
    backup_dir: BackupDirOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Replace the local warehouse with a backup, cursors included: the next run goes on
    from the backup's state.

    Exits 0 on success, 1 when the restore failed (one line says why; the warehouse is then
    unchanged), 2 when the manifest or the options are wrong."""
    from duckherd_jobs.local import restore_local

    raise typer.Exit(
        restore_local(
            manifest,
            backup_id,
            warehouse=warehouse,
            backup_dir=backup_dir,
            verbose=verbose,
        )
    )


@app.command("demo-source")
def demo_source(
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8765,
    customers: Annotated[int, typer.Option(help="Number of customers served.")] = 10_000,
) -> None:
    """Serve the deterministic, paginated demo customers API."""
    from duckherd_jobs.demo_source import serve

    serve(host=host, port=port, customers=customers)
