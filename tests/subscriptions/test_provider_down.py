"""Renewal charges when the provider cannot be reached (SPEC §4.3, §5.6), against the YooKassa emulator over
HTTP: an outage is not the customer's failure (nothing counted, the same charge asked again under the same key
once it is back), and a charge left unanswered is never repeated under a new day's key."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import transaction
from app.kit.http import breaker_for, reset_breakers
from app.models import PaymentStatus, Subscription, SubscriptionStatus, User
from app.payments.operations import reconcile_pending
from app.payments.orders import CheckoutRequest, start_checkout
from app.payments.providers.base import IncomingWebhook
from app.payments.service import apply_update
from app.resources import open_resources
from tests.conftest import make_settings
from tests.emulators.harness import Plug, serve
from tests.emulators.yookassa import YooKassaEmulator
from tests.payments.shop import Shop, reload, seed_plans
from tests.subscriptions.steps import NOW, expire, messages, renewals

CHARGE = "POST /v3/payments"


@dataclass
class YooKassaShop:
    shop: Shop
    emulator: YooKassaEmulator
    plug: Plug
    base_url: str

    def down(self) -> None:
        self.plug.app = None  # every request is answered 503

    def up(self) -> None:
        """Back up, and the circuit breaker's cool-down over (it runs on the real monotonic clock, which the
        test does not wait for)."""
        self.plug.app = self.emulator.app
        breaker = breaker_for(urlsplit(self.base_url).netloc)
        if breaker.opened_at is not None:
            breaker.opened_at -= breaker.cooldown

    async def customer_with_card(self, telegram_id: int) -> tuple[User, Subscription]:
        """A customer who paid through YooKassa and let it save the card."""
        shop = self.shop
        user = await shop.user(telegram_id)
        async with shop.resources.sessionmaker() as session:
            request = CheckoutRequest(plan="month", provider="yookassa")
            payment = await start_checkout(
                session, shop.resources.payments, shop.settings, user, request, return_url="http://t/{payment}"
            )
        assert payment.external_id is not None
        delivery = self.emulator.pay(payment.external_id, save_method=True)
        provider = shop.resources.payments.get("yookassa")
        result = await provider.parse_webhook(IncomingWebhook(delivery.body, delivery.headers, delivery.peer_ip))
        async with transaction(shop.resources.sessionmaker) as session:
            for update in result.updates:
                await apply_update(session, "yookassa", update, shop.settings)
        return user, await reload(shop, Subscription, user_id=user.id)

    def charges(self) -> int:
        """Saved-method charges the provider received."""
        return sum(1 for request in self.emulator.requests(CHARGE) if "payment_method_id" in (request.body or {}))


@pytest.fixture(scope="module")
def yookassa_server() -> Iterator[tuple[Plug, str]]:
    plug = Plug()
    with serve(plug) as base_url:
        yield plug, base_url


@pytest.fixture
async def yookassa(
    database_url: str, db: AsyncSession, yookassa_server: tuple[Plug, str]
) -> AsyncIterator[YooKassaShop]:
    plug, base_url = yookassa_server
    reset_breakers()
    emulator = YooKassaEmulator()
    env = YooKassaShop(None, emulator, plug, base_url)  # type: ignore[arg-type]
    env.up()
    resources = open_resources(make_settings(database_url, **emulator.settings(base_url)))
    try:
        env.shop = Shop(resources, db, await seed_plans(db))
        yield env
    finally:
        await resources.aclose()
        plug.app = None
        reset_breakers()


async def test_an_outage_is_not_counted_and_the_charge_is_asked_again(yookassa: YooKassaShop, freeze) -> None:
    clock = freeze(NOW)
    shop = yookassa.shop
    _, subscription = await yookassa.customer_with_card(1)
    clock.current = subscription.ends_at + timedelta(minutes=1)
    yookassa.down()
    assert await expire(shop) == {"unavailable": 1}
    clock.current += timedelta(minutes=5)
    assert await expire(shop) == {"unavailable": 1}
    waiting = await reload(shop, Subscription, id=subscription.id)
    assert (waiting.status, waiting.renewal_failures, waiting.next_renewal_attempt_at) == (
        SubscriptionStatus.ACTIVE,
        0,
        None,
    )
    assert await messages(shop, "renewal_failed", "subscription_ended", "payment_failed") == []
    assert yookassa.charges() == 0

    yookassa.up()
    clock.current += timedelta(minutes=5)
    assert await expire(shop) == {"renewed": 1}
    [payment] = await renewals(shop)  # the one made before the outage, charged once it was back
    assert payment.status == PaymentStatus.SUCCEEDED
    assert yookassa.charges() == 1
    renewed = await reload(shop, Subscription, id=subscription.id)
    assert renewed.ends_at == clock.current + timedelta(days=30) and renewed.renewal_failures == 0


async def test_an_unanswered_charge_is_not_repeated_the_next_day(yookassa: YooKassaShop, freeze) -> None:
    clock = freeze(NOW)
    shop = yookassa.shop
    _, subscription = await yookassa.customer_with_card(2)
    clock.current = subscription.ends_at + timedelta(minutes=1)
    yookassa.down()
    assert await expire(shop) == {"unavailable": 1}
    yookassa.up()
    # Past midnight the charge would get a new key; while the first may still be in flight it is left alone.
    clock.current = subscription.ends_at + timedelta(hours=23)
    assert clock.current.date() != subscription.ends_at.date()
    assert await expire(shop) == {"pending": 1}
    assert len(await renewals(shop)) == 1 and yookassa.charges() == 0

    # A day after it was made, reconciliation closes it (YooKassa never saw it); then a fresh charge is made.
    clock.current = subscription.ends_at + timedelta(days=1, minutes=2)
    assert (await reconcile_pending(shop.resources))["expired"] == 1
    assert await expire(shop) == {"renewed": 1}
    assert [p.status for p in await renewals(shop)] == [PaymentStatus.CANCELLED, PaymentStatus.SUCCEEDED]
    assert yookassa.charges() == 1
    assert (await reload(shop, Subscription, id=subscription.id)).renewal_failures == 0
