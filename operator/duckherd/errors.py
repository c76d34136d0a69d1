"""The one base class of the failures a pipeline's owner can act on.

A `PipelineError` is the pipeline's fault, not the program's: a manifest field that does not
validate, a secret that is not there, a source that refuses the credentials or is down, a
column or table that does not exist, a dbt model that fails, a target that refuses a write.
Its message is one line that names the source, table, target or field and the cause, and
never a secret. It is reported as that line (the stage summary's `error`, the status message,
`duckherd run`'s output) without a traceback; `--verbose` adds the traceback.

Any other exception is a bug in Duckherd and is reported with its traceback.
See docs/contract.md.
"""

from __future__ import annotations


class PipelineError(Exception):
    """A failure the pipeline's owner can act on; the message names what and why, on one line."""


def describe(error: BaseException) -> str:
    """The line a user reads: a PipelineError's own message, anything else with its type."""
    message = " ".join(str(error).split())
    if isinstance(error, PipelineError):
        return message or type(error).__name__
    return f"{type(error).__name__}: {message}" if message else type(error).__name__
