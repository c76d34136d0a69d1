"""Prebuilt JSON schemas for the dataclasses dbt validates at start-up.

Every dbt process validates its project, profile and credentials against JSON schemas that
mashumaro derives from dbt's dataclasses, from scratch (about 0.3 s of CPU, a fifth of a
prepared transform pod's start-up). The schemas depend only on the installed dbt code, so
`prepare_project` records them next to the pre-parsed manifest and a run hands them back
through the one function dbt builds them with. Unknown classes, other arguments or another
dbt version fall through to the real builder.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

_installed: dict[str, Any] = {}


def _dataclass_schema() -> Any:
    """The module whose global `build_json_schema` dbt's `json_schema()` calls."""
    return importlib.import_module("dbt_common.dataclass_schema")


def _class_key(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


class _Prebuilt:
    """Stands in for mashumaro's schema object: dbt only calls `to_dict()` on it."""

    def __init__(self, schema: Any) -> None:
        self._schema = schema

    def to_dict(self) -> Any:
        return self._schema


@contextmanager
def recording_json_schemas() -> Iterator[dict[str, Any]]:
    """Collect every schema dbt builds inside the block (a fresh cache first)."""
    dataclass_schema = _dataclass_schema()
    original: Callable[..., Any] = dataclass_schema.build_json_schema
    dataclass_schema.dbtClassMixin.__dict__["json_schema"].__func__.cache_clear()
    recorded: dict[str, Any] = {}

    def recording(cls: type, *args: Any, **kwargs: Any) -> Any:
        schema = original(cls, *args, **kwargs)
        if not args and not kwargs:
            recorded[_class_key(cls)] = schema.to_dict()
        return schema

    dataclass_schema.build_json_schema = recording
    try:
        yield recorded
    finally:
        dataclass_schema.build_json_schema = original


def install_json_schemas(schemas: Mapping[str, Any]) -> None:
    """Serve these schemas instead of rebuilding them (for the rest of the process)."""
    dataclass_schema = _dataclass_schema()
    _installed.update(schemas)
    current = dataclass_schema.build_json_schema
    if getattr(current, "duckherd_prebuilt", False):
        return
    original: Callable[..., Any] = current

    def prebuilt(cls: type, *args: Any, **kwargs: Any) -> Any:
        schema = None if args or kwargs else _installed.get(_class_key(cls))
        return original(cls, *args, **kwargs) if schema is None else _Prebuilt(schema)

    prebuilt.duckherd_prebuilt = True  # type: ignore[attr-defined]
    dataclass_schema.build_json_schema = prebuilt
