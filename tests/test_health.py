"""Liveness, readiness (with Redis down), metrics, security headers and error shapes."""

from __future__ import annotations

import httpx

from app.config import Settings
from app.main import create_app
from tests.conftest import REDIS_URL, make_settings, require_server


async def test_healthz_answers_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_checks_the_database(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok"}


async def _readyz(settings: Settings) -> httpx.Response:
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        return await http.get("/readyz")


async def test_readyz_names_redis_when_it_is_down(database_url: str) -> None:
    # Nothing listens on port 1: Redis is configured but down.
    settings = make_settings(database_url, redis_url="redis://127.0.0.1:1/0")
    response = await _readyz(settings)
    assert response.status_code == 503
    body = response.json()
    assert body["down"] == ["redis"]
    assert body["checks"]["database"] == "ok"


async def test_readyz_with_redis_up(database_url: str) -> None:
    require_server("Redis", REDIS_URL)
    response = await _readyz(make_settings(database_url, redis_url=REDIS_URL))
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "redis": "ok"}


async def test_readyz_names_the_database_when_it_is_down(tmp_path) -> None:
    # A PostgreSQL URL on a closed port: the app starts (engines connect lazily) but is not ready.
    settings = make_settings("postgresql+asyncpg://postgres@127.0.0.1:1/none")
    response = await _readyz(settings)
    assert response.status_code == 503
    assert response.json()["down"] == ["database"]


async def test_metrics_are_exposed_after_traffic(client: httpx.AsyncClient) -> None:
    await client.get("/healthz")
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert 'vpnshop_http_requests_total{method="GET",route="/healthz",status="200"}' in response.text


async def test_security_headers_allow_only_telegram_to_frame(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    csp = response.headers["content-security-policy"]
    assert "frame-ancestors 'self' https://web.telegram.org" in csp
    assert "default-src 'self'" in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "x-frame-options" not in response.headers  # it cannot allow-list Telegram; CSP does


async def test_unknown_api_path_gets_a_json_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/nope")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_unknown_page_gets_an_html_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/nope", headers={"accept": "text/html"})
    assert response.status_code == 404
    assert "text/html" in response.headers["content-type"]
    assert "<html" in response.text


async def test_outside_the_demo_the_root_leads_to_the_cabinet(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 307 and response.headers["location"] == "/app"
