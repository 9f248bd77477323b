"""Outbound HTTP for every external API: timeouts, retries with backoff and jitter, and a circuit breaker per host.

Callers get the final `httpx.Response` for any status they must interpret themselves (4xx), and an
`ExternalServiceError` when the service stayed unreachable or kept failing after the retries.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from app.kit.errors import ExternalServiceError
from app.kit.logging import redact_path
from app.kit.metrics import EXTERNAL_REQUESTS

log = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


class CircuitOpenError(ExternalServiceError):
    """The host failed too often recently; calls are refused until the cool-down ends."""


@dataclass
class RetryPolicy:
    attempts: int = 3
    base_delay: float = 0.25
    max_delay: float = 8.0
    # A Retry-After longer than this is not waited for in-line: the caller (a job) retries later instead.
    max_retry_after: float = 30.0
    statuses: frozenset[int] = RETRYABLE_STATUSES

    def backoff(self, attempt: int) -> float:
        """Full-jitter exponential backoff for the given 1-based attempt."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return random.uniform(0, ceiling)


@dataclass
class CircuitBreaker:
    """Opens after `threshold` consecutive failures; after `cooldown` seconds one trial call may pass."""

    threshold: int = 5
    cooldown: float = 30.0
    clock: Callable[[], float] = time.monotonic
    failures: int = 0
    opened_at: float | None = None
    _trial_in_flight: bool = field(default=False, repr=False)

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        if self.clock() - self.opened_at >= self.cooldown:
            return "half_open"
        return "open"

    def allow(self) -> bool:
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._trial_in_flight:
            self._trial_in_flight = True
            return True
        return False

    def record_success(self) -> None:
        self.failures = 0
        self.opened_at = None
        self._trial_in_flight = False

    def release_trial(self) -> None:
        """End a half-open trial without a verdict (throttled or cancelled), so the next call may try again."""
        self._trial_in_flight = False

    def record_failure(self) -> None:
        self._trial_in_flight = False
        self.failures += 1
        if self.failures >= self.threshold or self.opened_at is not None:
            self.opened_at = self.clock()


_breakers: dict[str, CircuitBreaker] = {}


def breaker_for(host: str) -> CircuitBreaker:
    """The process-wide breaker of one host ("host" or "host:port"), so every client of it shares its health."""
    return _breakers.setdefault(host, CircuitBreaker())


def reset_breakers() -> None:
    _breakers.clear()


def retry_after_seconds(response: httpx.Response) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date), or None."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        # Neither seconds nor a date (Python >= 3.10 raises rather than returning None): ignore the header.
        return None
    return max(0.0, parsed.timestamp() - time.time())


class HttpClient:
    """An httpx.AsyncClient wrapper bound to one base URL, with retry and a per-host circuit breaker."""

    def __init__(
        self,
        base_url: str,
        *,
        service: str,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        headers: dict[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.service = service
        self.retry = retry or RetryPolicy()
        self._client = httpx.AsyncClient(
            base_url=base_url, timeout=httpx.Timeout(timeout), headers=headers, transport=transport
        )
        # Keyed by host and port: two services on one machine (two panels on one VPS) fail independently.
        self._host = self._client.base_url.netloc.decode() or base_url
        self.breaker = breaker or breaker_for(self._host)
        self._sleep = sleep

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send with retries. Returns any non-retryable response (the caller reads 2xx/4xx itself);
        raises ExternalServiceError when the host stayed unreachable, failing (5xx) or throttling (429)."""
        failure = ""
        retry_after: float | None = None
        for attempt in range(1, self.retry.attempts + 1):
            if not self.breaker.allow():
                raise CircuitOpenError(self.service, f"circuit open after {self.breaker.failures} failures")
            retry_after = None
            started = time.perf_counter()
            try:
                response = await self._client.request(method, url, **kwargs)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                self._observe(started, "unreachable")
                self.breaker.record_failure()
                failure = f"{type(exc).__name__}: {exc}".rstrip(": ")
            except BaseException:
                # Cancelled (or an unexpected error): no verdict on the host, but a half-open trial must not
                # keep its slot, or the circuit would refuse every later call.
                self.breaker.release_trial()
                raise
            else:
                self._observe(started, "ok" if response.status_code < 500 else "error")
                if response.status_code not in self.retry.statuses:
                    self.breaker.record_success()
                    return response
                failure = f"HTTP {response.status_code}"
                if response.status_code == 429:
                    # Throttling means the host is alive: it must not open the circuit (nor hold a trial slot).
                    self.breaker.release_trial()
                    retry_after = retry_after_seconds(response)
                    if retry_after is not None and retry_after > self.retry.max_retry_after:
                        break
                else:
                    self.breaker.record_failure()
            if attempt < self.retry.attempts:
                delay = retry_after if retry_after is not None else self.retry.backoff(attempt)
                log.warning(
                    "retrying %s %s %s after %s in %.2fs", self.service, method, redact_path(url), failure, delay
                )
                await self._sleep(delay)
        raise ExternalServiceError(
            self.service, f"{method} {redact_path(url)} failed: {failure}", retry_after=retry_after
        )

    def _observe(self, started: float, outcome: str) -> None:
        # By host only: a path may carry a token (the Bot API's does).
        EXTERNAL_REQUESTS.labels(self.service, self._host, outcome).observe(time.perf_counter() - started)

    async def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("GET", url, **kwargs)

    async def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("POST", url, **kwargs)

    async def put(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("PUT", url, **kwargs)

    async def patch(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("PATCH", url, **kwargs)

    async def delete(self, url: str, **kwargs: Any) -> httpx.Response:
        return await self.request("DELETE", url, **kwargs)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
