"""Keeping secrets out of what Duckherd says: the rules both sides share.

Two layers, applied together by `redact`:
- the secrets the caller holds, each with the password inside it (a URL's or a libpq
  `password=`): client libraries echo parts of a malformed URL or DSN in their errors, so
  hiding only the whole value is not enough;
- credentials by their shape, whoever's they are: the password of a `scheme://user:password@`
  URL and the value of `password=`, wherever they turn up (a value in the data, a dbt error, a
  URL in the spec).

Stage pods apply them to their summaries and logs (`duckherd_jobs.redaction`); the operator
applies them to what it says about a webhook whose URL is a secret (`duckherd_operator.webhook`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

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
