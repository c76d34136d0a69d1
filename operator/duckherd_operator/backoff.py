"""How long to wait before the next attempt: one rule for every retry the operator makes (the
Kubernetes API in client.py, webhooks in webhook.py).

Hand-written rather than tenacity: the operator must not load what only the jobs need
(tests/unit/test_layers.py), and each caller's loop is a few lines around this one function.
"""

from __future__ import annotations

import random


def retry_delay(attempt: int, retry_after: str | None, *, base: float, cap: float) -> float:
    """Seconds before attempt `attempt + 1`: the server's `Retry-After` (in seconds) when it
    sends one, else exponential backoff (`base * 2**attempt`) with jitter; never above `cap`."""
    if retry_after is not None and retry_after.strip().isdigit():
        return min(float(retry_after), cap)
    return min(base * 2.0**attempt, cap) * random.uniform(0.5, 1.0)
