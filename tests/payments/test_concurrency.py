"""Money under concurrency and crashes, on PostgreSQL (SQLite's FOR UPDATE locks nothing; the demo runs one
process): ten parallel deliveries of one success, two checkouts racing for a promo code's last use, referral
milestones reached by parallel payments, and a process killed between the payment's commit and provisioning."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import func, select, text

from app import migrate
from app.db import transaction
from app.kit.clock import utcnow
from app.main import create_app
from app.models import (
    DemoInvoice,
    DemoInvoiceStatus,
    DemoPanelAccount,
    OutboxMessage,
    OutboxStatus,
    Payment,
    PaymentEvent,
    PaymentStatus,
    PromoCode,
    PromoKind,
    ReferralReward,
    ReferralRewardKind,
    Subscription,
    User,
    VpnAccount,
)
from app.outbox.service import dispatch
from app.payments.orders import CheckoutRequest, start_checkout
from app.payments.providers.demo import notification
from app.promo.service import PromoInvalid
from app.resources import Resources
from tests.conftest import POSTGRES_URL, _create_pg_database, _drop_pg_database, make_settings, require_server
from tests.payments.shop import seed_plans

PARALLEL = 10


@pytest.fixture(scope="module")
async def pg_url() -> AsyncIterator[str]:
    require_server("PostgreSQL", POSTGRES_URL)
    name = f"vpnshop_money_{uuid.uuid4().hex[:10]}"
    url = await _create_pg_database(POSTGRES_URL, name)
    await migrate.upgrade(url)
    yield url
    await _drop_pg_database(POSTGRES_URL, name)


@pytest.fixture(scope="module")
async def app(pg_url: str) -> AsyncIterator:
    application = create_app(make_settings(pg_url, demo_payments_enabled=True, db_pool_size=PARALLEL + 2))
    async with application.router.lifespan_context(application):
        resources: Resources = application.state.resources
        async with resources.sessionmaker() as session:
            await seed_plans(session)
        yield application


def resources_of(app) -> Resources:
    return app.state.resources


async def new_user(app, **fields) -> User:
    async with transaction(resources_of(app).sessionmaker) as session:
        telegram_id = uuid.uuid4().int % 10**12
        user = User(telegram_id=telegram_id, referral_code=f"c{telegram_id}", **fields)
        session.add(user)
    return user


async def demo_checkout(app, user: User, **fields) -> Payment:
    resources = resources_of(app)
    async with resources.sessionmaker() as session:
        request = CheckoutRequest(plan="month", provider="demo", **fields)
        return await start_checkout(
            session, resources.payments, resources.settings, user, request, return_url="http://t/{payment}"
        )


async def paid_notification(app, payment: Payment) -> tuple[bytes, dict[str, str]]:
    """The demo provider's customer pays: the invoice is paid and its signed notification built."""
    resources = resources_of(app)
    async with transaction(resources.sessionmaker) as session:
        invoice = await session.scalar(select(DemoInvoice).where(DemoInvoice.external_id == payment.external_id))
        invoice.status, invoice.paid_at = DemoInvoiceStatus.PAID, utcnow()
        return notification(invoice, resources.payments.get("demo").key)


async def post_webhook(app, body: bytes, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://shop") as client:
        return await client.post("/api/payments/webhook/demo", content=body, headers=headers)


async def scalar(app, statement):
    async with resources_of(app).sessionmaker() as session:
        return await session.scalar(statement)


async def test_ten_parallel_deliveries_of_one_success_credit_once(app) -> None:
    user = await new_user(app)
    payment = await demo_checkout(app, user)
    body, headers = await paid_notification(app, payment)
    before = utcnow()
    responses = await asyncio.gather(*(post_webhook(app, body, headers) for _ in range(PARALLEL)))
    assert [r.status_code for r in responses] == [200] * PARALLEL
    outcomes = sorted(r.json()["outcomes"][0] for r in responses)
    assert outcomes == ["applied"] + ["duplicate"] * (PARALLEL - 1)
    ends_at = await scalar(app, select(Subscription.ends_at).where(Subscription.user_id == user.id))
    assert timedelta(days=30) <= ends_at - before < timedelta(days=30, minutes=1)
    assert await scalar(app, select(func.count()).where(PaymentEvent.payment_id == payment.id)) == 1


async def test_ten_different_success_events_for_one_payment_credit_once(app) -> None:
    """Not redeliveries: distinct events (a webhook, a status fetch, the customer's second tap) racing."""
    user = await new_user(app)
    payment = await demo_checkout(app, user)
    resources = resources_of(app)
    async with transaction(resources.sessionmaker) as session:
        invoice = await session.scalar(select(DemoInvoice).where(DemoInvoice.external_id == payment.external_id))
        invoice.status, invoice.paid_at = DemoInvoiceStatus.PAID, utcnow()
        deliveries = [notification(invoice, resources.payments.get("demo").key) for _ in range(PARALLEL)]
    responses = await asyncio.gather(*(post_webhook(app, body, headers) for body, headers in deliveries))
    outcomes = sorted(r.json()["outcomes"][0] for r in responses)
    assert outcomes == ["applied"] + ["unchanged"] * (PARALLEL - 1)
    assert await scalar(app, select(func.count()).where(Subscription.user_id == user.id)) == 1
    assert await scalar(app, select(Payment.status).where(Payment.id == payment.id)) == PaymentStatus.SUCCEEDED


async def test_the_last_use_of_a_promo_code_goes_to_exactly_one_of_two_racing_checkouts(app) -> None:
    async with transaction(resources_of(app).sessionmaker) as session:
        session.add(PromoCode(code="LAST", kind=PromoKind.PERCENT, percent=Decimal(10), max_uses=5, used_count=4))
    users = [await new_user(app) for _ in range(2)]
    results = await asyncio.gather(
        *(demo_checkout(app, user, promo_code="LAST") for user in users), return_exceptions=True
    )
    winners = [r for r in results if isinstance(r, Payment)]
    losers = [r for r in results if isinstance(r, PromoInvalid)]
    assert len(winners) == 1 and len(losers) == 1, results
    assert losers[0].reason == "exhausted"
    assert await scalar(app, select(PromoCode.used_count).where(PromoCode.code == "LAST")) == 5


async def test_a_milestone_reached_by_parallel_payments_is_granted_once(app) -> None:
    referrer = await new_user(app)
    friends = [await new_user(app, referrer_id=referrer.id) for _ in range(3)]
    payments = [await demo_checkout(app, friend) for friend in friends]
    deliveries = [await paid_notification(app, payment) for payment in payments]
    responses = await asyncio.gather(*(post_webhook(app, body, headers) for body, headers in deliveries))
    assert [r.status_code for r in responses] == [200] * 3
    milestones = await scalar(
        app,
        select(func.count()).where(
            ReferralReward.beneficiary_id == referrer.id, ReferralReward.kind == ReferralRewardKind.MILESTONE
        ),
    )
    assert milestones == 1
    referrer_rewards = await scalar(
        app,
        select(func.count()).where(
            ReferralReward.beneficiary_id == referrer.id,
            ReferralReward.kind == ReferralRewardKind.FIRST_PAYMENT_REFERRER,
        ),
    )
    assert referrer_rewards == 3


KILLED_AFTER_COMMIT = textwrap.dedent(
    """
    import asyncio, os, sys
    from app.config import load_settings
    from app.kit.jobs import configure_jobs
    from app.payments.providers.base import IncomingWebhook
    from app.payments.webhooks import receive
    from app.resources import open_resources

    async def main():
        settings = load_settings(_env_file=None, database_url=sys.argv[1], secret_key=sys.argv[2],
                                 encryption_key=sys.argv[3], demo_payments_enabled=True)
        configure_jobs(None)  # no dispatcher in this process: nothing reaches the panel before the kill
        resources = open_resources(settings)
        body = sys.stdin.buffer.read()
        await receive(resources, "demo", IncomingWebhook(body, {"x-demo-signature": sys.argv[4]}, "127.0.0.1"))
        os._exit(137)  # killed right after the payment's commit, before any provisioning

    asyncio.run(main())
    """
)


async def test_a_process_killed_between_payment_and_provisioning_extends_once_after_restart(app, pg_url) -> None:
    user = await new_user(app)
    payment = await demo_checkout(app, user)
    body, headers = await paid_notification(app, payment)
    settings = resources_of(app).settings
    process = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-c",
            KILLED_AFTER_COMMIT,
            pg_url,
            settings.secret_key,
            settings.encryption_key[0],
            headers["x-demo-signature"],
        ],
        input=body,
        capture_output=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    assert process.returncode == 137, process.stderr.decode()
    subscription = await scalar(app, select(Subscription).where(Subscription.user_id == user.id))
    assert subscription is not None  # the payment and its activation were committed before the kill

    # "Restart": a dispatcher runs what the dead process left, twice over (as two workers or a retry would).
    ctx = {"resources": resources_of(app), "settings": settings}
    await dispatch(ctx)
    await dispatch(ctx)
    username = await scalar(app, select(VpnAccount.panel_username).where(VpnAccount.subscription_id == subscription.id))
    async with resources_of(app).sessionmaker() as session:
        rows = (await session.scalars(select(DemoPanelAccount).where(DemoPanelAccount.username == username))).all()
    assert len(rows) == 1
    assert rows[0].expire_at == subscription.ends_at
    assert await scalar(app, select(func.count()).where(OutboxMessage.status == OutboxStatus.DEAD)) == 0


async def _until_a_backend_waits_for_a_lock(app) -> None:
    async with resources_of(app).sessionmaker() as session:
        for _ in range(200):
            waiting = await session.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
            if waiting:
                return
            await asyncio.sleep(0.05)
    raise AssertionError("the notification never waited for a lock")


async def test_a_payment_settled_while_staff_act_on_its_customer_waits_its_turn(app) -> None:
    """Staff actions lock the customer, then the payment (app/admin/users/pages.py::_act). A provider's
    notification locked the payment, then wrote the customer's row (credited days fire the subscriptions trigger):
    the two orders deadlocked, and PostgreSQL aborted one of them. Now the notification takes the customer first
    and waits for the staff action to end."""
    user = await new_user(app)
    payment = await demo_checkout(app, user)
    body, headers = await paid_notification(app, payment)
    async with transaction(resources_of(app).sessionmaker) as staff:
        await staff.execute(select(User.id).where(User.id == user.id).with_for_update())
        delivery = asyncio.ensure_future(post_webhook(app, body, headers))
        await _until_a_backend_waits_for_a_lock(app)
        await staff.execute(select(Payment.id).where(Payment.id == payment.id).with_for_update())
    response = await delivery
    assert response.status_code == 200 and response.json()["outcomes"] == ["applied"]
    assert await scalar(app, select(Payment.status).where(Payment.id == payment.id)) == PaymentStatus.SUCCEEDED
