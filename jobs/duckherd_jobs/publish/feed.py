"""A warehouse query rendered in a background thread while a target consumes the result.

Why a thread: rendering a million rows (JSON documents, CSV) and sending them each take
seconds, and DuckDB, Arrow and the sockets all release the GIL, so overlapping the two nearly
halves a publish. The feed reads on its own read-only connection, opened while the caller's
connection is still open (the same database instance, so no lock wait), and closes it as soon
as the query is done: the warehouse stays locked for as long as the read takes, never for the
network I/O. Rendered batches wait in memory for the consumer, as a full read would.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Generic, TypeVar

import duckdb
import pyarrow as pa

T = TypeVar("T")
_DONE = object()


class FeedClosed(RuntimeError):
    """The feed was closed before its query finished."""


class BatchFeed(Generic[T]):
    """`render(batch)` for every record batch of `query`, in order; iterate it once."""

    def __init__(
        self,
        warehouse: Path,
        query: str,
        render: Callable[[pa.RecordBatch], T],
        batch_rows: int,
    ) -> None:
        self._connection = duckdb.connect(str(warehouse), read_only=True)
        self._query = query
        self._render = render
        self._batch_rows = batch_rows
        self._items: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._closed = threading.Event()
        self._iterated = False
        self._thread = threading.Thread(target=self._produce, name="duckherd-feed", daemon=True)
        self._thread.start()

    def _produce(self) -> None:
        try:
            reader = self._connection.sql(self._query).to_arrow_reader(self._batch_rows)
            for batch in reader:
                if self._closed.is_set():
                    raise FeedClosed("the feed was closed")
                self._items.put(self._render(batch))
            self._items.put(_DONE)
        except BaseException as error:  # handed to the consumer, who raises it
            self._items.put(_without_frames(error))
        finally:
            self._connection.close()

    def __iter__(self) -> Iterator[T]:
        if self._iterated:
            raise RuntimeError("a feed can be iterated only once")
        self._iterated = True
        while True:
            item = self._items.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]

    def close(self) -> None:
        """Stop the query (if it still runs) and wait for the thread; idempotent."""
        self._closed.set()
        if self._thread.is_alive():
            with contextlib.suppress(duckdb.Error):  # the producer closed it meanwhile
                self._connection.interrupt()
            self._thread.join()


def _without_frames(error: BaseException) -> BaseException:
    """The error without this module's producer frame (it refers to the feed, a cycle) and
    with the locals of the frames below it cleared (a DuckDB relation there holds the file
    open): kept in the queue as it is, it blocks the next read-write connect in this process
    until a garbage collection runs."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        traceback.clear_frames(current.__traceback__)
        pending += [current.__cause__, current.__context__]
    trace = error.__traceback__
    return error.with_traceback(trace.tb_next if trace is not None else None)
