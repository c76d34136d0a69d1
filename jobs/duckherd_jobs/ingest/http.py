"""HTTP sources: walk the pages of a JSON API into a spool file DuckDB reads in one go.

Page bodies are not parsed in Python (a million records would cost seconds): each body is
written as one line `{"p": <body>}` and DuckDB unnests the records from it. Only the first
page is parsed, to learn the envelope (total, record path, the keys records carry). Every
later page is checked with byte counts for keys the first page did not have: when none
appear, DuckDB may infer types from a sample of pages; otherwise it infers from all of them,
so a column that shows up on page 900 is never dropped.
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import duckdb
import httpx

from duckherd.api import HttpSource, Source
from duckherd_jobs.fault_points import pause_point
from duckherd_jobs.ingest.errors import IngestError
from duckherd_jobs.ingest.extracted import Extracted
from duckherd_jobs.ingest.fetch import (
    FatalResponse,
    Fetcher,
    RetryableResponse,
    describe_failure,
)
from duckherd_jobs.redaction import redact
from duckherd_jobs.sql import quote_identifier, sql_string

SAMPLE_RECORDS = 20_480  # DuckDB's own default sample, counted in records rather than pages
_WRAP_OPEN, _WRAP_CLOSE = b'{"p":', b"}\n"


def dotted(body: Any, path: str) -> Any:
    """The value at a dotted path (`a.b.c`; empty for the root)."""
    node = body
    for part in [p for p in path.split(".") if p]:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _all_keys(node: Any, keys: set[str]) -> set[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            keys.add(key)
            _all_keys(value, keys)
    elif isinstance(node, list):
        for item in node:
            _all_keys(item, keys)
    return keys


def _balanced(body: bytes) -> bool:
    """A cheap test for a body cut short: brackets must balance (strings rarely hold any)."""
    return body.count(b"{") == body.count(b"}") and body.count(b"[") == body.count(b"]")


def check_json_body(response: httpx.Response) -> None:
    """Retry a body that is not whole JSON (a proxy or server cut it short)."""
    body = response.content
    if _balanced(body):
        return
    try:
        json.loads(body)
    except ValueError:
        raise RetryableResponse("response body is not complete JSON") from None


def _key_count(node: Any) -> int:
    if isinstance(node, dict):
        return len(node) + sum(_key_count(value) for value in node.values())
    if isinstance(node, list):
        return sum(_key_count(item) for item in node)
    return 0


@dataclass
class _KeyWatch:
    """Notices keys a page carries that the first page did not, with byte counts only.

    Fast test (two scans of the body): when every first-page record had the same number of
    keys k, a page of n records (n counted by a key all of them carry) whose `":` count is
    envelope + n*k has the first page's shape. Otherwise every known key is counted (one scan
    each): `":` occurrences beyond them are keys we have not seen. Known limit: a page that
    renames a key while keeping the count passes the fast test.
    """

    patterns: list[bytes]
    probe: bytes | None = None
    per_record: int = 0
    envelope: int = 0
    unknown_seen: bool = False

    @classmethod
    def from_first_page(cls, body: bytes, parsed: Any, records: Any) -> _KeyWatch:
        keys = sorted(_all_keys(parsed, set()))
        watch = cls([json.dumps(key).encode() + b":" for key in keys])
        # `"key" :` (a space before the colon) would hide keys from the counts: such a
        # serializer writes every page alike, so one look at the first page decides.
        watch.unknown_seen = b'" :' in body
        if isinstance(records, list) and records:
            counts = {_key_count(record) for record in records}
            common = set.intersection(*(set(record) for record in records))
            if len(counts) == 1 and common:
                watch.per_record = counts.pop()
                watch.probe = json.dumps(sorted(common)[0]).encode() + b":"
                watch.envelope = body.count(b'":') - len(records) * watch.per_record
        return watch

    def observe(self, body: bytes) -> None:
        if self.unknown_seen:
            return
        total = body.count(b'":')
        probe = self.probe
        if probe is not None and total == self.envelope + body.count(probe) * self.per_record:
            return
        known = sum(body.count(pattern) for pattern in self.patterns)
        self.unknown_seen = total != known


@dataclass
class _Spool:
    """Page bodies, one per line, in page order."""

    file: BinaryIO
    pages: int = 0
    largest: int = 0
    watch: _KeyWatch | None = None

    def write(self, body: bytes) -> None:
        # A raw newline in JSON can only be whitespace: flattening keeps one page per line.
        flat = body.replace(b"\n", b" ") if b"\n" in body else body
        self.file.write(_WRAP_OPEN)
        self.file.write(flat)
        self.file.write(_WRAP_CLOSE)
        self.pages += 1
        self.largest = max(self.largest, len(flat))
        if self.watch is not None:
            self.watch.observe(flat)


@dataclass
class _FirstPage:
    response: httpx.Response
    body: Any
    records: list[Any] | dict[str, Any] | None = field(default=None)

    @property
    def count(self) -> int:
        if isinstance(self.records, list):
            return len(self.records)
        return 0 if self.records is None else 1


class HttpExtractor:
    """Fetches every page of one HTTP source into a spool file."""

    def __init__(
        self, source: Source, env: Mapping[str, str], cursor: str | None, spool_dir: Path
    ) -> None:
        assert source.http is not None
        self.source = source
        self.http: HttpSource = source.http
        self.cursor = cursor
        self.spool_path = spool_dir / f"{source.name}.pages.ndjson"
        self.secrets: list[str] = []
        self.params: dict[str, Any] = dict(self.http.params)
        headers = dict(self.http.headers)
        auth = self._credentials(env, headers)
        if self.http.incrementalParam and cursor is not None:
            self.params[self.http.incrementalParam] = cursor
        self.fetcher = Fetcher(
            timeout_seconds=self.http.timeoutSeconds,
            max_retries=self.http.maxRetries,
            headers=headers,
            auth=auth,
            pool_size=self.http.concurrency,
        )

    def _credentials(self, env: Mapping[str, str], headers: dict[str, str]) -> httpx.Auth | None:
        auth = self.http.auth
        if auth is None:
            return None
        secret = auth.secretRef.resolve(env)
        self.secrets.append(secret)
        if auth.type == "bearer":
            headers["Authorization"] = f"Bearer {secret}"
        elif auth.type == "header":
            headers[auth.headerName or "Authorization"] = secret
        elif auth.type == "query":
            self.params[auth.paramName or "api_key"] = secret
        else:
            user, _, password = secret.partition(":")
            return httpx.BasicAuth(user, password)
        return None

    def extract(self) -> Extracted:
        try:
            with self.spool_path.open("wb") as file:
                spool = _Spool(file)
                first = self._walk(spool)
        except IngestError:
            raise
        except Exception as error:
            raise IngestError(self._where(redact(describe_failure(error), self.secrets))) from None
        finally:
            self.fetcher.close()
        return self._extracted(spool, first)

    def _where(self, cause: str) -> str:
        return f"source {self.source.name} (http {self.http.url}): {cause}"

    # ------------------------------------------------------------------ pagination

    def _walk(self, spool: _Spool) -> _FirstPage:
        pagination = self.http.pagination
        first = self._first_page(spool)
        if first.count == 0 or pagination.type == "none":
            return first
        if pagination.type in ("page", "offset"):
            total = dotted(first.body, pagination.totalPath) if pagination.totalPath else None
            if isinstance(total, int):
                self._fetch_known_pages(spool, first, total)
            else:
                self._fetch_until_short(spool, first)
        elif pagination.type == "cursor":
            self._follow_cursor(spool, first)
        else:
            self._follow_links(spool, first)
        return first

    def _page_params(self, index: int, step: int | None = None) -> dict[str, Any]:
        """Query parameters of the page at `index` (0-based) in page and offset modes; `step`
        is the page size the server actually uses (offsets advance by it)."""
        pagination = self.http.pagination
        params = dict(self.params)
        if pagination.sizeParam:
            params[pagination.sizeParam] = pagination.pageSize
        if pagination.type == "page":
            params[pagination.pageParam] = pagination.startPage + index
        elif pagination.type == "offset":
            params[pagination.offsetParam] = index * (step or pagination.pageSize)
        return params

    def _first_page(self, spool: _Spool) -> _FirstPage:
        pagination = self.http.pagination
        params = self._page_params(0) if pagination.type in ("page", "offset") else self.params
        response = self._get(self.http.url, params)
        try:
            body = json.loads(response.content)
        except ValueError as error:
            raise IngestError(self._where(f"first page is not JSON: {error}")) from None
        records = dotted(body, self.http.recordsPath)
        if records is None and self.http.recordsPath and isinstance(body, dict):
            raise IngestError(
                self._where(
                    f"recordsPath {self.http.recordsPath!r} is not in the response "
                    f"(top-level keys: {', '.join(sorted(body)[:20])})"
                )
            )
        if records is not None and not isinstance(records, list | dict):
            raise IngestError(
                self._where(f"recordsPath {self.http.recordsPath!r} is not a list of records")
            )
        if isinstance(records, list) and any(not isinstance(r, dict) for r in records):
            raise IngestError(
                self._where(f"recordsPath {self.http.recordsPath!r} holds non-object records")
            )
        content = response.content.replace(b"\n", b" ")
        spool.watch = _KeyWatch.from_first_page(content, body, records)
        spool.write(content)
        spool.file.flush()
        pause_point("ingest.http.page-spooled")
        return _FirstPage(response, body, records)

    def _page_limit(self, pages: int) -> int:
        limit = self.http.pagination.maxPages
        return pages if limit is None else min(pages, limit)

    def _effective_page_size(self, first: _FirstPage, total: int | None) -> int:
        """The page size the server really uses: many cap it below what was asked for."""
        asked = self.http.pagination.pageSize
        more_exists = total is None or first.count < total
        return first.count if 0 < first.count < asked and more_exists else asked

    def _fetch_known_pages(self, spool: _Spool, first: _FirstPage, total: int) -> None:
        """Pages 2..N, N known from the total: fetched concurrently, written in order."""
        size = self._effective_page_size(first, total)
        pages = self._page_limit(math.ceil(total / size))
        tasks = (self._page_params(index, size) for index in range(1, pages))
        self._fetch_ordered(spool, tasks)

    def _fetch_ordered(self, spool: _Spool, tasks: Iterator[dict[str, Any]]) -> None:
        # A bounded window keeps memory flat when one page is slow (it is being retried) while
        # the others arrive: at most 2 x concurrency bodies wait to be written.
        window: deque[Future[httpx.Response]] = deque()
        workers = self.http.concurrency
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ingest-http") as pool:
            try:
                for params in tasks:
                    window.append(pool.submit(self._get_page, params))
                    if len(window) >= 2 * workers:
                        spool.write(window.popleft().result().content)
                while window:
                    spool.write(window.popleft().result().content)
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise

    def _get_page(self, params: dict[str, Any]) -> httpx.Response:
        return self._get(self.http.url, params)

    def _get(self, url: str, params: Mapping[str, Any] | None) -> httpx.Response:
        """One page, retried; the error names the request (without a credential)."""
        try:
            return self.fetcher.get(url, params, check_json_body)
        except (httpx.HTTPError, RetryableResponse, FatalResponse) as error:
            hidden = self.http.auth.paramName if self.http.auth else None
            shown = {k: v for k, v in (params or {}).items() if k != hidden}
            retried = (
                ""
                if isinstance(error, FatalResponse)
                else (f" after {self.http.maxRetries} retries")
            )
            cause = redact(describe_failure(error), self.secrets)
            request = f"GET with {shown}" if shown else "GET"
            raise IngestError(self._where(f"{request}: {cause}{retried}")) from None

    def _fetch_until_short(self, spool: _Spool, first: _FirstPage) -> None:
        """Page after page until one comes back short or empty (the total is unknown).

        A first page shorter than asked may be the only page or a server capping the page
        size: the next page (empty in the first case) tells which.
        """
        size = self._effective_page_size(first, None)
        count, index, previous = first.count, 1, first.response.content
        while count >= size and count > 0 and index < self._page_limit(index + 1):
            response = self._get_page(self._page_params(index, size))
            if response.content == previous:
                raise IngestError(
                    self._where(
                        f"page {index + 1} repeats the page before: does the API "
                        "read the page parameter?"
                    )
                )
            count, previous = self._count(response), response.content
            if count:
                spool.write(response.content)
            index += 1

    def _count(self, response: httpx.Response) -> int:
        records = dotted(json.loads(response.content), self.http.recordsPath)
        return len(records) if isinstance(records, list) else int(records is not None)

    def _follow_cursor(self, spool: _Spool, first: _FirstPage) -> None:
        pagination = self.http.pagination
        body, pages, seen = first.body, 1, set()
        while pages < self._page_limit(pages + 1):
            cursor = dotted(body, pagination.cursorPath)
            if cursor in (None, ""):
                return
            if str(cursor) in seen:
                raise IngestError(self._where(f"cursor {cursor!r} came back twice"))
            seen.add(str(cursor))
            response = self._get(self.http.url, {**self.params, pagination.cursorParam: cursor})
            body = json.loads(response.content)
            records = dotted(body, self.http.recordsPath)
            if not records:
                return
            spool.write(response.content)
            pages += 1

    def _follow_links(self, spool: _Spool, first: _FirstPage) -> None:
        response, pages = first.response, 1
        auth = self.http.auth
        extra = {k: v for k, v in self.params.items() if auth and k == (auth.paramName or "")}
        while pages < self._page_limit(pages + 1):
            link = response.links.get("next", {}).get("url")
            if not link:
                return
            target = str(response.url.join(link))
            response = self._get(target, extra or None)
            spool.write(response.content)
            pages += 1

    # ------------------------------------------------------------------ reading

    def _extracted(self, spool: _Spool, first: _FirstPage) -> Extracted:
        if first.count == 0:
            return Extracted(select_sql="", empty=True)
        path = ".".join(
            ["p", *(quote_identifier(p) for p in self.http.recordsPath.split(".") if p)]
        )
        unnest = (
            f"unnest({path}, max_depth := 2)"
            if isinstance(first.records, list)
            else (f"unnest({path})")
        )
        sample_pages = max(1, math.ceil(SAMPLE_RECORDS / max(first.count, 1)))
        sampled = spool.watch is not None and not spool.watch.unknown_seen
        sampled = sampled and sample_pages < spool.pages
        options = (
            "format = 'newline_delimited', "
            f"maximum_object_size = {max(spool.largest + 1024, 16 * 1024 * 1024)}"
        )
        parameters: list[object] = [str(self.spool_path)]
        full = f"SELECT {unnest} FROM read_json(?, {options}, sample_size = -1)"
        # Infer the page type here, before the warehouse lock, and hand it to the load: the
        # load then parses once instead of sampling again.
        page_type = self._page_type(options, sample_pages if sampled else -1)
        typed = (
            f"SELECT {unnest} FROM read_json(?, {options}, records = true, "
            f"columns = {{'p': {page_type}}})"
        )
        return Extracted(typed, parameters, fallback_sql=full if sampled else None)

    def _page_type(self, options: str, sample: int) -> str:
        connection = duckdb.connect()
        try:
            rows = connection.execute(
                f"DESCRIBE SELECT p FROM read_json(?, {options}, sample_size = {sample})",
                [str(self.spool_path)],
            ).fetchall()
        except duckdb.Error as error:
            raise IngestError(
                self._where(f"the fetched pages are not valid JSON: {error}")
            ) from None
        finally:
            connection.close()
        return sql_string(str(rows[0][1]))


def extract_http(
    source: Source, env: Mapping[str, str], cursor: str | None, spool_dir: Path
) -> Extracted:
    return HttpExtractor(source, env, cursor, spool_dir).extract()
