"""The webhook notifier's delivery, piece by piece: the Secret, the URL, the POST and its retries.

The Secret is served by a stand-in for the API client (only `get`); the receiver is a real
aiohttp server on loopback. Every failure must say why without the URL.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from duckherd_operator.client import KubeClient
from duckherd_operator.webhook import DeliveryFailed, Notifier, WebhookConfig
from tests.unit.operator_harness import free_port

TOKEN = "s3cr3t-webhook-token"
CONFIG = WebhookConfig(
    "duckherd-system", "hook", "url", "json", attempts=3, first_retry_seconds=0.01
)


class _Secrets:
    """What the notifier asks of the API client: `get` of one Secret."""

    def __init__(self, secret: dict[str, Any] | None) -> None:
        self.secret = secret
        self.paths: list[str] = []

    async def get(self, path: str) -> dict[str, Any] | None:
        self.paths.append(path)
        return self.secret


def _notifier(secret: dict[str, Any] | None) -> tuple[Notifier, _Secrets]:
    secrets = _Secrets(secret)
    client: Callable[[], KubeClient] = lambda: secrets  # type: ignore[assignment,return-value]  # noqa: E731
    return Notifier(CONFIG, client), secrets


def _secret(value: bytes) -> dict[str, Any]:
    return {"data": {"url": base64.b64encode(value).decode()}}


def test_config_errors_name_the_option() -> None:
    with pytest.raises(ValueError, match="--notify-secret must be NAMESPACE/NAME"):
        WebhookConfig.parse("hook", "url", "slack")
    with pytest.raises(ValueError, match="--notify-format must be one of slack, json"):
        WebhookConfig.parse("ns/hook", "url", "xml")
    assert WebhookConfig.parse("ns/hook", "url", "json").format == "json"


async def test_the_url_is_read_by_name_and_trimmed() -> None:
    notifier, secrets = _notifier(_secret(f"https://hooks.example/{TOKEN}\n".encode()))
    assert await notifier._url() == f"https://hooks.example/{TOKEN}"
    assert secrets.paths == ["/api/v1/namespaces/duckherd-system/secrets/hook"]


@pytest.mark.parametrize(
    ("secret", "complaint"),
    [
        (None, "Secret duckherd-system/hook key url: the Secret does not exist"),
        (
            {"data": {"other": "eA=="}},
            "Secret duckherd-system/hook key url: the Secret has no such key",
        ),
        (_secret(b"\xff\xfe"), "the value is not text"),
        (_secret(f"hooks.example/{TOKEN}".encode()), "the webhook URL is not a valid http(s) URL"),
        (_secret(f"ftp://hooks.example/{TOKEN}".encode()), "not a valid http(s) URL"),
    ],
)
async def test_a_bad_secret_says_why_without_the_value(
    secret: dict[str, Any] | None, complaint: str
) -> None:
    notifier, _ = _notifier(secret)
    with pytest.raises(
        DeliveryFailed, match=complaint.replace("(", r"\(").replace(")", r"\)")
    ) as raised:
        await notifier._url()
    assert TOKEN not in str(raised.value)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[int]]]:
    """POST /<TOKEN>: answers from the list (then 200); /moved redirects to it."""
    answers: list[int] = []

    async def hook(request: web.Request) -> web.Response:
        status = answers.pop(0) if answers else 200
        headers = {"Retry-After": "0"} if status == 429 else {}
        return web.Response(status=status, text=f"answer {status} for /{TOKEN}", headers=headers)

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently(f"/{TOKEN}")

    app = web.Application()
    app.router.add_post(f"/{TOKEN}", hook)
    app.router.add_post("/moved", moved)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", answers
    finally:
        await runner.cleanup()


async def _post(url: str) -> None:
    notifier, _ = _notifier(None)
    async with aiohttp.ClientSession() as session:
        await notifier._post(session, url, {"state": "Failing"})


async def test_429_and_5xx_are_retried_until_accepted(receiver: tuple[str, list[int]]) -> None:
    base, answers = receiver
    answers.extend([429, 502])
    await _post(f"{base}/{TOKEN}")
    assert answers == []  # both refusals were answered, then the third attempt was accepted


async def test_attempts_are_bounded_and_the_answer_is_redacted(
    receiver: tuple[str, list[int]],
) -> None:
    base, answers = receiver
    answers.extend([503, 503, 503, 200])
    with pytest.raises(DeliveryFailed) as raised:
        await _post(f"{base}/{TOKEN}")
    assert str(raised.value) == "the receiver answered HTTP 503: answer 503 for *** (3 attempts)"
    assert answers == [200]  # the fourth answer was never asked for


async def test_a_4xx_or_a_redirect_fails_at_once(receiver: tuple[str, list[int]]) -> None:
    base, answers = receiver
    answers.extend([400, 200])
    with pytest.raises(DeliveryFailed, match="HTTP 400"):
        await _post(f"{base}/{TOKEN}")
    assert answers == [200]
    with pytest.raises(DeliveryFailed, match="HTTP 301"):
        await _post(f"{base}/moved")
    assert answers == [200], "the redirect was not followed"


async def test_no_receiver_is_retried_then_said_without_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}/{TOKEN}"  # nothing listens there
    with pytest.raises(DeliveryFailed, match=r"^no answer: .*\(3 attempts\)$") as raised:
        await _post(url)
    assert TOKEN not in str(raised.value)
