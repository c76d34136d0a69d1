"""HTTP requests with bounded retries: exponential backoff that honours `Retry-After`."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import tenacity

from duckherd_jobs.fault_points import pause_point

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
MAX_RETRY_AFTER_SECONDS = 300.0


class RetryableResponse(Exception):
    """A response worth retrying (429, 5xx, or a body that is not whole)."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class FatalResponse(Exception):
    """A response that retrying will not fix (4xx other than 408/425/429)."""


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class _WaitRetryAfterOrBackoff(tenacity.wait.wait_base):
    """The server's `Retry-After` when it sent one, else exponential backoff with jitter."""

    def __init__(self) -> None:
        self._backoff = tenacity.wait_exponential_jitter(multiplier=0.25, max=30.0, jitter=0.25)

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        if isinstance(error, RetryableResponse) and error.retry_after is not None:
            return min(error.retry_after, MAX_RETRY_AFTER_SECONDS)
        return float(self._backoff(retry_state))


def describe_failure(error: BaseException) -> str:
    """A cause without the URL (which may carry a credential in its query)."""
    if isinstance(error, RetryableResponse | FatalResponse):
        return str(error)
    if isinstance(error, httpx.TimeoutException):
        return f"timed out ({type(error).__name__})"
    if isinstance(error, httpx.TransportError):
        return f"{type(error).__name__}: {error}"
    return f"{type(error).__name__}: {error}"


class Fetcher:
    """GETs through one pooled client (thread-safe), retried per request."""

    def __init__(
        self,
        *,
        timeout_seconds: float,
        max_retries: int,
        headers: Mapping[str, str],
        auth: httpx.Auth | None = None,
        pool_size: int = 4,
    ) -> None:
        self.max_retries = max_retries
        self.client = httpx.Client(
            timeout=httpx.Timeout(timeout_seconds),
            headers=dict(headers),
            auth=auth,
            follow_redirects=True,
            limits=httpx.Limits(max_connections=pool_size, max_keepalive_connections=pool_size),
        )

    def close(self) -> None:
        self.client.close()

    def _retrying(self) -> tenacity.Retrying:
        return tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.max_retries + 1),
            wait=_WaitRetryAfterOrBackoff(),
            retry=tenacity.retry_if_exception_type((httpx.TransportError, RetryableResponse)),
            reraise=True,
            sleep=time.sleep,
        )

    def download(self, url: str, target: Path, chunk_bytes: int = 1 << 20) -> None:
        """Stream a body to a file (a retry starts the file over)."""
        for attempt in self._retrying():
            with attempt, self.client.stream("GET", url) as response:
                if response.status_code in RETRYABLE_STATUS:
                    raise RetryableResponse(
                        f"HTTP {response.status_code}",
                        parse_retry_after(response.headers.get("Retry-After")),
                    )
                if response.status_code >= 400:
                    raise FatalResponse(f"HTTP {response.status_code} {response.reason_phrase}")
                with target.open("wb") as file:
                    for index, chunk in enumerate(response.iter_bytes(chunk_bytes)):
                        file.write(chunk)
                        if index == 0:
                            file.flush()
                            pause_point("ingest.file.downloading")

    def get(
        self,
        url: str,
        params: Mapping[str, Any] | None = None,
        check: Callable[[httpx.Response], None] | None = None,
    ) -> httpx.Response:
        """The response of a successful GET; raises the last error after the retries.

        `check` inspects a 2xx response inside the retry loop: raising RetryableResponse from
        it retries the request (e.g. a body that is not whole JSON).
        """
        for attempt in self._retrying():
            with attempt:
                response = self._get_once(url, params)
                if check is not None:
                    check(response)
                return response
        raise AssertionError("unreachable: tenacity reraises the last error")

    def _get_once(self, url: str, params: Mapping[str, Any] | None) -> httpx.Response:
        response = self.client.get(url, params=params)
        if response.status_code in RETRYABLE_STATUS:
            raise RetryableResponse(
                f"HTTP {response.status_code}",
                parse_retry_after(response.headers.get("Retry-After")),
            )
        if response.status_code >= 400:
            raise FatalResponse(
                f"HTTP {response.status_code} {response.reason_phrase}: {response.text[:200]!r}"
            )
        return response
