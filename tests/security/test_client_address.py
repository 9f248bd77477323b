"""Forwarding headers are believed only from configured proxies (issue 18 item 1), tested against `vpnshop serve`
as production starts it: uvicorn applies them before the app sees the request, so only a real server shows it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from app.auth.pages import CODE_ATTEMPTS_PER_IP, LOGIN_CSRF_COOKIE
from tests.emulators.harness import free_port
from tests.processes import Stack, production_stack, wait_for

YOOKASSA_SENDER = "185.71.76.1"  # on YooKassa's published allow-list


@asynccontextmanager
async def serving(stack: Stack, forwarded_allow_ips: str) -> AsyncIterator[httpx.AsyncClient]:
    port = free_port()
    running = stack.start(
        "serve",
        HOST="127.0.0.1",
        PORT=str(port),
        SERVE_WORKERS="1",
        FORWARDED_ALLOW_IPS=forwarded_allow_ips,
        YOOKASSA_SHOP_ID="4242",
        YOOKASSA_SECRET_KEY="test-key",
        # Nothing listens here: a notification that passed the allow-list would be re-fetched and fail (503).
        YOOKASSA_API_URL=f"http://127.0.0.1:{free_port()}/v3",
    )
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:

        async def healthy() -> bool:
            assert running.process.poll() is None, running.log.read_text()
            try:
                return (await client.get("/healthz")).status_code == 200
            except httpx.TransportError:
                return False

        await wait_for(healthy, within=60, what="vpnshop serve answering")
        yield client


async def wrong_codes(client: httpx.AsyncClient, attempts: int) -> list[int]:
    """Statuses of `attempts` wrong sign-in codes, each claiming another address in X-Forwarded-For."""
    page = await client.get("/login")
    csrf = page.cookies[LOGIN_CSRF_COOKIE]  # a Secure cookie (https base URL): sent back by hand over http
    statuses = []
    for attempt in range(attempts):
        response = await client.post(
            "/login/code",
            data={"code": "WRONGCODE", "csrf_token": csrf},
            headers={"cookie": f"{LOGIN_CSRF_COOKIE}={csrf}", "x-forwarded-for": f"198.51.100.{attempt + 1}"},
        )
        statuses.append(response.status_code)
    return statuses


async def yookassa_notification(client: httpx.AsyncClient) -> int:
    body = {"type": "notification", "event": "payment.succeeded", "object": {"id": "2f-forged", "status": "succeeded"}}
    response = await client.post(
        "/api/payments/webhook/yookassa", json=body, headers={"x-forwarded-for": YOOKASSA_SENDER}
    )
    return response.status_code


async def test_forwarding_headers_from_a_peer_that_is_not_a_proxy_are_ignored(redis_url: str) -> None:
    # redis_url: a flushed Redis, so no earlier run's counters are in the way.
    async with production_stack() as stack, serving(stack, "10.20.30.40") as client:
        statuses = await wrong_codes(client, CODE_ATTEMPTS_PER_IP + 1)
        # One address (ours) however the header rotates: the limit is met.
        assert 429 not in statuses[:CODE_ATTEMPTS_PER_IP] and statuses[-1] == 429, statuses
        # Claiming to be YooKassa's sender does not pass its allow-list.
        assert await yookassa_notification(client) == 403


async def test_forwarding_headers_from_a_configured_proxy_are_believed(redis_url: str) -> None:
    async with production_stack() as stack, serving(stack, "127.0.0.1") as client:
        # Behind the proxy, each forwarded address is a client of its own: nobody is limited for the others.
        assert 429 not in await wrong_codes(client, CODE_ATTEMPTS_PER_IP + 1)
        # The sender the proxy reports is YooKassa's: past the allow-list, to the re-fetch (unreachable here).
        assert await yookassa_notification(client) == 503
