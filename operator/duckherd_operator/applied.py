"""What the operator last applied to each child, so the resync re-applies only real drift.

After a server-side apply the operator notes the child's digest (of the manifest it sent)
and the resourceVersion the API server answered with. While the watch cache shows the child
at that resourceVersion and the spec still builds the same manifest, nothing changed: no
write. A child that vanished, was edited (by a person or a controller), or whose manifest
the spec now builds differently is applied again. The notes live in the process: after a
restart every child is applied once.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

_Key = tuple[str, str, str]  # namespace, kind, name


def manifest_digest(manifest: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()


def _key(manifest: dict[str, Any]) -> _Key:
    metadata = manifest["metadata"]
    return metadata["namespace"], manifest["kind"], metadata["name"]


class AppliedChildren:
    def __init__(self) -> None:
        self._notes: dict[_Key, tuple[str, str]] = {}

    def record(self, manifest: dict[str, Any], answer: dict[str, Any]) -> None:
        version = str((answer.get("metadata") or {}).get("resourceVersion") or "")
        self._notes[_key(manifest)] = (manifest_digest(manifest), version)

    def unchanged(self, manifest: dict[str, Any], live_version: str | None) -> bool:
        """True when `live_version` is what our last apply of this very manifest left."""
        note = self._notes.get(_key(manifest))
        return (
            note is not None
            and live_version is not None
            and note == (manifest_digest(manifest), live_version)
        )


APPLIED = AppliedChildren()
