"""Kopf handlers, by concern. Importing this package registers them."""

from duckherd_operator.handlers import (
    caches,
    jobs,
    monitoring,
    notify,
    pipelines,
    resync,
    startup,
)

__all__ = ["caches", "jobs", "monitoring", "notify", "pipelines", "resync", "startup"]
