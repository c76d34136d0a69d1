"""Publish errors, and scrubbing secrets out of whatever a client library says."""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

REDACTED = "***"
_DSN_PASSWORD = re.compile(r"password\s*=\s*('(?:[^'\\]|\\.)*'|[^\s]+)")


class PublishError(RuntimeError):
    """A target failed or refused a publish; the message names the target and the cause."""


class PublishInputError(ValueError):
    """The spec or the warehouse cannot be published as asked; the message names the field."""


def secret_fragments(secret: str) -> list[str]:
    """The secret and the password inside it (URL or libpq key=value), longest first.

    Client libraries echo parts of a malformed URL or DSN back in their errors, so the
    password alone must go too, not only the whole value.
    """
    fragments = {secret}
    try:
        password = urlsplit(secret).password
    except ValueError:
        password = None
    if password:
        fragments.update({password, unquote(password)})
    for match in _DSN_PASSWORD.finditer(secret):
        value = match.group(1)
        fragments.update({value, value.strip("'")})
    return sorted((fragment for fragment in fragments if fragment), key=len, reverse=True)


def redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        for fragment in secret_fragments(secret):
            text = text.replace(fragment, REDACTED)
    return text


def describe_error(error: BaseException, secrets: list[str]) -> str:
    """`Type: message` on one line, with every secret fragment replaced."""
    message = " ".join(str(error).split()) or "no details"
    return redact(f"{type(error).__name__}: {message}", secrets)
