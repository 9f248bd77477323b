"""Results: conversion is the first paid payment within the window after exposure (counted once per customer);
the Wilson interval and the probability of beating the control match figures worked out independently."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import Actor
from app.experiments import service, stats
from app.models import ExperimentAssignment, Payment, PaymentStatus, User

SYSTEM = Actor("system", None)
T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def test_wilson_interval_matches_the_textbook_figures() -> None:
    # 10 of 100 at 95 %: 0.0552 – 0.1744 (Newcombe 1998, method 3 worked example).
    low, high = stats.wilson(10, 100)
    assert (round(low, 4), round(high, 4)) == (0.0552, 0.1744)
    assert stats.wilson(0, 0) == (0.0, 1.0)
    low, high = stats.wilson(0, 20)
    assert low == 0.0 and 0.16 < high < 0.17


def test_probability_of_beating_the_control() -> None:
    # Equal data: exactly one half by symmetry.
    assert stats.probability_beats(30, 100, 30, 100) == pytest.approx(0.5, abs=1e-9)
    # No data at all: two uniform priors, one half again.
    assert stats.probability_beats(0, 0, 0, 0) == pytest.approx(0.5, abs=1e-9)
    # 1 of 1 against 0 of 1: P(Beta(2,1) > Beta(1,2)) = ∫ 2x · (2x - x²) dx over [0, 1] = 4/3 - 1/2 = 5/6.
    assert stats.probability_beats(1, 1, 0, 1) == pytest.approx(5 / 6, abs=1e-9)
    better = stats.probability_beats(60, 1000, 40, 1000)
    assert 0.97 < better < 0.99  # a two-sided z-test gives p ≈ 0.043 here, so one-sided ≈ 0.98
    assert stats.probability_beats(40, 1000, 60, 1000) == pytest.approx(1 - better, abs=1e-9)


async def _customer(db: AsyncSession, n: int, variant: str, experiment_id: int, paid_after: list[timedelta]) -> None:
    user = User(telegram_id=990_000 + n, referral_code=f"s{n}", language="en")
    db.add(user)
    await db.flush()
    db.add(ExperimentAssignment(experiment_id=experiment_id, user_id=user.id, variant=variant, assigned_at=T0))
    for offset in paid_after:
        db.add(
            Payment(
                public_id=str(uuid.uuid4()),
                user_id=user.id,
                provider="demo",
                amount_minor=19900,
                currency="RUB",
                status=PaymentStatus.SUCCEEDED,
                idempotency_key=uuid.uuid4().hex,
                days=30,
                paid_at=T0 + offset,
            )
        )


async def test_each_customer_converts_at_most_once_and_only_within_the_window(db: AsyncSession) -> None:
    draft = service.ExperimentDraft(
        key="window",
        name="Window",
        kind="text",
        target="checkout.title",
        variants=[service.VariantDraft("control", 1), service.VariantDraft("new", 1)],
        conversion_days=7,
    )
    experiment = await service.create(db, draft, SYSTEM)
    day = timedelta(days=1)
    await _customer(db, 1, "control", experiment.id, [day, 2 * day, 3 * day])  # three payments: one conversion
    await _customer(db, 2, "control", experiment.id, [-day])  # paid before exposure: not a conversion
    await _customer(db, 3, "control", experiment.id, [8 * day])  # paid after the window: not a conversion
    await _customer(db, 4, "control", experiment.id, [])
    await _customer(db, 5, "new", experiment.id, [7 * day])  # on the window's last instant: counted
    await _customer(db, 6, "new", experiment.id, [-day, 2 * day])  # the one after exposure counts
    await db.commit()
    results = {r.key: r for r in await stats.results(db, experiment)}
    assert (results["control"].exposed, results["control"].converted) == (4, 1)
    assert (results["new"].exposed, results["new"].converted) == (2, 2)
    assert results["control"].rate == 0.25 and results["control"].beats_control is None
    assert results["new"].beats_control == pytest.approx(stats.probability_beats(2, 2, 1, 4))
    assert (results["new"].low, results["new"].high) == stats.wilson(2, 2)
