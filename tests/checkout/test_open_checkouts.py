"""A cap on the unpaid checkouts one customer may hold (issue 18 item 6): each is a call to a provider."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from app.models import Payment
from tests.checkout.conftest import Shop, ShopFactory
from tests.web import tma


@pytest.fixture
async def capped_shop(open_shop: ShopFactory) -> AsyncIterator[Shop]:
    async with open_shop(max_open_checkouts=3) as shop:
        yield shop


async def test_open_checkouts_per_customer_are_capped(capped_shop: Shop) -> None:
    shop = capped_shop
    request = {"plan": "month", "provider": "demo", "currency": "RUB"}
    keyed = tma() | {"idempotency-key": "first"}
    first = await shop.client.post("/api/checkout", headers=keyed, json=request)
    statuses = [(await shop.client.post("/api/checkout", headers=tma(), json=request)).status_code for _ in range(4)]
    assert first.status_code == 201 and statuses == [201, 201, 429, 429]
    refused = await shop.client.post("/api/checkout", headers=tma(), json=request)
    assert refused.json()["error"]["code"] == "too_many_open_checkouts"
    assert int(refused.headers["retry-after"]) > 60  # until the oldest one expires (CHECKOUT_TTL_MINUTES)
    assert await shop.count(Payment) == 3
    # A repeated Idempotency-Key still answers with its payment; another customer has room of their own.
    again = await shop.client.post("/api/checkout", headers=keyed, json=request)
    assert again.status_code == 201 and again.json()["payment_id"] == first.json()["payment_id"]
    assert (await shop.client.post("/api/checkout", headers=tma(user_id=778), json=request)).status_code == 201
