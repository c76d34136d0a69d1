"""Deployment health: apply a generation's children and say whether the API server took them.

A child the API server refuses (an invalid toleration, requests above limits, ...) is a
Problem that needs a spec change: status says Stalled with the server's message, instead of
the operator retrying it in its log forever. Anything else (the API server away for a moment)
is transient: status says Reconciling and the caller retries.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from duckherd.status import CHILD_REJECTED, Problem
from duckherd_operator import metrics
from duckherd_operator.applied import APPLIED
from duckherd_operator.builders import Pipeline, build_children
from duckherd_operator.client import KubeClient

# HTTP statuses that mean "this object will not be accepted as it is".
_REFUSED = (400, 403, 422)
# Server-side apply answers 500 when it cannot even build the typed object (a bad quantity).
_REFUSED_500_MARKERS = ("failed to create typed patch object", "quantities must match")


@dataclass(frozen=True)
class Acted:
    """The generation the operator acted on, and the Problem it met applying it (if any)."""

    generation: int
    problem: Problem | None
    error: Exception | None = None  # a transient error, re-raised after status records it


def api_message(error: Exception) -> str:
    """The API server's own message (the `message` of the Status in the error's JSON `body`),
    else the error's text."""
    body = getattr(error, "body", None)
    if isinstance(body, str | bytes):
        try:
            message = json.loads(body).get("message")
        except (ValueError, AttributeError):
            message = None
        if message:
            return str(message)
    return str(error)


def classify_apply_error(error: Exception, manifest: dict[str, Any]) -> Problem:
    child = f"{manifest['kind']} {manifest['metadata']['name']}"
    status = getattr(error, "status", None)
    message = api_message(error)[:1000]
    refused = status in _REFUSED or (
        status == 500 and any(marker in message for marker in _REFUSED_500_MARKERS)
    )
    if refused:
        return Problem(CHILD_REJECTED, f"the API server refused {child}: {message}")
    return Problem("ApplyRetrying", f"applying {child} failed, retrying: {message}", transient=True)


async def apply_generation(kube: KubeClient, pipeline: Pipeline) -> Acted:
    """Server-side apply every child; stop at the first one that fails and say why."""
    for manifest in build_children(pipeline):
        try:
            APPLIED.record(manifest, await kube.apply(manifest))
        except Exception as error:  # classified: refused (Stalled) or transient (re-raised)
            problem = classify_apply_error(error, manifest)
            return Acted(pipeline.generation, problem, None if not problem.transient else error)
    metrics.CHILDREN_APPLIED.inc()
    return Acted(pipeline.generation, None)
