"""PerLoop: one value per running event loop, made on first use there."""

from __future__ import annotations

import asyncio

from duckherd_operator.per_loop import PerLoop


def test_one_value_per_loop_made_once() -> None:
    made: list[set[str]] = []

    def factory() -> set[str]:
        made.append(set())
        return made[-1]

    values = PerLoop(factory)

    async def twice() -> tuple[set[str], set[str]]:
        return values.get(), values.get()

    first, again = asyncio.run(twice())
    assert first is again
    other, _ = asyncio.run(twice())
    assert other is not first
    assert len(made) == 2
