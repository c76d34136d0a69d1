"""Keeping secrets out of what a stage says: its summary, its errors and its logs.

Two layers, applied together by `redact`:
- the secrets the stage holds (the Secret values mapped into its pod), each with the password
  inside it (a URL's or a libpq `password=`): client libraries echo parts of a malformed URL or
  DSN in their errors, so hiding only the whole value is not enough;
- credentials by their shape, whoever's they are: the password of a `scheme://user:password@`
  URL and the value of `password=`, wherever they turn up (a value in the data, a dbt error, a
  URL in the spec).

`run_stage` applies both to the stage's summary and, while the stage runs, to every log record
(`redacted_logs`); the stage code redacts its own error messages as well, where it knows them.
"""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote, urlsplit

from duckherd.api import DataPipeline, Stage, iter_secret_refs
from duckherd.summary import StageSummary

REDACTED = "***"
# libpq key=value (and URL query) `password=value`; a quoted value may hold spaces.
_PASSWORD_SETTING = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&;,'\"]+)", re.IGNORECASE)
# The password of `scheme://user:password@host`.
_URL_PASSWORD = re.compile(r"([a-z][a-z0-9+.-]*://[^\s:/?#@]*:)([^\s/?#@]+)(@)", re.IGNORECASE)


def secret_fragments(secret: str) -> list[str]:
    """The secret and the password inside it (URL or libpq key=value), longest first."""
    fragments = {secret}
    try:
        password = urlsplit(secret).password
    except ValueError:
        password = None
    if password:
        fragments.update({password, unquote(password)})
    for match in _PASSWORD_SETTING.finditer(secret):
        value = match.group(2)
        fragments.update({value, value.strip("'")})
    return sorted((fragment for fragment in fragments if fragment), key=len, reverse=True)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` without the secrets (and their passwords) and without credential-shaped parts."""
    for secret in secrets:
        for fragment in secret_fragments(secret):
            text = text.replace(fragment, REDACTED)
    text = _URL_PASSWORD.sub(rf"\g<1>{REDACTED}\g<3>", text)
    return _PASSWORD_SETTING.sub(rf"\g<1>{REDACTED}", text)


def describe_error(error: BaseException, secrets: Iterable[str]) -> str:
    """`Type: message` on one line, redacted."""
    message = " ".join(str(error).split()) or "no details"
    return redact(f"{type(error).__name__}: {message}", secrets)


def stage_secrets(pipeline: DataPipeline, stage: Stage, env: Mapping[str, str]) -> list[str]:
    """The secret values a stage's pod holds: its Secret references, and `spec.pod.env`
    entries taken from a Secret (`valueFrom.secretKeyRef`)."""
    names = [ref.env_name for ref in iter_secret_refs(pipeline.spec, stage)]
    names += [
        extra.name
        for extra in pipeline.spec.pod.env
        if extra.valueFrom is not None and "secretKeyRef" in extra.valueFrom
    ]
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
