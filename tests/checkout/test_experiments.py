"""A price experiment on a plan: each customer sees and is charged their variant's price (the same lookup for
both), is recorded at first exposure, and their payment counts once as the variant's conversion; a text
experiment changes a text for its variant only and exposes those who saw it; a stopped experiment changes nothing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from app.audit.service import Actor
from app.experiments import service as experiments
from app.experiments import stats
from app.experiments import texts as experiment_texts
from app.experiments.assignment import pick
from app.models import ExperimentAssignment
from tests.checkout.conftest import Shop
from tests.checkout.test_api import pay
from tests.web import tma

STAFF = Actor("system", None)
CHEAP = {"RUB": 14900, "USD": 199}
LIST_PRICE = {"RUB": 19900, "USD": 299}


@dataclass(frozen=True)
class Started:
    """What the tests need of an experiment, as plain values (a rollback expires ORM rows)."""

    id: int
    key: str
    variants: list[dict[str, Any]]


async def _experiment(shop: Shop, **fields: object) -> Started:
    draft = experiments.ExperimentDraft(
        key=str(fields.get("key", "month-price")),
        name="Cheaper month",
        kind=str(fields.get("kind", "price")),
        target=str(fields.get("target", "month")),
        variants=fields.get(  # type: ignore[arg-type]
            "variants",
            [experiments.VariantDraft("control", 50), experiments.VariantDraft("cheap", 50, prices=CHEAP)],
        ),
    )
    experiment = await experiments.create(shop.db, draft, STAFF)
    await experiments.start(shop.db, experiment.id, STAFF)
    await shop.db.commit()
    return Started(experiment.id, experiment.key, list(experiment.variants))


async def test_the_price_shown_and_charged_is_the_customers_variant(shop: Shop) -> None:
    experiment = await _experiment(shop)
    seen: dict[str, int] = {}
    for telegram_id in range(5001, 5041):
        headers = tma(user_id=telegram_id, language="en")
        plans = (await shop.client.get("/api/plans", headers=headers)).json()
        shown = {p["currency"]: p["amount_minor"] for p in plans[0]["prices"]}
        user = await shop.user(telegram_id)
        variant = pick(experiment.variants, experiment.key, user.id)
        expected = CHEAP if variant == "cheap" else LIST_PRICE
        assert shown["USD"] == expected["USD"] and shown["RUB"] == expected["RUB"], variant
        response = await shop.client.post(
            "/api/checkout", headers=headers, json={"plan": "month", "provider": "demo", "currency": "USD"}
        )
        assert response.status_code == 201, response.text
        assert response.json()["amount_minor"] == expected["USD"]
        payment = (await shop.payments())[-1]
        assert payment.amount_minor == expected["USD"]  # charged, not only shown
        seen.setdefault(variant, telegram_id)
        if len(seen) == 2:
            break
    assert set(seen) == {"control", "cheap"}
    recorded = (await shop.db.execute(select(ExperimentAssignment.user_id, ExperimentAssignment.variant))).all()
    assert len(recorded) == len({user_id for user_id, _ in recorded})  # one row per customer, however often seen
    assert {variant for _, variant in recorded} == {"control", "cheap"}


async def test_a_payment_counts_once_as_its_variants_conversion(shop: Shop) -> None:
    experiment = await _experiment(shop)
    headers = tma(user_id=6001, language="en")
    first = await shop.client.post(
        "/api/checkout", headers=headers, json={"plan": "month", "provider": "demo", "currency": "USD"}
    )
    await pay(shop, first.json()["payment_id"])
    second = await shop.client.post(
        "/api/checkout", headers=headers, json={"plan": "month", "provider": "demo", "currency": "USD"}
    )
    assert second.status_code == 201, second.text
    await pay(shop, second.json()["payment_id"])
    user = await shop.user(6001)
    variant = pick(experiment.variants, experiment.key, user.id)
    results = {r.key: r for r in await stats.results(shop.db, await experiments.get(shop.db, experiment.id))}
    assert (results[variant].exposed, results[variant].converted) == (1, 1)  # two payments, one conversion
    other = next(key for key in results if key != variant)
    assert (results[other].exposed, results[other].converted) == (0, 0)


async def test_a_text_experiment_changes_any_text_for_its_variant_and_counts_who_saw_it(shop: Shop) -> None:
    """An experiment on the settings page's heading (any catalog key works the same): each customer sees their
    variant's text; opening a page that does not show the text exposes nobody, opening one that does exposes the
    customer once, control included; once stopped, everyone reads the normal text again."""
    variants = [
        experiments.VariantDraft("control", 1),
        experiments.VariantDraft("bold", 1, texts={"en": "Your settings — made simple", "ru": "Ваши настройки"}),
    ]
    experiment = await _experiment(shop, key="settings-title", kind="text", target="settings.title", variants=variants)
    sessionmaker = shop.app.state.resources.sessionmaker
    await experiment_texts.refresh(sessionmaker)  # the app's refresher does this every second
    titles: dict[str, str] = {}
    for telegram_id in range(7001, 7041):
        headers = tma(user_id=telegram_id, language="en")
        assert (await shop.client.get("/app/checkout", headers=headers)).status_code == 200  # not this text
        user_id = (await shop.user(telegram_id)).id
        assert await _assignment(shop, experiment.id, user_id) is None
        for _ in range(2):
            page = await shop.client.get("/app/settings", headers=headers)
            assert page.status_code == 200
        variant = pick(experiment.variants, experiment.key, user_id)
        assert await _assignment(shop, experiment.id, user_id) == variant
        titles[variant] = page.text.split('<h1 class="page-title">', 1)[1].split("<", 1)[0]
        if len(titles) == 2:
            break
    assert titles["bold"] == "Your settings — made simple"
    assert titles["control"] != titles["bold"]

    await experiments.stop(shop.db, experiment.id, STAFF)
    await shop.db.commit()
    await experiment_texts.refresh(sessionmaker)
    for bold_user in range(7001, 7041):  # the customers made above include one of each variant
        if pick(experiment.variants, experiment.key, (await shop.user(bold_user)).id) == "bold":
            break
    page = await shop.client.get("/app/settings", headers=tma(user_id=bold_user, language="en"))
    assert "made simple" not in page.text


async def _assignment(shop: Shop, experiment_id: int, user_id: int) -> str | None:
    await shop.db.rollback()
    return await shop.db.scalar(
        select(ExperimentAssignment.variant).where(
            ExperimentAssignment.experiment_id == experiment_id, ExperimentAssignment.user_id == user_id
        )
    )
