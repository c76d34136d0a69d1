"""Errors of the ingest stage: each names the source and the cause, never a secret."""

from __future__ import annotations

from duckherd.errors import PipelineError


class IngestError(PipelineError, RuntimeError):
    """A source could not be read or loaded; the message names the source and the cause."""
