"""pydantic's validation errors as one line a user can act on: `field.path: message; ...`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def describe_validation_errors(errors: Iterable[Mapping[str, Any]], under: str = "") -> str:
    """`under.location: message` per error, joined by `; ` (never the rejected input itself).

    Takes `ValidationError.errors()` of pydantic 2 and of pydantic 1 (which Great Expectations
    still raises; its `__root__` location is dropped). `under` names what was validated
    (`spec`, `kwargs`): it prefixes every location, and stands alone for a model-wide error.
    """
    parts = []
    for error in errors:
        location = ".".join(str(part) for part in error.get("loc", ()) if part != "__root__")
        where = ".".join(part for part in (under, location) if part)
        parts.append(f"{where}: {error['msg']}" if where else str(error["msg"]))
    return "; ".join(parts)
