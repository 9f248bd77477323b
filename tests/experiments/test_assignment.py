"""Assignment: the same variant in every process and after restarts (sha256, not the per-process salted hash()),
weights honoured (50/50 within tolerance over 10,000 customers), one recorded row per customer even when exposed
concurrently, and the recorded variant kept if the weights change later."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import Counter

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.audit.service import Actor
from app.experiments import service
from app.experiments.assignment import bucket, expose, pick
from app.models import ExperimentAssignment, User

SYSTEM = Actor("system", None)
HALVES = [{"key": "a", "weight": 50, "params": {}}, {"key": "b", "weight": 50, "params": {}}]
PROGRAM = """
import json, sys
from app.experiments.assignment import pick
variants = json.loads(sys.argv[1])
print(json.dumps([pick(variants, "spring", user_id) for user_id in range(1, 2001)]))
"""


def _in_a_new_process(seed: str) -> list[str]:
    environment = os.environ | {"PYTHONHASHSEED": seed}
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM, json.dumps(HALVES)],
        capture_output=True,
        text=True,
        check=True,
        env=environment,
        timeout=120,
    )
    return json.loads(done.stdout)


def test_assignment_is_the_same_in_every_process() -> None:
    here = [pick(HALVES, "spring", user_id) for user_id in range(1, 2001)]
    # Two interpreters with different hash seeds: Python's hash() would differ between them, sha256 does not.
    assert _in_a_new_process("1") == _in_a_new_process("12345") == here
    assert bucket("spring", 42) == bucket("spring", 42) != bucket("autumn", 42)


def test_a_fifty_fifty_split_over_ten_thousand_customers() -> None:
    counts = Counter(pick(HALVES, "spring", user_id) for user_id in range(1, 10_001))
    # Binomial(10,000, ½): σ = 50, so ±300 is six σ — never by chance, always for a biased hash.
    assert abs(counts["a"] - 5000) <= 300, counts
    assert counts["a"] + counts["b"] == 10_000


def test_weights_other_than_equal_are_honoured() -> None:
    variants = [{"key": "a", "weight": 1}, {"key": "b", "weight": 3}, {"key": "c", "weight": 6}]
    counts = Counter(pick(variants, "weights", user_id) for user_id in range(1, 10_001))
    for key, share in (("a", 0.1), ("b", 0.3), ("c", 0.6)):
        # σ of a share p over 10,000 is at most 50 customers; six σ again.
        assert abs(counts[key] - share * 10_000) <= 300, counts


async def _users(db: AsyncSession, count: int) -> list[int]:
    users = [User(telegram_id=880_000 + n, referral_code=f"x{n}", language="en") for n in range(count)]
    db.add_all(users)
    await db.flush()
    return [user.id for user in users]


async def test_first_exposure_is_recorded_once_and_kept_after_a_restart(db: AsyncSession, engine) -> None:  # type: ignore[no-untyped-def]
    draft = service.ExperimentDraft(
        key="spring",
        name="Spring title",
        kind="text",
        target="checkout.title",
        variants=[service.VariantDraft("a", 50), service.VariantDraft("b", 50, texts={"en": "Hi"})],
    )
    experiment = await service.create(db, draft, SYSTEM)
    await service.start(db, experiment.id, SYSTEM)
    user_ids = await _users(db, 40)
    await db.commit()
    experiment_id = experiment.id
    first = {user_id: await expose(db, experiment, user_id) for user_id in user_ids}
    await db.commit()
    assert first == {user_id: pick(HALVES, "spring", user_id) for user_id in user_ids}
    # Exposed again, concurrently, from other sessions (other requests): still one row per customer.
    sessionmaker = async_sessionmaker(engine, expire_on_commit=False)

    async def again(user_id: int) -> str:
        async with sessionmaker() as session:
            loaded = await service.get(session, experiment_id)
            variant = await expose(session, loaded, user_id)
            await session.commit()
            return variant

    for user_id in user_ids[:10]:
        results = await asyncio.gather(again(user_id), again(user_id))
        assert set(results) == {first[user_id]}
    rows = await db.scalar(select(func.count()).select_from(ExperimentAssignment))
    assert rows == 40
    # "A restart": the weights edited in the database; the recorded variant wins for those already exposed.
    async with sessionmaker() as session:
        loaded = await service.get(session, experiment_id)
        loaded.variants = [{"key": "a", "weight": 1, "params": {}}, {"key": "b", "weight": 999, "params": {}}]
        await session.commit()
        assert {user_id: await expose(session, loaded, user_id) for user_id in user_ids} == first
