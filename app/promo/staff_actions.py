"""What staff do with promo codes (SPEC §8, §10.5): create, edit and deactivate. The input is one pydantic model,
`PromoDraft`, that both the admin form and the JSON API validate with, so each refuses the same things with the
same words; a rule that needs the database (the code is taken, a plan does not exist, max uses below the uses
already taken) raises FieldInvalid naming its field. Each change writes its audit row (before and after) in the
caller's transaction; nothing is changed when anything is refused. A code is never deleted: deactivating keeps
its redemptions and the payments that name it."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import Actor, record_by
from app.kit.errors import NotFound
from app.kit.field_errors import FieldInvalid
from app.kit.money import CURRENCY_EXPONENTS, Money, MoneyError
from app.models import Plan, PromoCode, PromoCodeAmount, PromoKind, promo_code_plans
from app.promo.service import normalize

CODE_PATTERN = re.compile(r"^[A-Z0-9][A-Z0-9_-]{2,31}$")
MAX_DAYS = 3650
MAX_USES = 1_000_000


class PromoDraft(BaseModel):
    """A promo code as staff enter it. Amounts of a fixed code are in major units per currency ("50.00")."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(max_length=64)
    kind: PromoKind
    # Only the kind's own value is kept (validate_default: checked even when left out), so a stale percent never
    # rides along on a days code.
    percent: Decimal | None = Field(default=None, validate_default=True)
    amounts: dict[str, str] = Field(default_factory=dict, validate_default=True)
    extra_days: int | None = Field(default=None, ge=1, le=MAX_DAYS, validate_default=True)
    max_uses: int | None = Field(default=None, ge=1, le=MAX_USES)
    once_per_user: bool = True
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    plan_ids: list[int] = Field(default_factory=list, max_length=100)
    is_active: bool = True

    @field_validator("code")
    @classmethod
    def _code(cls, value: str) -> str:
        code = normalize(value)
        if not CODE_PATTERN.match(code):
            raise ValueError("3 to 32 letters A–Z, digits, '-' or '_', starting with a letter or digit.")
        return code

    @field_validator("percent")
    @classmethod
    def _percent(cls, value: Decimal | None, info: ValidationInfo) -> Decimal | None:
        if info.data.get("kind") != PromoKind.PERCENT:
            return None
        if value is None:
            raise ValueError("A percent code needs its percent.")
        if not value.is_finite() or not Decimal(0) < value < Decimal(100):
            # 100 % would make a plan free, which checkout refuses (free time is what "days" codes are for).
            raise ValueError("A percent must be more than 0 and less than 100.")
        if value != value.quantize(Decimal("0.01")):
            raise ValueError("A percent has at most two decimal places.")
        return value.quantize(Decimal("0.01"))  # as the column stores it, so the audit row says the same

    @field_validator("amounts")
    @classmethod
    def _amounts(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        if info.data.get("kind") != PromoKind.FIXED:
            return {}
        if not value:
            raise ValueError("A fixed-amount code needs an amount in at least one currency.")
        checked: dict[str, str] = {}
        for raw_currency, raw_amount in value.items():
            currency = raw_currency.strip().upper()
            if currency not in CURRENCY_EXPONENTS:
                raise ValueError(f"{raw_currency}: not a currency we take.")
            try:
                money = Money.of(str(raw_amount).strip(), currency)
            except (MoneyError, InvalidOperation):
                places = CURRENCY_EXPONENTS[currency]
                raise ValueError(f"{currency}: give an amount with at most {places} decimal places.") from None
            if not money.amount.is_finite() or money.minor <= 0:
                raise ValueError(f"{currency}: the amount must be more than zero.")
            if money.minor > 10**15:
                raise ValueError(f"{currency}: the amount is too large.")
            checked[currency] = str(money.amount)
        return checked

    @field_validator("extra_days")
    @classmethod
    def _days(cls, value: int | None, info: ValidationInfo) -> int | None:
        if info.data.get("kind") != PromoKind.DAYS:
            return None
        if value is None:
            raise ValueError("A days code needs its number of days.")
        return value

    @field_validator("valid_from", "valid_until", mode="before")
    @classmethod
    def _utc(cls, value: object) -> object:
        # A form's datetime-local has no zone: the admin's times are UTC, as the page says.
        if isinstance(value, str) and value and not re.search(r"(Z|[+-]\d\d:?\d\d)$", value.strip()):
            return value.strip() + "+00:00"
        return value

    @field_validator("valid_until")
    @classmethod
    def _window(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        start = info.data.get("valid_from")
        if value is not None and start is not None and value <= start:
            raise ValueError("The end of the validity window must come after its start.")
        return value


def snapshot(promo: PromoCode, amounts: dict[str, int], plan_ids: list[int]) -> dict[str, Any]:
    """A code as the audit row keeps it."""
    return {
        "code": promo.code,
        "kind": promo.kind.value,
        "percent": str(promo.percent) if promo.percent is not None else None,
        "amounts_minor": dict(sorted(amounts.items())),
        "extra_days": promo.extra_days,
        "max_uses": promo.max_uses,
        "once_per_user": promo.once_per_user,
        "valid_from": promo.valid_from.isoformat() if promo.valid_from else None,
        "valid_until": promo.valid_until.isoformat() if promo.valid_until else None,
        "plan_ids": sorted(plan_ids),
        "is_active": promo.is_active,
    }


async def amounts_of(session: AsyncSession, promo_id: int) -> dict[str, int]:
    rows = await session.execute(
        select(PromoCodeAmount.currency, PromoCodeAmount.amount_minor).where(PromoCodeAmount.promo_code_id == promo_id)
    )
    return {currency: minor for currency, minor in rows}


async def plans_of(session: AsyncSession, promo_id: int) -> list[int]:
    rows = await session.scalars(select(promo_code_plans.c.plan_id).where(promo_code_plans.c.promo_code_id == promo_id))
    return sorted(rows.all())


async def get_promo(session: AsyncSession, promo_id: int, *, for_update: bool = False) -> PromoCode:
    promo = await session.get(PromoCode, promo_id, with_for_update=for_update)
    if promo is None:
        raise NotFound("No such promo code.")
    return promo


async def _check(session: AsyncSession, draft: PromoDraft, promo: PromoCode | None) -> None:
    """The rules that need the database; raises FieldInvalid before anything is written."""
    taken = await session.scalar(select(PromoCode.id).where(PromoCode.code == draft.code))
    if taken is not None and (promo is None or taken != promo.id):
        raise FieldInvalid("code", f"The code {draft.code} is taken by another promo code.")
    if draft.plan_ids:
        found = set((await session.scalars(select(Plan.id).where(Plan.id.in_(draft.plan_ids)))).all())
        if missing := sorted(set(draft.plan_ids) - found):
            raise FieldInvalid("plan_ids", f"No such plan: {', '.join(map(str, missing))}.")
    if promo is not None and draft.max_uses is not None and draft.max_uses < promo.used_count:
        raise FieldInvalid("max_uses", f"It has been used {promo.used_count} times already: max uses cannot be lower.")


async def _write(session: AsyncSession, promo: PromoCode, draft: PromoDraft) -> tuple[dict[str, int], list[int]]:
    promo.code, promo.kind, promo.percent = draft.code, draft.kind, draft.percent
    promo.extra_days, promo.max_uses, promo.once_per_user = draft.extra_days, draft.max_uses, draft.once_per_user
    promo.valid_from, promo.valid_until, promo.is_active = draft.valid_from, draft.valid_until, draft.is_active
    await session.flush()
    amounts = {currency: Money.of(amount, currency).minor for currency, amount in draft.amounts.items()}
    await session.execute(delete(PromoCodeAmount).where(PromoCodeAmount.promo_code_id == promo.id))
    session.add_all(
        PromoCodeAmount(promo_code_id=promo.id, currency=currency, amount_minor=minor)
        for currency, minor in amounts.items()
    )
    await session.execute(delete(promo_code_plans).where(promo_code_plans.c.promo_code_id == promo.id))
    plan_ids = sorted(set(draft.plan_ids))
    if plan_ids:
        await session.execute(
            insert(promo_code_plans), [{"promo_code_id": promo.id, "plan_id": plan_id} for plan_id in plan_ids]
        )
    await session.flush()
    return amounts, plan_ids


async def create(session: AsyncSession, actor: Actor, draft: PromoDraft) -> PromoCode:
    await _check(session, draft, None)
    promo = PromoCode(code=draft.code, kind=draft.kind, used_count=0)
    session.add(promo)
    amounts, plan_ids = await _write(session, promo, draft)
    record_by(
        session,
        actor,
        action="promo.create",
        entity_type="promo_code",
        entity_id=promo.id,
        after=snapshot(promo, amounts, plan_ids),
    )
    return promo


async def update(session: AsyncSession, actor: Actor, promo_id: int, draft: PromoDraft) -> PromoCode:
    promo = await get_promo(session, promo_id, for_update=True)
    await _check(session, draft, promo)
    before = snapshot(promo, await amounts_of(session, promo.id), await plans_of(session, promo.id))
    amounts, plan_ids = await _write(session, promo, draft)
    record_by(
        session,
        actor,
        action="promo.update",
        entity_type="promo_code",
        entity_id=promo.id,
        before=before,
        after=snapshot(promo, amounts, plan_ids),
    )
    return promo


async def deactivate(session: AsyncSession, actor: Actor, promo_id: int) -> PromoCode:
    """Stop a code from being used (held checkouts still complete); a second call changes nothing."""
    promo = await get_promo(session, promo_id, for_update=True)
    if not promo.is_active:
        return promo
    amounts, plan_ids = await amounts_of(session, promo.id), await plans_of(session, promo.id)
    before = snapshot(promo, amounts, plan_ids)
    promo.is_active = False
    await session.flush()
    record_by(
        session,
        actor,
        action="promo.deactivate",
        entity_type="promo_code",
        entity_id=promo.id,
        before=before,
        after=snapshot(promo, amounts, plan_ids),
    )
    return promo


def draft_of(promo: PromoCode, amounts: dict[str, int], plan_ids: list[int]) -> dict[str, Any]:
    """A stored code as the editor's form values."""
    return {
        "code": promo.code,
        "kind": promo.kind.value,
        "percent": promo.percent,
        "amounts": {c: str(Money.from_minor(m, c).amount) for c, m in amounts.items()},
        "extra_days": promo.extra_days,
        "max_uses": promo.max_uses,
        "once_per_user": promo.once_per_user,
        "valid_from": promo.valid_from,
        "valid_until": promo.valid_until,
        "plan_ids": plan_ids,
        "is_active": promo.is_active,
    }
