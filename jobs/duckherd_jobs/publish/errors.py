"""Publish errors (secrets are kept out of them by `duckherd_jobs.redaction`)."""

from __future__ import annotations

from duckherd.errors import PipelineError


class PublishError(PipelineError, RuntimeError):
    """A target failed or refused a publish; the message names the target and the cause."""


class PublishInputError(PipelineError, ValueError):
    """The spec or the warehouse cannot be published as asked; the message names the field."""
