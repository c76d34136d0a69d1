"""Webhook notifications, the delivery: one background worker, so reconciliation never waits.

The pipeline watch hands every pipeline it sees to `Notifier.observe` (handlers/notify.py),
which decides from the status the operator wrote — pure, notifications.py — whether a
transition is due, and queues it. The worker (an asyncio task held in Kopf's memo) then reads
the webhook URL from the one Secret the chart names, POSTs the payload, retries 429, 5xx,
dropped connections and time-outs with exponential backoff (bounded), and records the outcome
in `status.notification`, a `NotificationSent` / `NotificationFailed` Event and a log line. A
slow or dead receiver delays only the notifications behind it, never a status update.

The URL is a secret (a Slack webhook's path is its credential): it is never logged, never in
an Event or status. Errors name the Secret reference instead, and whatever text a library or
the receiver returns is redacted with the URL's parts before it is shown (duckherd.redaction).

Retries are written out here rather than with tenacity, which only the jobs may import
(tests/unit/test_layers.py); the delay rule is the one the API client uses (backoff.py).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from kubernetes_asyncio.client.exceptions import ApiException

from duckherd.redaction import describe_error, redact
from duckherd_operator import metrics
from duckherd_operator.actions import patch_status, post_events
from duckherd_operator.assess import stored_status
from duckherd_operator.backoff import retry_delay
from duckherd_operator.client import KubeClient, object_path
from duckherd_operator.notifications import (
    FORMATS,
    Format,
    Notified,
    Transition,
    build_payload,
    due_transition,
    notified,
)
from duckherd_operator.report import Notice

log = logging.getLogger("duckherd.operator.notify")

# Answers worth another attempt: rate limited, or the receiver is down or overloaded.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# How much of a refusing receiver's answer to show (Slack says `invalid_payload`, `no_service`).
MAX_ANSWER_CHARS = 200


@dataclass(frozen=True)
class WebhookConfig:
    """Where the URL is (one Secret, chart value notifications.webhook) and how to send."""

    secret_namespace: str
    secret_name: str
    key: str = "url"
    format: Format = "slack"
    attempts: int = 5
    first_retry_seconds: float = 1.0
    max_retry_seconds: float = 30.0
    timeout_seconds: float = 10.0

    @classmethod
    def parse(cls, secret: str, key: str, format: str) -> WebhookConfig:
        """From `--notify-secret NAMESPACE/NAME`; a ValueError names what is wrong."""
        namespace, _, name = secret.partition("/")
        if not namespace or not name or "/" in name:
            raise ValueError(f"--notify-secret must be NAMESPACE/NAME, not {secret!r}")
        chosen = next((known for known in FORMATS if known == format), None)
        if chosen is None:
            raise ValueError(f"--notify-format must be one of {', '.join(FORMATS)}, not {format!r}")
        if not key:
            raise ValueError("--notify-secret-key must not be empty")
        return cls(namespace, name, key, chosen)

    @property
    def secret_ref(self) -> str:
        return f"Secret {self.secret_namespace}/{self.secret_name} key {self.key}"


class DeliveryFailed(Exception):
    """A notification that could not be delivered; the message never holds the URL."""


def _url_secrets(url: str) -> list[str]:
    """The URL and the parts of it that may be its credential (a Slack webhook's path)."""
    parts = urlsplit(url)
    return [part for part in (url, parts.path, parts.query) if len(part) > 1]


def _checked_url(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise DeliveryFailed("the webhook URL is not a valid http(s) URL")
    return url


@dataclass(frozen=True)
class _Queued:
    transition: Transition
    involved: dict[str, Any]  # the pipeline, as an Event's involvedObject needs it


def _identity(body: dict[str, Any]) -> dict[str, Any]:
    metadata = body["metadata"]
    return {
        "apiVersion": body["apiVersion"],
        "kind": body["kind"],
        "metadata": {k: metadata.get(k) for k in ("name", "namespace", "uid")},
    }


class Notifier:
    """Decides which transitions are due (observe) and delivers them in order (run)."""

    def __init__(
        self,
        config: WebhookConfig,
        kube: Callable[[], KubeClient],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self._kube = kube
        self._clock = clock
        self._queue: asyncio.Queue[_Queued] = asyncio.Queue()
        # What this process last queued per pipeline. Watch events arrive in order, so it is
        # never older than what status says; it stops a second queueing while a delivery (and
        # its status record) is under way.
        self._decided: dict[tuple[str, str], Notified] = {}

    # ----------------------------------------------------------------- deciding (no I/O)

    def observe(self, body: dict[str, Any]) -> Transition | None:
        """Queue the notification the pipeline's status calls for, if any; never waits."""
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        status = stored_status(body)
        last = self._decided.get((namespace, name)) or notified(status)
        transition = due_transition(namespace, name, status, last, self._clock())
        if transition is not None:
            self._decided[(namespace, name)] = transition.key
            self._queue.put_nowait(_Queued(transition, _identity(body)))
        return transition

    def forget(self, namespace: str, name: str) -> None:
        self._decided.pop((namespace, name), None)

    # ----------------------------------------------------------------- delivering

    async def run(self) -> None:
        """The worker: deliver what is queued, one at a time, for ever."""
        timeout = aiohttp.ClientTimeout(total=self.config.timeout_seconds)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                item = await self._queue.get()
                try:
                    await self._notify(session, item)
                except Exception:  # the worker must outlive any one notification
                    log.exception("notification about %s failed", item.transition.pipeline)
                finally:
                    self._queue.task_done()

    async def _notify(self, session: aiohttp.ClientSession, item: _Queued) -> None:
        transition = item.transition
        what = f"{transition.state} ({transition.reason})"
        where = f"{transition.namespace}/{transition.pipeline}"
        try:
            await self._deliver(session, transition)
        except DeliveryFailed as failure:
            metrics.NOTIFICATIONS.labels(result="failed").inc()
            log.warning("%s: webhook notification %s not delivered: %s", where, what, failure)
            record = transition.record(delivered=False, error=str(failure))
            notice = Notice("Warning", "NotificationFailed", f"webhook {what}: {failure}")
        else:
            metrics.NOTIFICATIONS.labels(result="sent").inc()
            log.info("%s: webhook notified %s", where, what)
            record = transition.record(delivered=True)
            notice = Notice("Normal", "NotificationSent", f"webhook notified {what}")
        kube = self._kube()
        try:
            await patch_status(
                kube,
                transition.namespace,
                transition.pipeline,
                {"notification": record.model_dump(mode="json")},
            )
        except ApiException as error:
            if error.status == 404:
                return  # the pipeline is gone: nobody to tell
            raise
        await post_events(kube, item.involved, [notice])

    async def _deliver(self, session: aiohttp.ClientSession, transition: Transition) -> None:
        url = ""
        try:
            url = await self._url()
            await self._post(session, url, build_payload(transition, self.config.format))
        except DeliveryFailed:
            raise
        except Exception as error:  # a bug of ours: said like any failure, without the URL
            described = describe_error(error, _url_secrets(url) if url else [])
            raise DeliveryFailed(f"unexpected error: {described}") from None

    async def _url(self) -> str:
        """The webhook URL, read afresh from the Secret (a rotated URL is used at once)."""
        config = self.config
        path = object_path("v1", "Secret", config.secret_namespace, config.secret_name)
        try:
            secret = await self._kube().get(path)
        except ApiException as error:
            raise DeliveryFailed(f"cannot read {config.secret_ref}: HTTP {error.status}") from None
        if secret is None:
            raise DeliveryFailed(f"{config.secret_ref}: the Secret does not exist")
        encoded = (secret.get("data") or {}).get(config.key)
        if not encoded:
            raise DeliveryFailed(f"{config.secret_ref}: the Secret has no such key")
        try:
            url = base64.b64decode(encoded).decode().strip()
        except (binascii.Error, UnicodeDecodeError):
            raise DeliveryFailed(f"{config.secret_ref}: the value is not text") from None
        return _checked_url(url)

    async def _post(
        self, session: aiohttp.ClientSession, url: str, payload: dict[str, Any]
    ) -> None:
        """POST until the receiver accepts (2xx), refuses (other 4xx, 3xx) or attempts run out."""
        secrets = _url_secrets(url)
        for attempt in range(1, self.config.attempts + 1):
            retry_after = None
            try:
                async with session.post(url, json=payload, allow_redirects=False) as answer:
                    if 200 <= answer.status < 300:
                        return
                    text = redact((await answer.text())[:MAX_ANSWER_CHARS], secrets)
                    problem = f"the receiver answered HTTP {answer.status}"
                    problem += f": {' '.join(text.split())}" if text.strip() else ""
                    if answer.status not in RETRY_STATUSES:
                        raise DeliveryFailed(problem)
                    retry_after = answer.headers.get("Retry-After")
            except (aiohttp.InvalidURL, ValueError):
                raise DeliveryFailed("the webhook URL is not a valid http(s) URL") from None
            except (aiohttp.ClientError, TimeoutError) as error:
                problem = f"no answer: {describe_error(error, secrets)}"
            if attempt == self.config.attempts:
                raise DeliveryFailed(f"{problem} ({attempt} attempts)")
            log.debug("webhook attempt %d: %s; retrying", attempt, problem)
            await asyncio.sleep(
                retry_delay(
                    attempt - 1,
                    retry_after,
                    base=self.config.first_retry_seconds,
                    cap=self.config.max_retry_seconds,
                )
            )


async def stop(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
