"""kopf_toggles: Kopf's ToggleSet keeps its meaning and wakes its waiters once per flip."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from kopf._cogs.aiokits import aiotoggles

from duckherd_operator.kopf_toggles import notify_only_on_change


@pytest.fixture(autouse=True)
def patched() -> Iterator[None]:
    cls = aiotoggles.ToggleSet
    saved = {name: cls.__dict__[name] for name in ("make_toggle", "drop_toggle", "drop_toggles")}
    notify_only_on_change()
    notify_only_on_change()  # idempotent
    yield
    for name, method in saved.items():
        setattr(cls, name, method)
    delattr(cls, "_duckherd_notifies_on_change")


def count_wakeups(toggles: aiotoggles.ToggleSet) -> list[int]:
    calls = [0]
    condition = toggles._condition
    original = condition.notify_all

    def counted() -> None:
        calls[0] += 1
        original()

    condition.notify_all = counted  # type: ignore[method-assign]
    return calls


async def test_waiters_are_released_when_the_last_object_is_indexed_and_not_before() -> None:
    """As Kopf uses it: one toggle per object not indexed yet; handlers wait for all."""
    indexed = aiotoggles.ToggleSet(all)
    wakeups = count_wakeups(indexed)
    pending = [await indexed.make_toggle(name=f"object {n}") for n in range(1000)]
    waiters = [asyncio.create_task(indexed.wait_for(True)) for _ in range(200)]
    await asyncio.sleep(0)
    for toggle in pending[:-1]:
        await indexed.drop_toggle(toggle)
        assert not any(waiter.done() for waiter in waiters[:1])
    await asyncio.sleep(0.01)
    assert not any(waiter.done() for waiter in waiters)
    await indexed.drop_toggle(pending[-1])
    await asyncio.wait_for(asyncio.gather(*waiters), timeout=5)
    # The set went off once (the first toggle) and on once (the last one dropped): two
    # wake-ups, not one per toggle made or dropped (Kopf's own: 2,000).
    assert wakeups[0] == 2


async def test_wait_for_off_and_the_toggles_own_turns_still_wake() -> None:
    paused = aiotoggles.ToggleSet(any)
    assert paused.is_off()
    off = asyncio.create_task(paused.wait_for(False))
    await asyncio.sleep(0)
    assert off.done()  # already off
    on = asyncio.create_task(paused.wait_for(True))
    toggle = await paused.make_toggle(False, name="a")
    await asyncio.sleep(0.01)
    assert not on.done()
    await toggle.turn_to(True)  # Toggle.turn_to: Kopf's code, it notifies the shared condition
    await asyncio.wait_for(on, timeout=5)
    off_again = asyncio.create_task(paused.wait_for(False))
    await asyncio.sleep(0.01)
    assert not off_again.done()
    await paused.drop_toggles([toggle])
    await asyncio.wait_for(off_again, timeout=5)
    assert len(paused) == 0


async def test_making_a_toggle_that_flips_the_set_wakes_its_waiters() -> None:
    ready = aiotoggles.ToggleSet(all)
    went_off = asyncio.create_task(ready.wait_for(False))
    await asyncio.sleep(0.01)
    assert not went_off.done()  # an empty set is on
    await ready.make_toggle(False, name="blocker")
    await asyncio.wait_for(went_off, timeout=5)
