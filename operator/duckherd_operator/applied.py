"""What the operator last applied to each child, so the resync re-applies only real drift.

After a server-side apply the operator notes the child's digest (of the manifest it sent)
and the resourceVersion the API server answered with. While the watch cache shows the child
at that resourceVersion and the spec still builds the same manifest, nothing changed: no
write. A child that vanished, was edited (by a person or a controller), or whose manifest
the spec now builds differently is applied again. The notes live in the process: after a
restart every child is applied once.

What the spec builds is digested once per parsed pipeline (validation.py keeps the parse while
the spec is the same), so a resync round over a fleet at rest builds no manifests.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from duckherd_operator.builders import Pipeline, build_children

_Key = tuple[str, str, str]  # namespace, kind, name


def manifest_digest(manifest: dict[str, Any]) -> bytes:
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).digest()


def _key(manifest: dict[str, Any]) -> _Key:
    metadata = manifest["metadata"]
    return metadata["namespace"], manifest["kind"], metadata["name"]


class AppliedChildren:
    def __init__(self) -> None:
        self._notes: dict[_Key, tuple[bytes, str]] = {}
        # Per pipeline: the parse the digests were built from, and (key, digest) per child.
        self._expected: dict[tuple[str, str], tuple[Pipeline, list[tuple[_Key, bytes]]]] = {}

    def record(self, manifest: dict[str, Any], answer: dict[str, Any]) -> None:
        version = str((answer.get("metadata") or {}).get("resourceVersion") or "")
        self._notes[_key(manifest)] = (manifest_digest(manifest), version)

    def _expected_children(self, pipeline: Pipeline) -> list[tuple[_Key, bytes]]:
        owner = (pipeline.namespace, pipeline.name)
        kept = self._expected.get(owner)
        if kept is None or kept[0] is not pipeline:
            built = [(_key(child), manifest_digest(child)) for child in build_children(pipeline)]
            kept = (pipeline, built)
            self._expected[owner] = kept
        return kept[1]

    def drifted(self, pipeline: Pipeline, live: dict[tuple[str, str], str]) -> bool:
        """A child the spec calls for is missing from `live` ((kind, name) → resourceVersion,
        from the watch caches), or not as the operator last applied it."""
        for key, digest in self._expected_children(pipeline):
            version = live.get((key[1], key[2]))
            if version is None or self._notes.get(key) != (digest, version):
                return True
        return False

    def forget(self, keep: set[tuple[str | None, str]]) -> None:
        """Drop the digests kept for pipelines no longer in `keep` (deleted ones)."""
        for owner in [owner for owner in self._expected if owner not in keep]:
            del self._expected[owner]


APPLIED = AppliedChildren()
