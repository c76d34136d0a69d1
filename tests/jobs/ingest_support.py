"""Helpers for the ingest tests: a scriptable JSON API on loopback and warehouse probes."""

from __future__ import annotations

import json
import socket
import struct
import sys
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import duckdb

from duckherd.api import DataPipeline
from duckherd.summary import StageSummary
from duckherd_jobs.context import StageContext
from duckherd_jobs.demo_source import send_json
from duckherd_jobs.runner import run_stage
from tests import pipelines

Record = dict[str, Any]


@dataclass
class Request:
    page_key: int
    params: dict[str, str]
    headers: dict[str, str]
    at: float


@dataclass
class FakeApiState:
    records: list[Record]
    mode: str = "page"
    faults: dict[int, deque[tuple[str, float]]] = field(default_factory=lambda: defaultdict(deque))
    requests: list[Request] = field(default_factory=list)
    extra_on_page: dict[int, Record] = field(default_factory=dict)
    required_headers: dict[str, str] = field(default_factory=dict)
    required_params: dict[str, str] = field(default_factory=dict)
    max_page_size: int = 1_000_000
    lock: threading.Lock = field(default_factory=threading.Lock)


class FakeApi:
    """A JSON API whose records, pagination mode and faults a test scripts.

    Modes: `page` (page/page_size, `total`, Link header), `offset` (offset/limit, `total`),
    `cursor` (`next_cursor`), `link` (Link header only) and `none` (the root is the list).
    Records are filtered by `updated_since` against their `updated_at` (ISO strings).
    Faults are queued per page (1-based; offset and cursor modes count pages too) and each
    is used once: `429`, `500`, `slow`, `cut` (Content-Length promises more than is sent),
    `broken` (a complete response whose JSON is cut), `reset` (the connection drops).
    """

    def __init__(self, records: list[Record], mode: str = "page", host: str = "127.0.0.1") -> None:
        self.state = FakeApiState(records=list(records), mode=mode)
        self._server = ThreadingHTTPServer((host, 0), _handler_for(self.state))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/items"

    def fail(self, page: int, fault: str, times: int = 1, value: float = 0.0) -> None:
        with self.state.lock:
            self.state.faults[page].extend([(fault, value)] * times)

    @property
    def requests(self) -> list[Request]:
        return list(self.state.requests)

    def __enter__(self) -> FakeApi:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler_for(state: FakeApiState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            """Quiet."""

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            params = {k: v[-1] for k, v in parse_qs(url.query).items()}
            for name, value in state.required_headers.items():
                if self.headers.get(name) != value:
                    return send_json(self, 401, b'{"error":"unauthorized"}')
            for name, value in state.required_params.items():
                if params.get(name) != value:
                    return send_json(self, 401, b'{"error":"unauthorized"}')
            body, headers, page = _page(state, params, self.headers.get("Host", ""))
            with state.lock:
                state.requests.append(Request(page, params, dict(self.headers), time.time()))
                fault = state.faults[page].popleft() if state.faults[page] else None
            if fault is not None and self._inject(fault, body):
                return None
            return send_json(self, 200, body, headers)

        def _inject(self, fault: tuple[str, float], body: bytes) -> bool:
            kind, value = fault
            if kind == "429":
                send_json(
                    self, 429, b'{"error":"slow down"}', {"Retry-After": str(int(value or 1))}
                )
            elif kind == "500":
                send_json(self, 500, b'{"error":"boom"}')
            elif kind == "slow":
                time.sleep(value)
                return False
            elif kind == "cut":
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
            elif kind == "broken":
                send_json(self, 200, body[: len(body) // 2])
            elif kind == "reset":
                # SO_LINGER 0: close() sends RST, the client sees "connection reset".
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.close_connection = True
            else:
                raise ValueError(kind)
            return True

    return Handler


def _page(
    state: FakeApiState, params: dict[str, str], host: str
) -> tuple[bytes, dict[str, str], int]:
    since = params.get("updated_since")
    with state.lock:
        records = [r for r in state.records if since is None or str(r["updated_at"]) > since]
    mode = state.mode
    if mode == "none":
        return json.dumps(records).encode(), {}, 1
    size = min(int(params.get("page_size", params.get("limit", "100"))), state.max_page_size)
    if mode == "offset":
        start = int(params.get("offset", "0"))
    elif mode == "cursor":
        start = int(params.get("cursor", "0"))
    else:
        start = (int(params.get("page", "1")) - 1) * size
    page = start // size + 1
    chosen = [dict(r) for r in records[start : start + size]]
    if page in state.extra_on_page:
        for record in chosen:
            record.update(state.extra_on_page[page])
    envelope: dict[str, Any] = {"data": chosen}
    headers = {}
    more = start + size < len(records)
    if mode in ("page", "offset"):
        envelope["total"] = len(records)
    if mode == "cursor":
        envelope["next_cursor"] = str(start + size) if more else None
    if mode in ("page", "link") and more:
        query = {k: v for k, v in params.items() if k != "page"}
        query["page"] = str(page + 1)
        headers["Link"] = f'<http://{host}/items?{urlencode(query)}>; rel="next"'
    return json.dumps(envelope).encode(), headers, page


# ---------------------------------------------------------------------- pipelines and runs


def pipeline(*sources: dict[str, Any], name: str = "ingest-test") -> DataPipeline:
    return pipelines.pipeline(name, sources=list(sources))


def http_source(name: str, url: str, **fields: Any) -> dict[str, Any]:
    http = {
        "url": url,
        "recordsPath": "data",
        "pagination": {"type": "page", "pageSize": 10, "totalPath": "total"},
        "timeoutSeconds": 5,
        "maxRetries": 3,
    }
    http.update(fields.pop("http", {}))
    return {"name": name, "http": http, **fields}


def pod_command(spec: Path, warehouse: Path, termination_log: Path, run_id: str) -> list[str]:
    """`duckherd job ingest` as a stage pod runs it (this venv's command)."""
    duckherd = str(Path(sys.executable).parent / "duckherd")
    return [
        *(duckherd, "job", "ingest", "--spec", str(spec), "--warehouse", str(warehouse)),
        *("--termination-log", str(termination_log), "--run-id", run_id),
    ]


def ingest(
    spec: DataPipeline,
    warehouse: Path,
    run_id: str = "run-1",
    env: Mapping[str, str] | None = None,
    manifest_dir: Path | None = None,
) -> StageSummary:
    ctx = StageContext(
        pipeline=spec,
        warehouse=warehouse,
        run_id=run_id,
        env=dict(env or {}),
        lock_timeout_seconds=60,
        manifest_dir=manifest_dir or warehouse.parent,
    )
    return run_stage("ingest", ctx)


def query(warehouse: Path, sql: str, parameters: list[Any] | None = None) -> list[tuple[Any, ...]]:
    connection = duckdb.connect(str(warehouse), read_only=True)
    try:
        return connection.execute(sql, parameters or []).fetchall()
    finally:
        connection.close()


def columns(warehouse: Path, table: str) -> dict[str, str]:
    return {str(row[0]): str(row[1]) for row in query(warehouse, f"DESCRIBE {table}")}


def snapshot(warehouse: Path) -> dict[str, Any]:
    """Every raw table's rows and the incremental state: what a failed run must not change."""
    tables = [
        row[0]
        for row in query(
            warehouse,
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'raw' "
            "ORDER BY 1",
        )
    ]
    content: dict[str, Any] = {
        f"raw.{table}": sorted(map(repr, query(warehouse, f'SELECT * FROM raw."{table}"')))
        for table in tables
    }
    content["_duckherd.state"] = sorted(
        map(
            repr, query(warehouse, "SELECT source, cursor_field, cursor_value FROM _duckherd.state")
        )
    )
    return content


def customers(count: int, start: int = 1, day: int = 1) -> list[Record]:
    """Simple records with an increasing `updated_at`."""
    return [
        {
            "id": i,
            "name": f"customer {i}",
            "revenue": round(i * 1.5, 2),
            "updated_at": f"2026-01-{day:02d}T00:00:{i % 60:02d}Z"
            if count < 60
            else f"2026-01-{day:02d}T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z",
        }
        for i in range(start, start + count)
    ]


@contextmanager
def served_directory(directory: Path) -> Iterator[str]:
    """Files of a directory over HTTP (for URL file sources)."""
    import functools
    from http.server import SimpleHTTPRequestHandler

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(directory))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"http://{host!s}:{port}"
    finally:
        server.shutdown()
        server.server_close()
