"""Errors of the ingest stage: each names the source and the cause, never a secret."""

from __future__ import annotations

from collections.abc import Iterable


class IngestError(RuntimeError):
    """A source could not be read or loaded; the message names the source and the cause."""


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret value replaced (libraries sometimes echo URLs or DSNs)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
