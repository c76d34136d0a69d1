"""A deterministic, Salesforce-like customers and orders API that stands in for a real one.

`GET /customers?page=1&page_size=1000&updated_since=<ISO 8601>` answers
`{"data": [...], "page": n, "page_size": m, "total": N}` plus an RFC 8288 `Link: <...>;
rel="next"` header while more pages follow. Customers were created over the five years before
`as_of`, 20% more each year than the year before; every timestamp is relative to `as_of`
(default: now floored to the hour) and the latest `updated_at` is less than an hour before it,
so a freshness check on the loaded data passes. The same (customers, as_of, seed) always
serves the same bytes.

`GET /orders` pages the same way through the orders of the last 30 days (about 1.5 per
customer): each order belongs to a served customer, each customer orders at the pace of their
lifetime `orders_count`, and `updated_since` filters on `ordered_at` (orders are immutable).

Every record is rendered to JSON bytes once at start-up: a page is then a join of ready bytes,
so the server keeps up with a client reading a million records (benchmark B1).
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import numpy as np

from duckherd.contract import ENV_SOURCE_URL_PREFIX

YEARS_OF_HISTORY = 5
YEARLY_GROWTH = 1.2
DEFAULT_SEED = 42
MAX_PAGE_SIZE = 100_000

_FIRST_NAMES = (
    "anna",
    "ben",
    "carla",
    "david",
    "elena",
    "farid",
    "grace",
    "hiro",
    "ines",
    "jonas",
    "kara",
    "liam",
    "maya",
    "nils",
    "olga",
    "pedro",
    "quinn",
    "rosa",
    "sven",
    "tara",
)
_NAME_WORDS = (
    "Acme",
    "Blue",
    "Cedar",
    "Delta",
    "Ember",
    "Fjord",
    "Granite",
    "Harbor",
    "Iris",
    "Juniper",
    "Kestrel",
    "Lumen",
    "Maple",
    "Nimbus",
    "Orbit",
    "Pioneer",
    "Quartz",
    "River",
    "Summit",
    "Tidal",
    "Umber",
    "Vector",
    "Willow",
    "Zenith",
)
_NAME_SUFFIXES = ("Labs", "Systems", "Foods", "Logistics", "Health", "Retail", "Energy", "Media")
_COUNTRIES = (
    ("US", 30),
    ("DE", 12),
    ("GB", 10),
    ("FR", 8),
    ("CA", 7),
    ("NL", 5),
    ("ES", 5),
    ("IT", 5),
    ("SE", 4),
    ("JP", 4),
    ("AU", 4),
    ("BR", 3),
    ("IN", 3),
)
_SEGMENTS = (("SMB", 60, 80.0), ("Mid-Market", 30, 900.0), ("Enterprise", 10, 12_000.0))
ORDERS_WINDOW_DAYS = 30
SOURCES = ("customers", "orders")
"""The paths the API serves, named like the example's sources that read them."""
_ORDER_STATUSES = (("completed", 90), ("returned", 6), ("cancelled", 4))


def default_as_of() -> datetime:
    """Now, floored to the hour (UTC): stable across the requests of one run."""
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(text: str) -> datetime:
    """ISO 8601 with `Z` or an offset; a naive value is taken as UTC."""
    moment = datetime.fromisoformat(text.strip().replace(" ", "T"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


_RECORD = (
    '{"customer_id":%d,"name":"%s","email":"%s.%d@%s.example","country":"%s","segment":"%s",'
    '"created_at":"%sZ","updated_at":"%sZ","total_revenue":%.2f,"orders_count":%d,'
    '"is_active":%s}'
)


def _choice(
    rng: np.random.Generator,
    options: Sequence[str],
    count: int,
    weights: Sequence[float] | None = None,
) -> list[str]:
    probabilities = None if weights is None else np.asarray(weights) / float(sum(weights))
    picked = rng.choice(len(options), size=count, p=probabilities)
    return [options[i] for i in picked.tolist()]


def _utc_texts(epochs: np.ndarray[Any, Any]) -> list[str]:
    return np.datetime_as_string(epochs.astype("datetime64[s]"), unit="s").tolist()  # type: ignore[no-any-return]


@dataclass(frozen=True)
class _Customers:
    """The drawn columns every customer record and the orders are rendered from."""

    created: np.ndarray[Any, Any]  # epoch seconds
    updated: np.ndarray[Any, Any]
    orders: np.ndarray[Any, Any]  # lifetime orders_count
    revenue: np.ndarray[Any, Any]  # lifetime total_revenue
    rng: np.random.Generator  # positioned after the numeric columns (names come next)


def _draw_customers(
    count: int, as_of: datetime, seed: int, revenue_scale: float
) -> tuple[_Customers, np.ndarray[Any, Any]]:
    rng = np.random.default_rng(seed)
    now = int(as_of.timestamp())
    year = 365.25 * 86400
    ranks = (np.arange(count) + rng.random(count)) / max(count, 1)
    span = YEARLY_GROWTH**YEARS_OF_HISTORY - 1
    offsets = np.log1p(ranks * span) / math.log(YEARLY_GROWTH)
    created = np.minimum(
        now - int(year * YEARS_OF_HISTORY) + (offsets * year).astype(np.int64), now - 7200
    )
    age = now - created
    # Most accounts were touched recently; a long tail was last updated long ago.
    updated = created + (age * (1 - rng.random(count) ** 3) * 0.999).astype(np.int64)
    if count:  # the freshest update is recent: freshness checks on the loaded data pass
        updated[-1] = now - 17 * 60
    segment_index = rng.choice(len(_SEGMENTS), size=count, p=[s[1] / 100 for s in _SEGMENTS])
    scales = np.asarray([s[2] for s in _SEGMENTS])[segment_index]
    orders = (np.maximum(age / (30.44 * 86400), 0.1) * rng.uniform(0.2, 3.0, count)).astype(
        np.int64
    )
    # revenue_scale shifts the revenue distribution (every value stays positive): drift demos.
    revenue = np.round(orders * scales * rng.lognormal(0, 0.5, count) * revenue_scale, 2)
    return _Customers(created, updated, orders, revenue, rng), segment_index


def render_customers(
    count: int, as_of: datetime, seed: int = DEFAULT_SEED, revenue_scale: float = 1.0
) -> tuple[list[bytes], list[int]]:
    """Each customer's JSON bytes and `updated_at` (epoch seconds), ordered by id.

    Columns are drawn with numpy and each record is %-formatted rather than json.dumps'd
    dicts: a million records render in about two seconds instead of twenty. Every value is a
    number or a word from the fixed lists above, so nothing needs escaping.
    """
    drawn, segment_index = _draw_customers(count, as_of, seed, revenue_scale)
    rng = drawn.rng
    first = _choice(rng, _NAME_WORDS, count)
    second = _choice(rng, _NAME_WORDS, count)
    suffix = _choice(rng, _NAME_SUFFIXES, count)
    contact = _choice(rng, _FIRST_NAMES, count)
    country = _choice(rng, [c for c, _ in _COUNTRIES], count, [w for _, w in _COUNTRIES])
    segment = [_SEGMENTS[i][0] for i in segment_index.tolist()]
    active = ["true" if a else "false" for a in (rng.random(count) < 0.9).tolist()]
    created_text, updated_text = _utc_texts(drawn.created), _utc_texts(drawn.updated)
    rendered = [
        (
            _RECORD
            % (
                i + 1,
                f"{first[i]} {second[i]} {suffix[i]}",
                contact[i],
                i + 1,
                f"{first[i]}{second[i]}{suffix[i]}".lower(),
                country[i],
                segment[i],
                created_text[i],
                updated_text[i],
                revenue_i,
                orders_i,
                active[i],
            )
        ).encode()
        for i, (revenue_i, orders_i) in enumerate(
            zip(drawn.revenue.tolist(), drawn.orders.tolist(), strict=True)
        )
    ]
    return rendered, drawn.updated.tolist()


_ORDER = '{"order_id":%d,"customer_id":%d,"ordered_at":"%sZ","status":"%s","order_total":%.2f}'


def render_orders(
    customers: int, as_of: datetime, seed: int = DEFAULT_SEED
) -> tuple[list[bytes], list[int]]:
    """The last 30 days of orders of the customers `render_customers` serves: JSON bytes and
    `ordered_at` (epoch seconds), ordered by time (order ids follow it).

    A customer orders at their lifetime pace (`orders_count` over their age), so the window
    holds a Poisson draw of that rate; each order is worth about the customer's average
    order value. A second generator draws the orders: the customers' bytes stay the same.
    """
    drawn, _ = _draw_customers(customers, as_of, seed, 1.0)
    rng = np.random.default_rng(seed + 1)
    now = int(as_of.timestamp())
    window = np.minimum(now - drawn.created, ORDERS_WINDOW_DAYS * 86400)
    rate = drawn.orders / np.maximum(now - drawn.created, 86400)
    per_customer = rng.poisson(rate * window)
    owner = np.repeat(np.arange(customers), per_customer)
    ordered = now - 3600 - (rng.random(len(owner)) * (window[owner] - 3600)).astype(np.int64)
    average = drawn.revenue / np.maximum(drawn.orders, 1)
    totals = np.round(np.maximum(average[owner], 5.0) * rng.lognormal(0, 0.3, len(owner)), 2)
    status = _choice(
        rng, [s for s, _ in _ORDER_STATUSES], len(owner), [w for _, w in _ORDER_STATUSES]
    )
    by_time = np.argsort(ordered, kind="stable")
    ordered_text = _utc_texts(ordered[by_time])
    rendered = [
        (_ORDER % (n + 1, owner[i] + 1, ordered_text[n], status[i], totals[i])).encode()
        for n, i in enumerate(by_time.tolist())
    ]
    return rendered, ordered[by_time].tolist()


class Catalog:
    """Pre-rendered records, their cursor timestamps, and the page bodies cut from them."""

    def __init__(self, rendered: list[bytes], stamps: list[int], as_of: datetime) -> None:
        self.as_of = as_of
        self._rendered, self._updated = rendered, stamps
        self._filtered: dict[float, list[int]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._rendered)

    def _matching(self, updated_since: datetime | None) -> Sequence[int] | None:
        if updated_since is None:
            return None
        key = updated_since.timestamp()
        with self._lock:
            if key not in self._filtered:
                self._filtered[key] = [i for i, t in enumerate(self._updated) if t > key]
            return self._filtered[key]

    def page(self, page: int, page_size: int, updated_since: datetime | None) -> tuple[bytes, int]:
        """The JSON body of one page and the total number of matching records."""
        matching = self._matching(updated_since)
        total = len(self._rendered) if matching is None else len(matching)
        start = (page - 1) * page_size
        stop = min(start + page_size, total)
        if matching is None:
            chosen = self._rendered[start:stop] if start < total else []
        else:
            chosen = [self._rendered[i] for i in matching[start:stop]]
        head = b'{"data":['
        tail = f'],"page":{page},"page_size":{page_size},"total":{total}}}'.encode()
        return head + b",".join(chosen) + tail, total


def source_url_env(api: str) -> dict[str, str]:
    """The `DUCKHERD_SOURCE_URL_<SOURCE>` variables that point the example's sources (one
    per path this API serves, named like it) at the demo API running at `api`."""
    return {f"{ENV_SOURCE_URL_PREFIX}{name.upper()}": f"{api}/{name}" for name in SOURCES}


def build_catalogs(
    customers: int, as_of: datetime, seed: int = DEFAULT_SEED, revenue_scale: float = 1.0
) -> dict[str, Catalog]:
    """What the demo API serves, by path."""
    return {
        "/customers": Catalog(*render_customers(customers, as_of, seed, revenue_scale), as_of),
        "/orders": Catalog(*render_orders(customers, as_of, seed), as_of),
    }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _DemoServer

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: a benchmark makes a thousand requests."""

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/healthz":
            send_json(self, HTTPStatus.OK, b'{"ok":true}')
            return
        catalog = self.server.catalogs.get(url.path)
        if catalog is None:
            body = b'{"error":"not found: use /customers or /orders"}'
            send_json(self, HTTPStatus.NOT_FOUND, body)
            return
        try:
            page, page_size, since = _parse_query(url.query)
        except ValueError as error:
            send_json(self, HTTPStatus.BAD_REQUEST, json.dumps({"error": str(error)}).encode())
            return
        if self.server.latency_seconds:
            threading.Event().wait(self.server.latency_seconds)
        body, total = catalog.page(page, page_size, since)
        headers = {}
        if page * page_size < total:
            query: dict[str, str | int] = {"page": page + 1, "page_size": page_size}
            if since is not None:
                query["updated_since"] = iso(since)
            host = self.headers.get("Host") or self.server.host_and_port
            headers["Link"] = f'<http://{host}{url.path}?{urlencode(query)}>; rel="next"'
        send_json(self, HTTPStatus.OK, body, headers)


def send_json(
    handler: BaseHTTPRequestHandler,
    status: int,
    body: bytes,
    headers: Mapping[str, str] | None = None,
) -> None:
    """One JSON response with its length (keep-alive clients need it) and extra headers."""
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)


def _parse_query(query: str) -> tuple[int, int, datetime | None]:
    params = {key: values[-1] for key, values in parse_qs(query).items()}
    try:
        page = int(params.get("page", "1"))
        page_size = int(params.get("page_size", "100"))
    except ValueError:
        raise ValueError("page and page_size must be integers") from None
    if page < 1 or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page must be >= 1 and page_size within 1..{MAX_PAGE_SIZE}")
    since = params.get("updated_since")
    try:
        return page, page_size, parse_timestamp(since) if since else None
    except ValueError:
        raise ValueError(f"updated_since {since!r} is not an ISO 8601 timestamp") from None


class _DemoServer(ThreadingHTTPServer):
    daemon_threads = True
    # A client fetching pages concurrently opens several connections at once.
    request_queue_size = 128

    def __init__(
        self, address: tuple[str, int], catalogs: Mapping[str, Catalog], latency_seconds: float
    ) -> None:
        super().__init__(address, _Handler)
        self.catalogs = catalogs
        self.latency_seconds = latency_seconds

    @property
    def host_and_port(self) -> str:
        host, port = self.server_address[:2]
        return f"{host!s}:{port}"


class DemoSource:
    """The demo API served from a background thread: `with DemoSource(500) as url: ...`."""

    def __init__(
        self,
        customers: int = 10_000,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        as_of: datetime | None = None,
        seed: int = DEFAULT_SEED,
        latency_seconds: float = 0.0,
        revenue_scale: float = 1.0,
    ) -> None:
        catalogs = build_catalogs(customers, as_of or default_as_of(), seed, revenue_scale)
        self.catalog, self.orders = catalogs["/customers"], catalogs["/orders"]
        self._server = _DemoServer((host, port), catalogs, latency_seconds)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self._server.host_and_port}"

    def __enter__(self) -> str:
        self._thread.start()
        return self.url

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def serve(
    host: str = "127.0.0.1",
    port: int = 8765,
    customers: int = 10_000,
    *,
    as_of: datetime | None = None,
    seed: int = DEFAULT_SEED,
    latency_seconds: float = 0.0,
) -> None:
    """Serve until interrupted (`duckherd demo-source`)."""
    catalogs = build_catalogs(customers, as_of or default_as_of(), seed)
    server = _DemoServer((host, port), catalogs, latency_seconds)
    customers_served, orders = catalogs["/customers"], catalogs["/orders"]
    print(
        f"demo source: {len(customers_served)} customers and {len(orders)} orders as of "
        f"{iso(customers_served.as_of)} on http://{server.host_and_port}/customers and /orders",
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
