"""Real limits (issue 18 item 6): per client address on every route (webhooks and health checks aside), per
signed-in customer on theirs, answered 429 with Retry-After; in memory in the demo, in Redis across processes in
production. The cap on unpaid checkouts per customer is tested in tests/checkout/test_open_checkouts.py."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from app.kit.ratelimit import MemoryRateLimiter, RedisRateLimiter
from app.throttle import limited
from tests.conftest import make_settings
from tests.web import BOT_TOKEN, init_data, serve, tma

PER_IP = 30
PER_USER = 12


def other_address(app: FastAPI, host: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(host, 4000))
    return httpx.AsyncClient(transport=transport, base_url="http://t")


@pytest.fixture
async def limited_app(database_url: str, db: AsyncSession) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    settings = make_settings(
        database_url,
        bot_token=BOT_TOKEN,
        rate_limit_per_ip_per_minute=PER_IP,
        rate_limit_per_user_per_minute=PER_USER,
    )
    async with serve(settings) as (app, client):
        yield app, client


async def test_one_customer_is_limited_per_minute_with_retry_after(
    limited_app: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = limited_app
    headers = tma(init_data(901))
    statuses = [(await client.get("/api/me", headers=headers)).status_code for _ in range(PER_USER + 3)]
    assert statuses == [200] * PER_USER + [429] * 3
    refused = await client.get("/api/me", headers=headers)
    assert refused.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    # Pages count against the same customer, and say so as a page.
    page = await client.get("/app", headers=headers)
    assert page.status_code == 429 and page.headers["content-type"].startswith("text/html")
    # Another customer on another address is not affected.
    async with other_address(app, "198.51.100.7") as neighbour:
        assert (await neighbour.get("/api/me", headers=tma(init_data(902)))).status_code == 200


async def test_one_address_is_limited_whoever_it_claims_to_be(limited_app: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, client = limited_app
    # A new customer per request: only the address ties them together.
    statuses = Counter(
        [(await client.get("/api/me", headers=tma(init_data(1000 + n)))).status_code for n in range(PER_IP + 5)]
    )
    assert statuses == {200: PER_IP, 429: 5}
    # Anonymous pages too, and with Retry-After.
    refused = await client.get("/login")
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    # Health checks and webhooks are machines', not limited per address; other addresses are untouched.
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.post("/api/payments/webhook/nobody", content=b"{}")).status_code == 404
    async with other_address(app, "198.51.100.8") as neighbour:
        assert (await neighbour.get("/login")).status_code == 200


async def test_bad_credentials_still_count_against_the_address(
    limited_app: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    # The address's hit waits for the customer on their routes; a request that never becomes one is still counted.
    _, client = limited_app
    forged = tma(init_data(904, token="0:not-the-bot-token"))
    statuses = Counter([(await client.get("/api/me", headers=forged)).status_code for _ in range(PER_IP + 2)])
    assert statuses == {401: PER_IP, 429: 2}
    # So are pages without credentials (the shell) and a valid customer behind them from the same address.
    assert (await client.get("/app")).status_code == 429
    assert (await client.get("/api/me", headers=tma(init_data(905)))).status_code == 429


async def test_requests_refused_before_any_dependency_still_count_against_the_address(
    limited_app: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    # FastAPI parses a JSON body before the dependencies (the app-wide limit among them), and a path no route
    # serves has no dependencies at all: the error handlers count such requests against the address instead.
    app, client = limited_app
    headers = tma(init_data(907)) | {"content-type": "application/json"}
    garbage = [
        (await client.post("/api/checkout", content=b"{not json", headers=headers)).status_code for _ in range(20)
    ]
    missing = [(await client.get(f"/api/no-such-thing/{n}")).status_code for n in range(PER_IP - 20 + 3)]
    assert garbage == [422] * 20 and missing == [404] * (PER_IP - 20) + [429] * 3
    refused = await client.post("/api/checkout", content=b"{not json", headers=headers)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limited"
    assert int(refused.headers["retry-after"]) >= 1
    # Counted once each: a bad body on a route whose limits did run (valid JSON, wrong fields) is not counted again
    # by the error handler, so the address still has exactly its limit.
    async with other_address(app, "198.51.100.9") as neighbour:
        wrong = [
            (await neighbour.post("/api/checkout", json={"plan": []}, headers=tma(init_data(908)))).status_code
            for _ in range(10)
        ]
        others = [
            (await neighbour.get("/api/me", headers=tma(init_data(1100 + n)))).status_code
            for n in range(PER_IP - 10 + 1)
        ]
    assert wrong == [422] * 10 and others == [200] * (PER_IP - 10) + [429]


async def test_a_customer_request_reaches_redis_once(database_url: str, db: AsyncSession, redis_url: str) -> None:
    settings = make_settings(database_url, bot_token=BOT_TOKEN, redis_url=redis_url)
    async with serve(settings) as (app, client):
        redis = app.state.resources.rate_limiter._redis
        calls: list[tuple[object, ...]] = []
        execute = redis.execute_command

        async def counted(*args: object, **options: object) -> object:
            calls.append(args)
            return await execute(*args, **options)

        redis.execute_command = counted
        headers = tma(init_data(906))
        assert (await client.get("/api/me", headers=headers)).status_code == 200  # loads the script
        calls.clear()
        assert (await client.get("/api/me", headers=headers)).status_code == 200
        assert (await client.get("/app", headers=headers | {"hx-request": "true"})).status_code == 200
        assert (await client.get("/login")).status_code == 200
    # The address and the customer in one script call per customer request; the address alone for the sign-in.
    keys = [[arg for arg in call if isinstance(arg, str) and arg.startswith("ratelimit:")] for call in calls]
    customer = keys[0][-1]
    assert customer.startswith("ratelimit:req:user:")
    assert keys == [["ratelimit:req:ip:127.0.0.1", customer]] * 2 + [["ratelimit:req:ip:127.0.0.1"]]


async def test_a_router_adds_its_own_limit_in_one_line(limited_app: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, client = limited_app
    router = APIRouter(dependencies=[limited("probe", per_minute=2, caller=lambda r: r.headers.get("x-who"))])

    @router.get("/api/probe-limited")
    async def probe() -> dict[str, bool]:
        return {"ok": True}

    app.include_router(router)
    alice = [(await client.get("/api/probe-limited", headers={"x-who": "alice"})).status_code for _ in range(3)]
    bob = (await client.get("/api/probe-limited", headers={"x-who": "bob"})).status_code
    assert alice == [200, 200, 429] and bob == 200


async def test_production_counts_in_redis_across_processes(database_url: str, db: AsyncSession, redis_url: str) -> None:
    settings = make_settings(database_url, bot_token=BOT_TOKEN, redis_url=redis_url, rate_limit_per_user_per_minute=4)
    # Two app instances stand for two worker processes sharing Redis.
    async with serve(settings) as (first, one), serve(settings) as (_, two):
        assert isinstance(first.state.resources.rate_limiter, RedisRateLimiter)
        headers = tma(init_data(903))
        statuses = [(await (one, two)[n % 2].get("/api/me", headers=headers)).status_code for n in range(6)]
    assert statuses == [200] * 4 + [429] * 2


async def test_the_demo_counts_in_memory(database_url: str, db: AsyncSession) -> None:
    async with serve(make_settings(database_url, bot_token=BOT_TOKEN)) as (app, _):
        assert isinstance(app.state.resources.rate_limiter, MemoryRateLimiter)
