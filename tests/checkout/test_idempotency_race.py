"""One Idempotency-Key sent by parallel checkouts (issue 18 item 2): one payment, every answer names it, none
fails; the key reused for a different plan, promo code, currency or provider is refused with 422."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from app.models import Payment
from tests.checkout.conftest import Shop, ShopFactory
from tests.web import tma

PARALLEL = 10


@pytest.fixture
async def racing_shop(open_shop: ShopFactory) -> Shop:
    async with open_shop() as shop:
        # A crash must come back as the 500 a server would answer, to be counted.
        shop.client._transport.raise_app_exceptions = False  # type: ignore[attr-defined]
        yield shop


async def test_parallel_checkouts_with_one_key_make_one_payment(racing_shop: Shop) -> None:
    shop = racing_shop
    await shop.promo("SAVE20", percent=20)
    request = {"plan": "month", "provider": "demo", "currency": "RUB", "promo_code": "SAVE20"}
    headers = tma() | {"idempotency-key": "tap-tap-tap"}
    assert (await shop.client.get("/api/me", headers=headers)).status_code == 200  # a known customer, racing
    responses = await asyncio.gather(
        *(shop.client.post("/api/checkout", headers=headers, json=request) for _ in range(PARALLEL))
    )
    assert Counter(response.status_code for response in responses) == {201: PARALLEL}, [
        response.text[:200] for response in responses if response.status_code != 201
    ]
    assert len({response.json()["payment_id"] for response in responses}) == 1
    assert await shop.count(Payment) == 1


@pytest.mark.parametrize(
    "change",
    [{"plan": "year"}, {"promo_code": "OTHER10"}, {"promo_code": None}, {"currency": "USD"}],
)
async def test_a_key_reused_for_another_checkout_is_refused(shop: Shop, change: dict[str, object]) -> None:
    await shop.promo("SAVE20", percent=20)
    await shop.promo("OTHER10", percent=10)
    request = {"plan": "month", "provider": "demo", "currency": "RUB", "promo_code": "SAVE20"}
    headers = tma() | {"idempotency-key": "order-7"}
    first = await shop.client.post("/api/checkout", headers=headers, json=request)
    assert first.status_code == 201, first.text
    again = await shop.client.post("/api/checkout", headers=headers, json=request | {"promo_code": "save20"})
    assert again.status_code == 201 and again.json()["payment_id"] == first.json()["payment_id"]
    reused = await shop.client.post("/api/checkout", headers=headers, json=request | change)
    assert reused.status_code == 422, reused.text
    assert reused.json()["error"]["code"] == "idempotency_key_reused"
    assert await shop.count(Payment) == 1
