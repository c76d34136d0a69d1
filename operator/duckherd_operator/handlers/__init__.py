"""Kopf handlers, by concern. Importing this package registers them."""

from duckherd_operator.handlers import jobs, pipelines, resync, startup

__all__ = ["jobs", "pipelines", "resync", "startup"]
