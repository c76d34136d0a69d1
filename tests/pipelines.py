"""DataPipeline documents for tests and benchmarks: the envelope around a spec, in one place."""

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
