"""A second fix to Kopf, applied when the operator starts: its events only as large as needed.

Every object Kopf lists or watches arrives whole, `metadata.managedFields` included: the
server-side-apply bookkeeping, a tree of field names about as large as the object itself (a
CronJob of the example: 6.1 KB of JSON, 2.9 KB of it managedFields; in Python dicts several
times that). Kopf hands each event to a worker of its own that holds it until the handlers
ran; at a restart every worker waits until every object of every indexed kind is listed, so
the operator holds the whole fleet's bodies at once (about 6,000 objects at N = 1,000:
benchmarks/profile_operator_memory.py and bench_fleet.py's restart phase, docs/fleet.md).
CPython then keeps most of that memory after the restart too: the caches built meanwhile sit
in arenas among the freed bodies, and an arena is returned only when wholly free.

So, as each event arrives and before Kopf queues it:
- its object loses `metadata.managedFields`. Nothing reads them: not Kopf (it writes merge
  patches built from its own `Patch`, never the body it received), not Duckherd (its writes
  are server-side applies of objects it builds; its caches keep a few fields);
- an object of a kind named metadata-only (`handlers.caches.METADATA_ONLY_KINDS`: the
  children whose one handler is an index of their name, labels and resourceVersion) keeps
  only `apiVersion`, `kind` and `metadata`: a CronJob's pod template or a ConfigMap's data is
  never read. tests/unit/test_caches.py holds that no other handler watches those kinds.

Hand-written because Kopf (1.45.2) has no hook between its watch-stream and its workers, and
the API server cannot leave managedFields out (a metadata-only list, as client-go's metadata
informers ask for, Kopf cannot request). It wraps one internal function,
`kopf._cogs.clients.watching.continuous_watch`, which `infinite_watch` looks up in its module at
each (re)connection; its signature is checked when applied. tests/unit/test_kopf_slim_events.py
runs Kopf's own watch loop through it.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator, Collection
from typing import Any

from kopf._cogs.clients import watching

_PATCHED = "_duckherd_drops_managed_fields"
_EXPECTED_PARAMETERS = ("settings", "resource", "namespace", "operator_pause_waiter")
Kind = tuple[str, str, str]  # group, version, plural
_METADATA_ONLY: set[Kind] = set()
_KEPT_OF_METADATA_ONLY = ("apiVersion", "kind", "metadata")


def slim(item: object, metadata_only: bool) -> None:
    """Trim a raw watch event's object in place: no `metadata.managedFields`, and nothing
    but `apiVersion`, `kind` and `metadata` if `metadata_only`. Any other item of the stream
    (Kopf's bookmarks, an ERROR's status) is left alone."""
    if not isinstance(item, dict) or item.get("type") == "ERROR":
        return
    body = item.get("object")
    if not isinstance(body, dict) or not isinstance(body.get("metadata"), dict):
        return
    body["metadata"].pop("managedFields", None)
    if metadata_only:
        for key in [key for key in body if key not in _KEPT_OF_METADATA_ONLY]:
            del body[key]


def slim_events(metadata_only: Collection[Kind] = ()) -> None:
    """Wrap Kopf's continuous_watch (idempotent; the kinds named add up). Raises RuntimeError
    if Kopf's function no longer looks as this was written for (then revisit this module)."""
    _METADATA_ONLY.update(metadata_only)
    original = watching.continuous_watch
    if getattr(original, _PATCHED, False):
        return
    parameters = tuple(inspect.signature(original).parameters)
    if parameters != _EXPECTED_PARAMETERS or not inspect.isasyncgenfunction(original):
        raise RuntimeError(f"kopf's continuous_watch has changed (parameters {parameters})")

    async def continuous_watch(**kwargs: Any) -> AsyncIterator[Any]:
        resource = kwargs["resource"]
        metadata_only = (resource.group, resource.version, resource.plural) in _METADATA_ONLY
        async with contextlib.aclosing(original(**kwargs)) as stream:
            async for item in stream:
                slim(item, metadata_only)
                yield item

    setattr(continuous_watch, _PATCHED, True)
    continuous_watch.__wrapped__ = original  # type: ignore[attr-defined]
    watching.continuous_watch = continuous_watch
