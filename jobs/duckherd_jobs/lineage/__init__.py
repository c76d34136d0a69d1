"""OpenLineage events per stage run, through the `openlineage-python` client.

Off unless configured: `spec.lineage` (`enabled: false` turns it off; `url`, `endpoint`,
`apiKeySecretRef`), else the client's own conventions (`OPENLINEAGE_URL`,
`OPENLINEAGE_API_KEY`, `OPENLINEAGE_CONFIG` / `openlineage.yml`, `OPENLINEAGE__TRANSPORT__*`;
the operator sets them from the chart's `lineage` values), or `duckherd run --lineage-file
PATH` (JSON lines, the client's file transport). While off, nothing of the client is imported
(about 0.4 s a stage start would pay). Never in the way: every emit runs on a daemon thread
bounded by `DUCKHERD_LINEAGE_TIMEOUT` seconds; the first failure or timeout is logged in one
line and lineage is off for the rest of the run. docs/lineage.md describes what is emitted.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from duckherd.api import DataPipeline, LineageSettings, Stage
from duckherd.contract import (
    ENV_LINEAGE_TIMEOUT,
    ENV_OPENLINEAGE_ENDPOINT,
    ENV_OPENLINEAGE_NAMESPACE,
    ENV_OPENLINEAGE_URL,
)
from duckherd.summary import LineageDelivery, StageSummary
from duckherd_jobs.context import StageContext
from duckherd_jobs.redaction import redact, stage_secrets

if TYPE_CHECKING:
    from openlineage.client.client import OpenLineageClient
    from openlineage.client.event_v2 import RunEvent

    from duckherd_jobs.lineage.events import StageRun
    from duckherd_jobs.lineage.facts import WarehouseFacts

log = logging.getLogger("duckherd.jobs.lineage")

ENV_TIMEOUT = ENV_LINEAGE_TIMEOUT
ENV_NAMESPACE = ENV_OPENLINEAGE_NAMESPACE
DEFAULT_TIMEOUT_SECONDS = 5.0
MAX_ERROR_CHARS = 300  # the reason travels in the 4 KiB termination message


def is_configured(env: Mapping[str, str]) -> bool:
    """Whether the client's own configuration is present (else lineage stays off)."""
    if env.get(ENV_OPENLINEAGE_URL) or env.get("OPENLINEAGE_CONFIG"):
        return True
    if any(key.startswith("OPENLINEAGE__TRANSPORT") for key in env):
        return True
    return any(
        path.is_file()
        for path in (Path("openlineage.yml"), Path.home() / ".openlineage" / "openlineage.yml")
    )


def _timeout(env: Mapping[str, str]) -> float:
    try:
        return float(env.get(ENV_TIMEOUT, DEFAULT_TIMEOUT_SECONDS))
    except ValueError:
        log.warning("%s is not a number: using %ss", ENV_TIMEOUT, DEFAULT_TIMEOUT_SECONDS)
        return DEFAULT_TIMEOUT_SECONDS


def _client(
    settings: LineageSettings, lineage_file: Path | None, env: Mapping[str, str]
) -> OpenLineageClient | None:
    """The client the settings ask for (imported here, not at module load), or None."""
    if lineage_file is None and settings.enabled is False:
        return None
    url = settings.url
    if not url and (settings.endpoint or settings.apiKeySecretRef):
        # This pipeline's endpoint or key for the operator's default receiver.
        url = env.get(ENV_OPENLINEAGE_URL)
    if lineage_file is None and not url and not is_configured(env):
        return None
    from openlineage.client.client import OpenLineageClient

    if lineage_file is not None:
        from openlineage.client.transport.file import FileConfig, FileTransport

        config = FileConfig(log_file_path=str(lineage_file), append=True)
        return OpenLineageClient(transport=FileTransport(config))
    if url:
        from openlineage.client.transport.http import HttpConfig, HttpTransport

        params: dict[str, Any] = {"url": url}
        endpoint = settings.endpoint or env.get(ENV_OPENLINEAGE_ENDPOINT)
        if endpoint:
            params["endpoint"] = endpoint
        if settings.apiKeySecretRef is not None:
            api_key = settings.apiKeySecretRef.resolve(env)
            params["auth"] = {"type": "api_key", "apiKey": api_key}
        return OpenLineageClient(transport=HttpTransport(HttpConfig.from_dict(params)))
    return OpenLineageClient()


class Lineage:
    """Emits the events of one Duckherd run; `client` None means lineage is off."""

    def __init__(
        self,
        client: OpenLineageClient | None,
        timeout_seconds: float,
        namespace: str | None = None,
    ) -> None:
        self.client = client
        self.timeout_seconds = timeout_seconds
        self.namespace = namespace
        self._configured = client is not None
        self._sent = 0
        self._failure: str | None = None

    @classmethod
    def from_environment(
        cls,
        lineage_file: Path | None = None,
        env: Mapping[str, str] | None = None,
        pipeline: DataPipeline | None = None,
    ) -> Lineage:
        """As `spec.lineage`, `--lineage-file` (wins) and the environment configure it."""
        env = os.environ if env is None else env
        settings = (pipeline.spec.lineage if pipeline else None) or LineageSettings()
        namespace = settings.namespace or env.get(ENV_NAMESPACE) or None
        timeout = _timeout(env)
        try:
            return cls(_client(settings, lineage_file, env), timeout, namespace)
        except Exception as error:  # lineage never fails a run
            log.warning("lineage off: cannot configure OpenLineage: %s", redact(str(error)))
        return cls(None, timeout, namespace)

    @property
    def enabled(self) -> bool:
        return self.client is not None

    def delivery(self) -> LineageDelivery | None:
        """Events sent so far and why delivery stopped, for the stage summary (the operator
        counts them in its metrics); None while lineage is not configured."""
        if not self._configured:
            return None
        error = self._failure[:MAX_ERROR_CHARS] if self._failure else None
        return LineageDelivery(sent=self._sent, error=error)

    def _run(self, stage: Stage, ctx: StageContext, run_id: str) -> StageRun:
        from duckherd_jobs.lineage.events import StageRun

        return StageRun(stage, ctx, run_id, self.namespace or ctx.namespace)

    def start(self, stage: Stage, ctx: StageContext) -> str:
        """Emit START; returns the stage run's UUID."""
        run_id = str(uuid.uuid4())
        if self.client is not None:
            from openlineage.client.event_v2 import RunState

            from duckherd_jobs.lineage.events import stage_event

            self._emit(stage_event(RunState.START, self._run(stage, ctx, run_id), None, None))
        return run_id

    def finish(self, stage: Stage, ctx: StageContext, run_id: str, summary: StageSummary) -> None:
        """Emit COMPLETE or FAIL (with the summary's error, redacted), with the facets the
        warehouse now records; before it, the child runs: each source of an ingest that
        succeeded, each dbt model of a transform."""
        if self.client is None:
            return
        from openlineage.client.event_v2 import RunState

        from duckherd_jobs.lineage.events import model_events, source_events, stage_event

        run = self._run(stage, ctx, run_id)
        facts = self._facts(stage, ctx, summary)
        error = None
        if not summary.ok:
            error = redact(summary.error or "failed", stage_secrets(ctx.pipeline, stage, ctx.env))
        children = {"ingest": source_events, "transform": model_events}.get(stage)
        for event in children(run, summary, facts) if children else []:
            self._emit(event)
        state = RunState.COMPLETE if summary.ok else RunState.FAIL
        self._emit(stage_event(state, run, summary, facts, error))

    def _facts(
        self, stage: Stage, ctx: StageContext, summary: StageSummary
    ) -> WarehouseFacts | None:
        from duckherd_jobs.lineage.events import warehouse_tables
        from duckherd_jobs.lineage.facts import read_facts

        try:
            return read_facts(
                ctx.warehouse,
                warehouse_tables(stage, ctx, summary),
                ctx.run_id,
                quality=stage == "check",
                timeout_seconds=self.timeout_seconds,
            )
        except Exception as error:  # the events go out without these facets
            log.warning("lineage: cannot read the warehouse for facets: %s", error)
            return None

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
            # The enum's value (START), not its repr (EventType.START).
            event_type = getattr(event.eventType, "value", event.eventType)
            self._failure = f"emitting {event_type} failed: {failure[0]}"
            log.warning("lineage off for this run: %s", self._failure)
            self.client = None
        else:
            self._sent += 1
