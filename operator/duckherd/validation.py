"""pydantic's validation errors as one line a user can act on: `field.path: message; ...`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def describe_validation_errors(errors: Iterable[Mapping[str, Any]], under: str = "") -> str:
    """`under.location: message` per error, joined by `; ` (never the rejected input itself).

    Takes `ValidationError.errors()` of pydantic 2 and of pydantic 1 (which Great Expectations
    still raises; its `__root__` location is dropped). `under` names what was validated
    (`spec`, `kwargs`): it prefixes every location, and stands alone for a model-wide error.
    List positions read as Kubernetes writes field paths: `spec.metrics[1].expression`.
    """
    parts = []
    for error in errors:
        location = _location(error.get("loc", ()))
        separator = "" if location.startswith("[") else "."
        where = separator.join(part for part in (under, location) if part)
        parts.append(f"{where}: {error['msg']}" if where else str(error["msg"]))
    return "; ".join(parts)


def _location(parts: Iterable[object]) -> str:
    text = ""
    for part in parts:
        if part == "__root__":
            continue
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text
