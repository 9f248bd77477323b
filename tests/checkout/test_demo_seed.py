"""The demo's promo codes: seeded with the demo data, and again into an older demo database that has none,
never on top of a shop's own codes."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.demo.seed import seed_demo
from app.models import PromoCode, PromoKind


async def codes(db: AsyncSession) -> dict[str, PromoCode]:
    return {promo.code: promo for promo in (await db.scalars(select(PromoCode))).all()}


async def test_the_demo_seeds_its_promo_codes_once(db: AsyncSession) -> None:
    assert await seed_demo(db) is True
    seeded = await codes(db)
    assert set(seeded) == {"DEMO20", "WELCOME7"}
    demo20, welcome7 = seeded["DEMO20"], seeded["WELCOME7"]
    assert (demo20.kind, demo20.percent, demo20.max_uses) == (PromoKind.PERCENT, Decimal(20), None)
    assert (welcome7.kind, welcome7.extra_days) == (PromoKind.DAYS, 7)
    assert all(promo.is_active and promo.once_per_user for promo in seeded.values())
    await db.commit()
    assert await seed_demo(db) is False and len(await codes(db)) == 2


async def test_an_older_demo_database_gets_the_codes_but_a_shops_own_codes_stay_alone(db: AsyncSession) -> None:
    await seed_demo(db)
    for promo in (await codes(db)).values():
        await db.delete(promo)
    await db.commit()
    assert await seed_demo(db) is False  # plans exist: nothing else is seeded again
    assert set(await codes(db)) == {"DEMO20", "WELCOME7"}

    for promo in (await codes(db)).values():
        await db.delete(promo)
    db.add(PromoCode(code="SHOP5", kind=PromoKind.PERCENT, percent=5))
    await db.commit()
    await seed_demo(db)
    assert set(await codes(db)) == {"SHOP5"}
