"""/admin/experiments and /api/admin/experiments: a refused form or request names its field and stores nothing;
a created experiment starts and stops (audited, refused from the wrong state, one running per target); its page
shows the results per variant."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import AuditLog, Experiment, ExperimentAssignment, Plan, PlanPrice, User
from tests.admin.conftest import AdminHarness

EN = {"accept-language": "en"}
GOOD = {
    "key": "month-price",
    "name": "Cheaper month",
    "kind": "price",
    "target": "month",
    "conversion_days": "14",
    "v1.key": "control",
    "v1.weight": "50",
    "v2.key": "cheap",
    "v2.weight": "50",
    "v2.prices": "RUB 149.00, USD 1.99",
}


@pytest.fixture
async def month(db: AsyncSession) -> int:
    plan = Plan(code="month", name={"ru": "Месяц", "en": "Month"}, duration_days=30)
    db.add(plan)
    await db.flush()
    db.add_all(
        [
            PlanPrice(plan_id=plan.id, currency="RUB", amount_minor=19900),
            PlanPrice(plan_id=plan.id, currency="USD", amount_minor=299),
        ]
    )
    await db.commit()
    return plan.id


async def _counts(db: AsyncSession) -> tuple[int, int]:
    await db.rollback()
    experiments = await db.scalar(select(func.count()).select_from(Experiment))
    audits = await db.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.entity_type == "experiment"))
    return int(experiments or 0), int(audits or 0)


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"key": "Bad Key"}, "key", "lowercase"),
        ({"name": " "}, "name", "name must be"),
        ({"kind": "colour"}, "kind", "price or text"),
        ({"target": "nope"}, "target", "no plan with the code"),
        ({"conversion_days": "0"}, "conversion_days", "1–365"),
        ({"conversion_days": "x"}, "conversion_days", "whole number"),
        ({"v2.key": ""}, "variants", "2–10 variants"),
        ({"v2.key": "control"}, "variants", "used twice"),
        ({"v2.weight": "0"}, "variants", "weight"),
        ({"v2.weight": "abc"}, "v2.weight", "whole number"),
        ({"v2.prices": "RUB 1.999"}, "v2.prices", "decimal places"),
        ({"v2.prices": "EUR 1.00"}, "variants", "no price in 'EUR'"),
        ({"v2.prices": "RUB 0"}, "variants", "above zero"),
    ],
)
async def test_a_refused_form_names_its_field_and_changes_nothing(
    admin: AdminHarness, db: AsyncSession, month: int, changes: dict[str, str], field: str, message: str
) -> None:
    marketing = await admin.browser("marketing")
    response = await marketing.post("/admin/experiments", data=GOOD | changes, headers=EN)
    assert response.status_code == 422, response.text
    error = re.search(rf'id="{re.escape(field)}-error"[^>]*>([^<]*)<', response.text)
    assert error is not None, f"no error beside {field}"
    assert message in error.group(1).replace("&#39;", "'")
    assert await _counts(db) == (0, 0)


async def test_create_start_stop_with_results(admin: AdminHarness, db: AsyncSession, month: int) -> None:
    marketing = await admin.browser("marketing")
    created = await marketing.post("/admin/experiments", data=GOOD, headers=EN)
    assert created.status_code == 303, created.text
    experiment = (await db.scalars(select(Experiment))).one()
    assert experiment.variants[1] == {"key": "cheap", "weight": 50, "params": {"prices": {"RUB": 14900, "USD": 199}}}
    base = f"/admin/experiments/{experiment.id}"
    wrong = await marketing.post(f"{base}/stop", headers=EN)
    assert wrong.status_code == 409
    assert (await marketing.post(f"{base}/start", headers=EN)).status_code == 303
    # A second experiment on the same plan cannot run at the same time.
    await marketing.post("/admin/experiments", data=GOOD | {"key": "month-2"}, headers=EN)
    second = await db.scalar(select(Experiment.id).where(Experiment.key == "month-2"))
    clash = await marketing.post(f"/admin/experiments/{second}/start", headers=EN)
    assert clash.status_code == 409 and "already running" in clash.text
    user = User(telegram_id=4242, referral_code="r4242", language="en")
    db.add(user)
    await db.flush()
    db.add(ExperimentAssignment(experiment_id=experiment.id, user_id=user.id, variant="cheap"))
    await db.commit()
    page = await marketing.get(base, headers=EN)
    assert re.search(r'data-variant="cheap">.*?data-testid="exposed">1<', page.text, re.S)
    assert (await marketing.post(f"{base}/stop", headers=EN)).status_code == 303
    await db.rollback()
    actions = (
        await db.scalars(select(AuditLog.action).where(AuditLog.entity_id == str(experiment.id)).order_by(AuditLog.id))
    ).all()
    assert actions == ["experiment.created", "experiment.started", "experiment.stopped"]
    listing = await marketing.get("/admin/experiments", headers=EN)
    assert f'data-experiment="{experiment.id}"' in listing.text


async def test_api_creates_reads_and_refuses_by_field(admin: AdminHarness, db: AsyncSession, month: int) -> None:
    headers = await admin.bearer("marketing")
    body = {
        "key": "api-price",
        "name": "API",
        "kind": "price",
        "target": "month",
        "variants": [{"key": "a", "weight": 1}, {"key": "b", "weight": 1, "prices": {"XTR": 10}}],
    }
    refused = await admin.client.post("/api/admin/experiments", json=body, headers=headers)
    assert refused.status_code == 422
    assert refused.json()["error"]["fields"][0]["field"] == "variants"
    assert await _counts(db) == (0, 0)
    body["variants"][1]["prices"] = {"USD": 199}  # type: ignore[index]
    created = await admin.client.post("/api/admin/experiments", json=body, headers=headers)
    assert created.status_code == 201, created.text
    experiment_id = created.json()["id"]
    started = await admin.client.post(f"/api/admin/experiments/{experiment_id}/start", headers=headers)
    assert started.json()["state"] == "running"
    detail = await admin.client.get(f"/api/admin/experiments/{experiment_id}", headers=headers)
    assert [r["key"] for r in detail.json()["results"]] == ["a", "b"]
    assert abs(detail.json()["results"][1]["beats_control"] - 0.5) < 1e-9  # no data: a coin toss
    support = await admin.bearer("support")
    assert (await admin.client.get("/api/admin/experiments", headers=support)).status_code == 403
