"""One fix to Kopf, applied when the operator starts: a restart that scales with the fleet.

Until every object of every indexed kind has been indexed, Kopf holds each object's handlers
(`operator_indexed.wait_for(True)` in its processing). It tracks that with a ToggleSet: one
toggle per object not indexed yet, all sharing one asyncio.Condition, and every toggle made
or dropped wakes every waiter (`notify_all`). At a restart that is quadratic in the objects:
an operator restarted with 1,000 pipelines (about 6,000 Duckherd objects of the indexed
kinds) spent a whole core for 8 minutes on those wake-ups (py-spy: nearly all of its event
loop in `Condition.notify_all`), had resumed 95 pipelines, and its waiting workers held
480 MiB of its 512Mi limit (benchmarks/bench_fleet.py, the restart phase; docs/fleet.md).

Adding or dropping a toggle matters to a waiter only when it changes the set's state (what
`wait_for` waits for), so the replacements below wake the waiters only then: one wake-up per
flip instead of one per object. Toggles' own `turn_to` is Kopf's, unchanged.

Hand-written because Kopf (1.45.2) has no setting for it; it touches three methods of one
internal class, checked when applied. tests/unit/test_kopf_toggles.py holds Kopf's ToggleSet
semantics against it and counts the wake-ups. Drop it once Kopf notifies only on a change.
"""

from __future__ import annotations

from collections.abc import Iterable

from kopf._cogs.aiokits import aiotoggles

_PATCHED = "_duckherd_notifies_on_change"


async def _make_toggle(
    self: aiotoggles.ToggleSet, __val: bool = False, *, name: str | None = None
) -> aiotoggles.Toggle:
    toggle = aiotoggles.Toggle(__val, name=name, condition=self._condition)
    async with self._condition:
        before = self.is_on()
        self._toggles.add(toggle)
        if self.is_on() != before:
            self._condition.notify_all()
    return toggle


async def _drop_toggle(self: aiotoggles.ToggleSet, toggle: aiotoggles.Toggle) -> None:
    await _drop_toggles(self, [toggle])


async def _drop_toggles(self: aiotoggles.ToggleSet, toggles: Iterable[aiotoggles.Toggle]) -> None:
    async with self._condition:
        before = self.is_on()
        self._toggles.difference_update(toggles)
        if self.is_on() != before:
            self._condition.notify_all()


def notify_only_on_change() -> None:
    """Replace ToggleSet's make/drop methods (idempotent). Raises RuntimeError if Kopf's
    class no longer looks as this was written for (then this module should go)."""
    cls = aiotoggles.ToggleSet
    if getattr(cls, _PATCHED, False):
        return
    probe = cls(all)
    expected = ("_condition", "_toggles", "is_on", "make_toggle", "drop_toggle", "drop_toggles")
    missing = [name for name in expected if not hasattr(probe, name)]
    if missing:
        raise RuntimeError(f"kopf's ToggleSet has changed (no {', '.join(missing)})")
    cls.make_toggle = _make_toggle  # type: ignore[method-assign]
    cls.drop_toggle = _drop_toggle  # type: ignore[method-assign]
    cls.drop_toggles = _drop_toggles  # type: ignore[method-assign]
    setattr(cls, _PATCHED, True)
