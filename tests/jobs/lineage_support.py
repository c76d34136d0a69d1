"""A real OpenLineage receiver on loopback and validation of events against the vendored
official JSON Schemas (tests/jobs/openlineage_spec)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from referencing import Registry, Resource

SPEC = Path(__file__).with_name("openlineage_spec")


def _registry() -> Registry[Any]:
    resources = []
    for path in [SPEC / "OpenLineage.json", *sorted((SPEC / "facets").glob("*.json"))]:
        schema = json.loads(path.read_text())
        resources.append((schema["$id"], Resource.from_contents(schema)))
    return Registry().with_resources(resources)


REGISTRY = _registry()


def _facets(event: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for owner in ("run", "job"):
        yield from event[owner].get("facets", {}).items()
    for dataset in event.get("inputs", []) + event.get("outputs", []):
        for key in ("facets", "inputFacets", "outputFacets"):
            yield from dataset.get(key, {}).items()


def schema_errors(event: dict[str, Any]) -> list[str]:
    """Every violation of the event schema and of each facet's own schema (by its
    `_schemaURL`, which must name a vendored file)."""
    errors = [
        f"event: {error.message}"
        for error in Draft202012Validator(
            {"$ref": event["schemaURL"]}, registry=REGISTRY
        ).iter_errors(event)
    ]
    for name, facet in _facets(event):
        url = facet["_schemaURL"]
        document, _, pointer = url.partition("#")
        if document not in REGISTRY:
            errors.append(f"facet {name}: schema {document} is not vendored")
            continue
        facet_name = pointer.rsplit("/", 1)[-1]
        validator = Draft202012Validator({"$ref": url}, registry=REGISTRY)
        errors += [
            f"facet {name} ({facet_name}): {e.message}" for e in validator.iter_errors(facet)
        ]
    return errors


class Receiver:
    """Collects the JSON bodies POSTed to it; `mode` is `ok`, `500` or `hang`."""

    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.events: list[dict[str, Any]] = []
        self.authorization: list[str | None] = []  # each request's Authorization header
        self.released = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.events.append(json.loads(body))
                receiver.authorization.append(self.headers.get("Authorization"))
                if receiver.mode == "hang":
                    receiver.released.wait(60)
                status = 500 if receiver.mode == "500" else 201
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.released.set()
        self._server.shutdown()
        self._server.server_close()
