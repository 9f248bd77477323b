"""Liveness, readiness (with Redis down), metrics, security headers and error shapes."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.kit.clock import utcnow
from app.main import create_app
from app.models import JobRun, OutboxMessage, Payment, TrialGrant
from app.models.ops import OutboxStatus
from app.models.payments import PaymentStatus
from app.models.subscriptions import SubscriptionStatus
from tests.conftest import REDIS_URL, make_settings, require_server
from tests.factories import add_server, add_subscriber


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


async def test_readyz_names_redis_when_it_is_down(database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    # Nothing listens on port 1: Redis is configured but down.
    settings = make_settings(database_url, redis_url="redis://127.0.0.1:1/0")
    response = await _readyz(settings)
    assert response.status_code == 503
    body = response.json()
    assert body["down"] == ["redis"]
    assert body["checks"]["database"] == "ok"
    # Logged for the operator, at WARNING (a dependency restarting is routine, not an error of ours).
    [record] = [r for r in caplog.records if r.name == "app.health.api"]
    assert record.levelname == "WARNING" and "redis" in record.getMessage()


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


async def test_metrics_carry_business_gauges_read_from_the_database(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    now = utcnow()
    user, _ = await add_subscriber(db, 9001)
    trial_user, trial = await add_subscriber(db, 9002, status=SubscriptionStatus.TRIAL)
    trial.is_trial = True
    await add_subscriber(db, 9003, ends_in=timedelta(days=-1))  # ended: not live
    db.add(TrialGrant(user_id=trial_user.id, telegram_id=9002, subscription_id=trial.id))
    db.add(TrialGrant(user_id=user.id, telegram_id=9001))  # this one has paid since: a conversion
    for number, (status, minor) in enumerate([(PaymentStatus.SUCCEEDED, 19900), (PaymentStatus.MISMATCH, 100)]):
        db.add(
            Payment(
                public_id=f"p{number}", user_id=user.id, provider="yookassa", amount_minor=minor, currency="RUB",
                status=status, idempotency_key=f"k{number}", days=30, paid_at=now if minor == 19900 else None,
            )
        )  # fmt: skip
    # Due for 11 minutes and held by a dispatcher (so the app's own in-process dispatcher leaves it alone).
    stuck = {"available_at": now - timedelta(minutes=11), "locked_until": now + timedelta(hours=1)}
    db.add(OutboxMessage(topic="panel.extend", payload={}, status=OutboxStatus.PENDING, **stuck))
    await add_server(db, "fra-1", health="down")
    db.add(JobRun(job_name="backup_database", started_at=now, finished_at=now, outcome="failed"))
    await db.commit()

    text = (await client.get("/metrics")).text
    for sample in (
        'vpnshop_subscriptions_live{kind="paid"} 1.0',
        'vpnshop_subscriptions_live{kind="trial"} 1.0',
        'vpnshop_revenue{currency="RUB",window="24h"} 199.0',
        'vpnshop_payments_24h{provider="yookassa",status="mismatch"} 1.0',
        'vpnshop_trials_started{window="30d"} 2.0',
        'vpnshop_trials_converted{window="30d"} 1.0',
        'vpnshop_outbox_backlog{topic="panel.extend"} 1.0',
        'vpnshop_panel_up{server="fra-1"} 0.0',
        'vpnshop_job_last_run_failed{job="backup_database"} 1.0',
    ):
        assert sample in text, sample
    [age] = [line for line in text.splitlines() if line.startswith("vpnshop_outbox_oldest_due_seconds ")]
    assert float(age.split()[1]) >= 600  # the outbox-stuck alert's threshold


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
