"""Run one stage: load the manifest, call the stage, record and report its summary.

Every stage function has the signature `run(ctx: StageContext) -> StageSummary` and raises
on failure; this module turns exceptions into a failed summary, writes the compact summary to
the termination log (the operator's input), prints it as the last log line, and keeps the full
record in `_duckherd.runs`.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import cast

import yaml
from pydantic import ValidationError

from duckherd.api import STAGES, DataPipeline, Stage
from duckherd.contract import ENV_JOB_NAME, ENV_SOURCE_URL_PREFIX
from duckherd.errors import PipelineError, describe
from duckherd.status import rfc3339
from duckherd.summary import StageSummary, encode
from duckherd.validation import describe_validation_errors
from duckherd_jobs.context import StageContext, new_run_id, utc_now
from duckherd_jobs.lineage import Lineage
from duckherd_jobs.redaction import redact, redact_summary, redacted_logs, stage_secrets
from duckherd_jobs.usage import UsageMeter, measure_warehouse
from duckherd_jobs.volume import explain_full_volume
from duckherd_jobs.warehouse import connect, record_run

log = logging.getLogger("duckherd.jobs")

StageFunction = Callable[[StageContext], StageSummary]

# Imported lazily: the check stage pulls in Great Expectations (seconds of import time) and
# the transform stage dbt; an ingest pod should pay for neither.
_STAGE_FUNCTIONS: dict[str, str] = {
    "ingest": "duckherd_jobs.ingest:run_ingest",
    "transform": "duckherd_jobs.transform:run_transform",
    "check": "duckherd_jobs.check:run_check",
    "publish": "duckherd_jobs.publish:run_publish",
}


class ManifestError(PipelineError, ValueError):
    """The manifest cannot be read or does not validate."""


def load_manifest(path: Path) -> DataPipeline:
    """Read a DataPipeline manifest; errors name the file and the field."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ManifestError(f"{path}: cannot read manifest: {error}") from error
    try:
        pipeline = DataPipeline.model_validate(data)
    except ValidationError as error:
        details = describe_validation_errors(error.errors())
        raise ManifestError(f"{path}: invalid DataPipeline: {details}") from error
    return apply_source_url_overrides(pipeline, os.environ)


def apply_source_url_overrides(pipeline: DataPipeline, env: Mapping[str, str]) -> DataPipeline:
    """`DUCKHERD_SOURCE_URL_<NAME>` replaces the URL of the http/file source `<name>`.

    One manifest serves both worlds: it names the URL a pod uses (a cluster Service), and a
    local run points it at a server on this machine (hack/demo.sh) without editing the file.
    """
    for source in pipeline.spec.sources:
        override = env.get(ENV_SOURCE_URL_PREFIX + source.name.upper())
        if not override:
            continue
        if not re.match(r"^https?://", override):
            raise ManifestError(f"{ENV_SOURCE_URL_PREFIX}{source.name.upper()}: not an http(s) URL")
        if source.http is not None:
            source.http.url = override
        elif source.file is not None and source.file.url is not None:
            source.file.url = override
        else:
            raise ManifestError(
                f"{ENV_SOURCE_URL_PREFIX}{source.name.upper()}: source {source.name!r} "
                "has no URL to override"
            )
    return pipeline


def stage_function(stage: str) -> StageFunction:
    if stage not in _STAGE_FUNCTIONS:
        raise ManifestError(f"unknown stage {stage!r}: use one of {', '.join(STAGES)}")
    module_name, _, attribute = _STAGE_FUNCTIONS[stage].partition(":")
    return cast(StageFunction, getattr(importlib.import_module(module_name), attribute))


def run_stage(stage: Stage, ctx: StageContext, lineage: Lineage | None = None) -> StageSummary:
    """Run a stage to a summary; never raises for a stage failure. OpenLineage START and
    COMPLETE/FAIL go to `lineage` (by default as configured in the environment: off unless
    configured)."""
    lineage = lineage or Lineage.from_environment(env=ctx.env, pipeline=ctx.pipeline)
    started = utc_now()
    clock = time.monotonic()
    meter = UsageMeter()
    secrets = stage_secrets(ctx.pipeline, stage, ctx.env)
    with redacted_logs(secrets):
        lineage_run = lineage.start(stage, ctx)
        try:
            summary = stage_function(stage)(ctx)
        except PipelineError as error:  # the pipeline's fault: its message says what to fix
            log.debug("stage %s failed", stage, exc_info=True)  # the traceback with --verbose
            summary = StageSummary(stage=stage, ok=False, error=describe(error))
        except Exception as error:  # a bug in Duckherd: the traceback is what a fix needs
            log.exception("stage %s failed with an unexpected error", stage)
            summary = StageSummary(stage=stage, ok=False, error=describe(error))
    summary.error = explain_full_volume(summary.error, ctx.warehouse) or summary.error
    summary = redact_summary(summary, secrets)
    summary.stage = stage
    summary.runId = ctx.run_id
    summary.startedAt = summary.startedAt or rfc3339(started)
    summary.finishedAt = rfc3339(utc_now())
    summary.durationSeconds = round(time.monotonic() - clock, 3)
    summary.resources = meter.resources()
    summary.warehouse = measure_warehouse(ctx.warehouse)
    try:
        with connect(ctx.warehouse, timeout_seconds=ctx.lock_timeout_seconds) as connection:
            record_run(connection, summary, started_at=started)
    except Exception as error:  # the run log is secondary: report, do not mask the result
        log.warning("could not record the run in _duckherd.runs: %s", error)
    with redacted_logs(secrets):
        lineage.finish(stage, ctx, lineage_run, summary)
    summary.lineageEvents = lineage.delivery()
    if summary.lineageEvents is not None and summary.lineageEvents.error:
        summary.lineageEvents.error = redact(summary.lineageEvents.error, secrets)
    return summary


def write_termination_log(summary: StageSummary, path: Path) -> None:
    write_termination_message(encode(summary), path)


def write_termination_message(data: bytes, path: Path) -> None:
    """The operator's input: the termination log, and (FallbackToLogsOnError) the last line."""
    try:
        path.write_bytes(data)
    except OSError as error:
        log.warning("could not write termination log %s: %s", path, error)
    sys.stdout.write(data.decode() + "\n")
    sys.stdout.flush()


def configure_logging(*, level: int, verbose: bool) -> None:
    """Logs on stderr at `level`; `verbose` adds Duckherd's debug lines, among them the
    traceback of a stage that failed with a PipelineError."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(message)s")
    if verbose:
        logging.getLogger("duckherd").setLevel(logging.DEBUG)


def run_stage_cli(
    stage: str,
    *,
    spec_path: Path,
    warehouse: Path,
    termination_log: Path,
    run_id: str | None,
    verbose: bool = False,
) -> int:
    """`duckherd job <stage>`: exit 0 on success, 1 on failure (summary written either way)."""
    configure_logging(level=logging.INFO, verbose=verbose)
    if stage not in STAGES:
        sys.stderr.write(f"unknown stage {stage!r}: use one of {', '.join(STAGES)}\n")
        return 2
    typed_stage = cast(Stage, stage)
    try:
        pipeline = load_manifest(spec_path)
    except ManifestError as error:
        summary = StageSummary(stage=typed_stage, ok=False, runId=run_id, error=str(error))
        write_termination_log(summary, termination_log)
        return 1
    ctx = StageContext(
        pipeline=pipeline,
        warehouse=warehouse,
        # Chained Jobs carry a run-id label; a Job started by its CronJob (schedule or
        # `kubectl create job --from`) starts a run named after itself.
        run_id=run_id or os.environ.get(ENV_JOB_NAME) or new_run_id(),
        manifest_dir=spec_path.parent,
    )
    summary = run_stage(typed_stage, ctx)
    if not summary.ok:
        log.error("stage %s failed: %s", stage, summary.error)
    write_termination_log(summary, termination_log)
    return 0 if summary.ok else 1
