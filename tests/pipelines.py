"""DataPipeline documents for tests and benchmarks: the envelope around a spec and the sources
several suites share, in one place."""

from __future__ import annotations

from typing import Any

from duckherd.api import API_VERSION, KIND, DataPipeline

DAILY = "0 6 * * *"


def manifest(name: str = "shop", namespace: str | None = None, **spec: Any) -> dict[str, Any]:
    """A whole DataPipeline document; the spec runs daily unless it names a schedule."""
    metadata: dict[str, Any] = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": metadata,
        "spec": {"schedule": DAILY, **spec},
    }


def pipeline(name: str = "shop", namespace: str | None = None, **spec: Any) -> DataPipeline:
    """`manifest`, validated as the jobs read it."""
    return DataPipeline.model_validate(manifest(name, namespace, **spec))


def customers_source(
    url: str, *, http: dict[str, Any] | None = None, **overrides: Any
) -> dict[str, Any]:
    """The demo API's customers at `url` as a source: merged by customer_id, incremental by
    updated_at (asked for with `updated_since`), 50 a page. `http` adds to the http fields,
    `overrides` replace the source's own."""
    return {
        "name": "customers",
        "primaryKey": ["customer_id"],
        "writeDisposition": "merge",
        "incremental": {"cursorField": "updated_at"},
        "http": {
            "url": url,
            "recordsPath": "data",
            "incrementalParam": "updated_since",
            "pagination": {"type": "page", "pageSize": 50, "totalPath": "total"},
            **(http or {}),
        },
        **overrides,
    }
