"""Keeping secrets out of what a stage says: its summary, its errors and its logs.

The rules (`redact`, `describe_error`: the secrets the stage holds, with the passwords inside
them, and credential shapes whoever's they are) live in the neutral `duckherd.redaction`, which
the operator uses too; this module applies them to a stage.

`run_stage` applies both to the stage's summary and, while the stage runs, to every log record
(`redacted_logs`); the stage code redacts its own error messages as well, where it knows them.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from duckherd.api import DataPipeline, iter_secret_refs
from duckherd.contract import ENV_OPENLINEAGE_API_KEY
from duckherd.redaction import REDACTED, describe_error, redact, secret_fragments
from duckherd.summary import StageSummary

__all__ = [
    "REDACTED",
    "describe_error",
    "redact",
    "redact_summary",
    "redacted_logs",
    "secret_fragments",
    "stage_secrets",
    "url_without_credentials",
]


def stage_secrets(pipeline: DataPipeline, stage: str, env: Mapping[str, str]) -> list[str]:
    """The secret values a stage's pod holds: its Secret references, `spec.pod.env` entries
    taken from a Secret (`valueFrom.secretKeyRef`) and the lineage receiver's API key."""
    names = [ref.env_name for ref in iter_secret_refs(pipeline.spec, stage)]
    names += [
        extra.name
        for extra in pipeline.spec.pod.env
        if extra.valueFrom is not None and "secretKeyRef" in extra.valueFrom
    ]
    names.append(ENV_OPENLINEAGE_API_KEY)  # the operator maps the chart's lineage key
    return [env[name] for name in names if env.get(name)]


def redact_summary(summary: StageSummary, secrets: Iterable[str]) -> StageSummary:
    """The summary with every string in it redacted (messages, check results, table names)."""
    secrets = list(secrets)

    def scrub(value: Any) -> Any:
        if isinstance(value, str):
            return redact(value, secrets)
        if isinstance(value, dict):
            return {key: scrub(item) for key, item in value.items()}
        if isinstance(value, list):
            return [scrub(item) for item in value]
        return value

    return StageSummary.model_validate(scrub(summary.model_dump()))


@contextmanager
def redacted_logs(secrets: Iterable[str]) -> Iterator[None]:
    """While the block runs, every log record (any logger, any handler) is redacted when made:
    its message and its traceback."""
    secrets = list(secrets)
    previous = logging.getLogRecordFactory()

    def make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        message = record.getMessage()
        scrubbed = redact(message, secrets)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        if record.exc_info and record.exc_info[1] is not None:
            trace = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            record.exc_info, record.exc_text = None, redact(trace, secrets)
        return record

    logging.setLogRecordFactory(make_record)
    try:
        yield
    finally:
        logging.setLogRecordFactory(previous)


def url_without_credentials(url: str) -> str:
    """`scheme://host[:port]/path` of a URL: no user, password, query or fragment (where
    secrets ride). Raises ValueError for a URL it cannot parse."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    authority = f"{host}:{parts.port}" if parts.port else host
    return f"{parts.scheme}://{authority}{parts.path}"
