"""A burst of events for one pipeline costs at most two passes: the one under way, and one
waiting that reads the cluster after them all (reconcile.sync)."""

from __future__ import annotations

import asyncio
from typing import Any

from duckherd_operator.reconcile import sync


class SlowApi:
    """A client whose every GET of the pipeline waits until released, and finds nothing (the
    pass ends there). Narrow: only the number and order of passes matter here."""

    def __init__(self) -> None:
        self.gets: list[str] = []
        self.release = asyncio.Event()

    async def get(self, path: str) -> None:
        self.gets.append(path)
        await self.release.wait()


async def _settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def test_events_during_a_pass_cost_one_more_pass_not_one_each() -> None:
    api: Any = SlowApi()
    first = asyncio.create_task(sync(api, "ns", "shop"))
    await _settle()
    assert len(api.gets) == 1  # the first pass is reading
    burst = [asyncio.create_task(sync(api, "ns", "shop")) for _ in range(5)]
    await _settle()
    assert sum(task.done() for task in burst) == 4  # one waits for the lock; the rest are covered
    other = asyncio.create_task(sync(api, "ns", "other"))  # another pipeline is not held up
    await _settle()
    assert api.gets[-1].endswith("/datapipelines/other")
    api.release.set()
    await asyncio.gather(first, *burst, other)
    assert [path.rsplit("/", 1)[1] for path in api.gets] == ["shop", "other", "shop"]


async def test_an_event_after_the_waiting_pass_started_gets_its_own_pass() -> None:
    api: Any = SlowApi()
    first = asyncio.create_task(sync(api, "ns", "shop"))
    second = asyncio.create_task(sync(api, "ns", "shop"))
    await _settle()
    api.release.set()
    await asyncio.gather(first, second)
    assert len(api.gets) == 2
    api.release.clear()
    third = asyncio.create_task(sync(api, "ns", "shop"))
    await _settle()
    assert len(api.gets) == 3 and not third.done()
    api.release.set()
    await third


async def test_a_waiting_pass_cancelled_leaves_room_for_the_next() -> None:
    api: Any = SlowApi()
    first = asyncio.create_task(sync(api, "ns", "shop"))
    waiting = asyncio.create_task(sync(api, "ns", "shop"))
    await _settle()
    waiting.cancel()
    await _settle()
    later = asyncio.create_task(sync(api, "ns", "shop"))
    await _settle()
    api.release.set()
    await asyncio.gather(first, later)
    assert len(api.gets) == 2  # the later event still got its pass
