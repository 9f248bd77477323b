"""The page a payment provider sends the customer back to (issue 20): public, since it is often the system
browser without the customer's session; it says paid, failed, cancelled or waiting in the visitor's language,
offers the way back to Telegram and shows nothing private; the payment's owner signed in in that browser goes
on to the cabinet's payment page."""

from __future__ import annotations

import re

import pytest

from app.models import Payment, User
from tests.checkout.conftest import Shop, ShopFactory
from tests.checkout.test_pages import pay_on_demo_page, start_in_telegram
from tests.web import browser_session, text_of

BOT = "vpnshop_bot"


async def result(shop: Shop, payment: Payment, language: str = "en-US") -> str:
    shop.client.cookies.clear()  # the system browser: no session of ours
    response = await shop.client.get(f"/payments/{payment.public_id}", headers={"accept-language": language})
    assert response.status_code == 200 and response.headers["cache-control"] == "no-store"
    return response.text


@pytest.mark.parametrize(
    ("outcome", "status", "english", "russian"),
    [
        ("succeed", "succeeded", "Payment received", "Оплата получена"),
        ("fail", "failed", "The payment did not go through", "Оплата не прошла"),
        ("cancel", "cancelled", "The payment was cancelled", "Оплата отменена"),
    ],
)
async def test_the_provider_returns_to_a_public_page_with_the_outcome(
    open_shop: ShopFactory, outcome: str, status: str, english: str, russian: str
) -> None:
    async with open_shop(bot_username=f"@{BOT}") as shop:
        payment = await start_in_telegram(shop)
        await pay_on_demo_page(shop, payment, outcome)  # asserts the provider sends the customer to /payments/<id>

        page = await result(shop, payment)
        assert f'data-status="{status}"' in page and english in text_of(page)
        assert f'href="https://t.me/{BOT}" data-testid="back-to-telegram"' in page and "Back to Telegram" in page
        assert "hx-trigger" not in page  # settled: it does not poll
        # Nothing private: not the amount, the plan or who paid.
        assert not re.search(r"2[.,]99|\$|1 month|Mia|777", text_of(page))
        assert russian in text_of(await result(shop, payment, "ru-RU"))


async def test_a_pending_payment_says_it_waits_and_asks_again(shop: Shop) -> None:
    payment = await start_in_telegram(shop)
    page = await result(shop, payment)
    assert 'data-status="pending"' in page and "Waiting for the payment to be confirmed" in text_of(page)
    assert f'hx-get="/payments/{payment.public_id}" hx-trigger="every 3s"' in page
    block = await shop.client.get(
        f"/payments/{payment.public_id}", headers={"hx-request": "true", "hx-target": "result"}
    )
    assert block.text.lstrip().startswith('<section id="result"') and "<html" not in block.text


async def test_an_unknown_payment_is_a_plain_not_found_page(shop: Shop) -> None:
    for public_id in ("00000000-0000-0000-0000-000000000000", "nonsense", "x" * 300):
        response = await shop.client.get(f"/payments/{public_id}")
        assert response.status_code == 404 and "payment_not_found" in response.text


async def test_the_owner_signed_in_in_that_browser_goes_on_to_the_cabinet(shop: Shop) -> None:
    payment = await start_in_telegram(shop)
    owner = await shop.user()
    await browser_session(shop.client, shop.db, owner, shop.settings)
    mine = await shop.client.get(f"/payments/{payment.public_id}")
    assert mine.status_code == 303 and mine.headers["location"] == f"/app/payments/{payment.public_id}"

    stranger = User(telegram_id=9901, referral_code="r9901", language="en")
    shop.db.add(stranger)
    await shop.db.commit()
    await browser_session(shop.client, shop.db, stranger, shop.settings)
    theirs = await shop.client.get(f"/payments/{payment.public_id}")
    assert theirs.status_code == 200 and 'data-testid="payment-result"' in theirs.text
