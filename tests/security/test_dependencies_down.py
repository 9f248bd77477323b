"""Redis or the database down (issue 18 item 4): rate-limited actions keep working, limited per process, with a
warning; pages and the API answer a plain 503 when the database cannot be reached, never a 500."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.pages import CODE_ATTEMPTS_PER_IP, LOGIN_CSRF_COOKIE
from app.kit.ratelimit import RedisRateLimiter
from tests.conftest import make_settings
from tests.emulators.harness import free_port
from tests.web import BOT_TOKEN, serve, tma


def nothing_listens() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


async def test_the_redis_limiter_counts_in_the_process_while_redis_is_down(caplog: pytest.LogCaptureFixture) -> None:
    limiter = RedisRateLimiter(nothing_listens())
    try:
        with caplog.at_level(logging.WARNING, logger="app.kit.ratelimit"):
            decisions = [await limiter.hit("login-code:203.0.113.9", 3, 60) for _ in range(5)]
    finally:
        await limiter.aclose()
    assert [decision.allowed for decision in decisions] == [True, True, True, False, False]
    assert decisions[-1].retry_after > 0
    warnings = [record for record in caplog.records if "Redis is unreachable" in record.getMessage()]
    assert len(warnings) == 1  # one warning, not one per request


async def test_sign_in_by_code_works_and_is_limited_with_redis_down(database_url: str, db: AsyncSession) -> None:
    settings = make_settings(database_url, redis_url=nothing_listens())
    async with serve(settings, raise_app_exceptions=False) as (_, client):
        csrf = (await client.get("/login")).cookies[LOGIN_CSRF_COOKIE]
        statuses = []
        for _ in range(CODE_ATTEMPTS_PER_IP + 1):
            response = await client.post(
                "/login/code",
                data={"code": "WRONGCODE", "csrf_token": csrf},
                headers={"cookie": f"{LOGIN_CSRF_COOKIE}={csrf}"},
            )
            statuses.append(response.status_code)
    assert statuses[:-1] == [401] * CODE_ATTEMPTS_PER_IP, statuses
    assert statuses[-1] == 429


@pytest.mark.parametrize(
    ("path", "headers", "kind"),
    [
        ("/api/me", {}, "application/json"),
        ("/app", {}, "text/html"),
        ("/app", {"hx-request": "true"}, "text/html"),
    ],
)
async def test_pages_and_api_answer_a_plain_503_while_the_database_is_down(
    caplog: pytest.LogCaptureFixture, path: str, headers: dict[str, str], kind: str
) -> None:
    down = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/vpnshop"
    async with serve(make_settings(down, bot_token=BOT_TOKEN), raise_app_exceptions=False) as (_, client):
        with caplog.at_level(logging.WARNING):
            response = await client.get(path, headers=tma() | headers)
    assert response.status_code == 503, response.text[:300]
    assert response.headers["content-type"].startswith(kind)
    assert response.headers["retry-after"] == "30"
    assert "try again" in response.text
    assert "Traceback" not in caplog.text  # an outage is one warning line per request, not a traceback


async def test_a_request_that_needs_no_database_is_unaffected_by_its_outage() -> None:
    down = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/vpnshop"
    async with serve(make_settings(down)) as (_, client):
        response = await client.get("/healthz")
    assert response.status_code == 200
