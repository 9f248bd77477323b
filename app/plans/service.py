"""What staff change about the plans on sale (SPEC §10.6, ADMIN.md "Plans and prices"): create, edit, reorder,
archive and unarchive, and delete a plan nobody ever bought. The admin's form and its JSON API both hand raw
values to `validate`, so both refuse the same input with the same message naming the field. Every change writes
its audit row (before and after) in the caller's transaction; nothing is committed here."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import delete, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import Actor, record_by
from app.kit.errors import Conflict, NotFound
from app.kit.field_errors import FieldInvalid
from app.kit.i18n import DEFAULT_LANGUAGE, available_languages
from app.kit.money import CURRENCY_EXPONENTS, Money, MoneyError
from app.models import Payment, Plan, PlanPrice, Server, Subscription, TrafficStrategy
from app.provisioning.service import DEVICE_LIMIT_PANELS

CODE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
MAX_NAME = 64
MAX_DAYS = 3650
MAX_DEVICES = 100
MAX_SQUADS = 20
MAX_SQUAD = 64
MAX_FEATURES = 12
MAX_FEATURE = 120
# The plan's feature lines per language live under this key of Plan.features; other keys (e.g. "protocols")
# belong to provisioning and are left as they are.
BULLETS = "bullets"
FIELDS = (
    "code",
    "name",
    "duration_days",
    "discount_percent",
    "traffic_limit_bytes",
    "traffic_strategy",
    "device_limit",
    "panel_squads",
    "features",
    "prices",
)


@dataclass(frozen=True, slots=True)
class PlanFields:
    """Validated values, in storage form (prices in minor units)."""

    values: dict[str, Any]

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def __contains__(self, name: object) -> bool:
        return name in self.values


# --- validation -----------------------------------------------------------------------------------------------


def storable(text: str) -> bool:
    """No NUL and no lone surrogate (JSON can carry one; no database column can store it)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _text(value: object) -> str:
    text = "" if value is None else str(value).strip()
    if not storable(text):
        raise ValueError("holds a character that cannot be stored")
    return text


def _whole(name: str, value: object, *, low: int, high: int, optional: bool = False) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if optional:
            return None
        raise FieldInvalid(name, "Required: give a whole number.")
    if isinstance(value, bool | float):
        raise FieldInvalid(name, "Give a whole number.")
    text = str(value).strip()
    if not re.fullmatch(r"-?\d{1,12}", text):
        raise FieldInvalid(name, "Give a whole number.")
    number = int(text)
    if not low <= number <= high:
        raise FieldInvalid(name, f"Must be from {low} to {high}.")
    return number


# Codes that are addresses of checkout pages beside /app/checkout/<plan code> (POST /app/checkout/currency).
RESERVED_CODES = frozenset({"currency"})


def _code(value: object) -> str:
    code = str(value or "").strip()
    if not CODE_PATTERN.fullmatch(code):
        raise FieldInvalid(
            "code", "1–32 characters: lower-case letters, digits, - and _, starting with a letter or digit."
        )
    if code in RESERVED_CODES:
        raise FieldInvalid("code", f"“{code}” is taken by a page of the checkout: choose another code.")
    return code


def _languages_map(name: str, value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FieldInvalid(name, f"Expected an object with a value per language ({', '.join(available_languages())}).")
    unknown = sorted(set(value) - set(available_languages()))
    if unknown:
        raise FieldInvalid(f"{name}.{unknown[0]}", f"Unknown language; expected {', '.join(available_languages())}.")
    return value


# A plan is named at least in the shop's default language and in English; a reader of another language without a
# name of their own sees the English one (Plan.title).
REQUIRED_NAME_LANGUAGES = (DEFAULT_LANGUAGE, "en")


def _name(value: object) -> dict[str, str]:
    names = _languages_map("name", value)
    result = {}
    for language in available_languages():
        try:
            text = _text(names.get(language))
        except ValueError as exc:
            raise FieldInvalid(f"name.{language}", f"The name {exc}.") from None
        if not text:
            if language not in REQUIRED_NAME_LANGUAGES:
                continue
            raise FieldInvalid(f"name.{language}", "Required: the plan's name in this language.")
        if len(text) > MAX_NAME:
            raise FieldInvalid(f"name.{language}", f"Longer than {MAX_NAME} characters.")
        result[language] = text
    return result


def _discount(value: object) -> Decimal:
    if value is None or str(value).strip() == "":
        return Decimal(0)
    if isinstance(value, float):
        raise FieldInvalid("discount_percent", 'Give the percentage as a string or whole number, e.g. "15".')
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise FieldInvalid("discount_percent", "Give a number, e.g. 15 or 12.5.") from None
    if not number.is_finite() or number.as_tuple().exponent < -2:  # type: ignore[operator]
        raise FieldInvalid("discount_percent", "At most two digits after the point.")
    if not Decimal(0) <= number < Decimal(100):
        raise FieldInvalid("discount_percent", "Must be at least 0 and below 100.")
    return number.quantize(Decimal("0.01"))


def _strategy(value: object) -> TrafficStrategy:
    try:
        return TrafficStrategy(str(value or TrafficStrategy.NO_RESET.value))
    except ValueError:
        choices = ", ".join(strategy.value for strategy in TrafficStrategy)
        raise FieldInvalid("traffic_strategy", f"Expected one of {choices}.") from None


def _squads(value: object) -> list[str] | None:
    if value is None or value == "":
        return None
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list):
        raise FieldInvalid("panel_squads", "Expected a list of squad uuids or names.")
    squads = []
    for item in items:
        if not isinstance(item, str):
            raise FieldInvalid("panel_squads", "Each squad is a uuid or a name (text).")
        squad = item.strip()
        if not storable(squad):
            raise FieldInvalid("panel_squads", "A squad holds a character that cannot be stored.")
        if not squad:
            continue
        if len(squad) > MAX_SQUAD or not re.fullmatch(r"[\w .:-]+", squad):
            raise FieldInvalid("panel_squads", f"Not a squad uuid or name: {squad[:MAX_SQUAD]!r}.")
        if squad not in squads:
            squads.append(squad)
    if len(squads) > MAX_SQUADS:
        raise FieldInvalid("panel_squads", f"At most {MAX_SQUADS} squads.")
    return squads or None


def _bullets(value: object) -> dict[str, list[str]]:
    if value is None:
        return {}
    features = _languages_map("features", value)
    result: dict[str, list[str]] = {}
    for language, lines in features.items():
        items = lines.splitlines() if isinstance(lines, str) else lines
        if not isinstance(items, list):
            raise FieldInvalid(f"features.{language}", "Expected a list of lines.")
        kept = []
        for line in items:
            try:
                text = _text(line)
            except ValueError as exc:
                raise FieldInvalid(f"features.{language}", f"A line {exc}.") from None
            if len(text) > MAX_FEATURE:
                raise FieldInvalid(f"features.{language}", f"A line is longer than {MAX_FEATURE} characters.")
            if text:
                kept.append(text)
        if len(kept) > MAX_FEATURES:
            raise FieldInvalid(f"features.{language}", f"At most {MAX_FEATURES} lines.")
        if kept:
            result[language] = kept
    return result


def _prices(value: object) -> dict[str, int]:
    """{"RUB": "199.00", "XTR": "150"} → minor units per currency; an empty amount leaves the currency out."""
    if not isinstance(value, dict):
        raise FieldInvalid("prices", 'Expected an object of currency → amount, e.g. {"RUB": "199.00"}.')
    prices: dict[str, int] = {}
    for raw_currency, raw_amount in value.items():
        currency = str(raw_currency).strip().upper()
        if currency not in CURRENCY_EXPONENTS:
            raise FieldInvalid(
                f"prices.{raw_currency}", f"Unknown currency; expected one of {', '.join(CURRENCY_EXPONENTS)}."
            )
        if raw_amount is None or str(raw_amount).strip() == "":
            continue
        try:
            money = Money.of(str(raw_amount).strip().replace(",", "."), currency)
        except MoneyError:
            places = CURRENCY_EXPONENTS[currency]
            shape = "a whole number" if places == 0 else f"a number with at most {places} digits after the point"
            raise FieldInvalid(f"prices.{currency}", f"Give {shape}.") from None
        if money.minor <= 0:
            raise FieldInvalid(f"prices.{currency}", "The price must be above zero.")
        if money.minor > 10**15:
            raise FieldInvalid(f"prices.{currency}", "The price is too large.")
        prices[currency] = money.minor
    if not prices:
        raise FieldInvalid("prices", "Give the plan a price in at least one currency.")
    return prices


async def device_limits_offered(session: AsyncSession) -> bool:
    """Whether a device limit can be sold at all: some enabled server's panel enforces one (Marzban cannot).
    Checkout then shows it to each customer only where their own server enforces it."""
    kinds = set((await session.scalars(select(Server.panel_kind).where(Server.is_enabled))).all())
    return bool(kinds & DEVICE_LIMIT_PANELS)


async def validate(session: AsyncSession, data: dict[str, Any], *, partial: bool = False) -> PlanFields:
    """The values in `data` checked and converted; with `partial`, only the fields given (an edit). Raises
    FieldInvalid naming the first bad field."""
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise FieldInvalid(unknown[0], f"Unknown field; expected {', '.join(FIELDS)}.")
    given = set(data) if partial else set(FIELDS)
    checks = {
        "code": lambda v: _code(v),
        "name": _name,
        "duration_days": lambda v: _whole("duration_days", v, low=1, high=MAX_DAYS),
        "discount_percent": _discount,
        "traffic_limit_bytes": lambda v: _whole("traffic_limit_bytes", v, low=1, high=10**18, optional=True),
        "traffic_strategy": _strategy,
        "device_limit": lambda v: _whole("device_limit", v, low=1, high=MAX_DEVICES, optional=True),
        "panel_squads": _squads,
        "features": _bullets,
        "prices": _prices,
    }
    values = {name: check(data.get(name)) for name, check in checks.items() if name in given}
    if values.get("device_limit") is not None and not await device_limits_offered(session):
        raise FieldInvalid(
            "device_limit",
            "No enabled server's panel enforces a device limit (Marzban cannot): leave it empty, or add a "
            "Remnawave server first.",
        )
    return PlanFields(values)


# --- reads ----------------------------------------------------------------------------------------------------


async def get_plan(session: AsyncSession, plan_id: int, *, for_update: bool = False) -> Plan:
    plan = await session.get(Plan, plan_id, with_for_update=for_update)
    if plan is None:
        raise NotFound("No such plan.", code="plan_not_found")
    return plan


async def all_plans(session: AsyncSession) -> list[Plan]:
    """Every plan in the customers' order; archived ones after, in the same order."""
    return list((await session.scalars(select(Plan).order_by(Plan.is_active.desc(), Plan.sort_order, Plan.id))).all())


async def prices_minor(session: AsyncSession, plan_ids: list[int]) -> dict[int, dict[str, int]]:
    rows = await session.scalars(select(PlanPrice).where(PlanPrice.plan_id.in_(plan_ids)).order_by(PlanPrice.id))
    prices: dict[int, dict[str, int]] = {plan_id: {} for plan_id in plan_ids}
    for row in rows:
        prices[row.plan_id][row.currency] = row.amount_minor
    return prices


async def is_used(session: AsyncSession, plan_id: int) -> bool:
    """Whether any subscription or payment names the plan (it is then archived, never deleted)."""
    used = await session.scalar(
        select(
            exists().where(Subscription.plan_id == plan_id) | exists().where(Payment.plan_id == plan_id)  # type: ignore[operator]
        )
    )
    return bool(used)


def bullets(plan: Plan, language: str) -> list[str]:
    """The plan's feature lines in `language` (the English ones where that language has none)."""
    lines = (plan.features or {}).get(BULLETS) or {}
    return list(lines.get(language) or lines.get("en") or [])


# --- writes ---------------------------------------------------------------------------------------------------


async def _state(session: AsyncSession, plan: Plan) -> dict[str, Any]:
    """What the audit row records of a plan (prices in minor units)."""
    prices = (await prices_minor(session, [plan.id]))[plan.id] if plan.id else {}
    return {
        "code": plan.code,
        "name": dict(plan.name),
        "duration_days": plan.duration_days,
        "discount_percent": str(plan.discount_percent),
        "traffic_limit_bytes": plan.traffic_limit_bytes,
        "traffic_strategy": TrafficStrategy(plan.traffic_strategy).value,
        "device_limit": plan.device_limit,
        "panel_squads": list(plan.panel_squads) if plan.panel_squads else None,
        "features": dict((plan.features or {}).get(BULLETS) or {}),
        "prices": prices,
        "is_active": plan.is_active,
        "sort_order": plan.sort_order,
    }


async def _code_taken(session: AsyncSession, code: str, plan_id: int | None = None) -> None:
    query = select(Plan.id).where(Plan.code == code)
    if plan_id is not None:
        query = query.where(Plan.id != plan_id)
    if await session.scalar(query) is not None:
        raise FieldInvalid("code", "Another plan has this code already.")


def _apply(plan: Plan, fields: PlanFields) -> None:
    for name in ("code", "name", "duration_days", "discount_percent", "traffic_limit_bytes", "device_limit"):
        if name in fields:
            setattr(plan, name, fields[name])
    if "traffic_strategy" in fields:
        plan.traffic_strategy = fields["traffic_strategy"]
    if "panel_squads" in fields:
        plan.panel_squads = fields["panel_squads"]
    if "features" in fields:
        # A new dict, so the JSON column sees the change.
        plan.features = {**(plan.features or {}), BULLETS: fields["features"]}


async def _set_prices(session: AsyncSession, plan: Plan, prices: dict[str, int]) -> None:
    """Make the plan's prices exactly `prices`, keeping the rows (and their order) of currencies that stay."""
    rows = {row.currency: row for row in await session.scalars(select(PlanPrice).where(PlanPrice.plan_id == plan.id))}
    for currency, row in rows.items():
        if currency not in prices:
            await session.delete(row)
        elif row.amount_minor != prices[currency]:
            row.amount_minor = prices[currency]
    session.add_all(
        PlanPrice(plan_id=plan.id, currency=currency, amount_minor=amount)
        for currency, amount in prices.items()
        if currency not in rows
    )
    await session.flush()


async def create(session: AsyncSession, actor: Actor, data: dict[str, Any]) -> Plan:
    """A new plan, on sale at once, listed after the others."""
    fields = await validate(session, data)
    await _code_taken(session, fields["code"])
    last = await session.scalar(select(func.max(Plan.sort_order)))
    plan = Plan(is_active=True, sort_order=(last or 0) + 1, features={})
    _apply(plan, fields)
    session.add(plan)
    await session.flush()
    await _set_prices(session, plan, fields["prices"])
    record_by(
        session, actor, action="plan.create", entity_type="plan", entity_id=plan.id, after=await _state(session, plan)
    )
    return plan


async def update(session: AsyncSession, actor: Actor, plan: Plan, data: dict[str, Any]) -> Plan:
    """Change the fields given; an edit that changes nothing writes no audit row. Existing subscriptions keep
    what they bought: a new price or duration applies to the next payment."""
    fields = await validate(session, data, partial=True)
    if "code" in fields:
        await _code_taken(session, fields["code"], plan.id)
    before = await _state(session, plan)
    _apply(plan, fields)
    if "prices" in fields:
        await _set_prices(session, plan, fields["prices"])
    await session.flush()
    after = await _state(session, plan)
    changed = [name for name in after if after[name] != before[name]]
    if changed:
        record_by(
            session,
            actor,
            action="plan.update",
            entity_type="plan",
            entity_id=plan.id,
            before={name: before[name] for name in changed},
            after={name: after[name] for name in changed},
        )
    return plan


async def set_active(session: AsyncSession, actor: Actor, plan: Plan, active: bool) -> Plan:
    """Archive (off sale: checkout no longer offers it, existing subscriptions keep it) or bring back."""
    if plan.is_active == active:
        state = "on sale" if active else "archived"
        raise Conflict(f"The plan is already {state}.", code="plan_unchanged")
    plan.is_active = active
    if active:
        last = await session.scalar(select(func.max(Plan.sort_order)).where(Plan.is_active, Plan.id != plan.id))
        plan.sort_order = (last or 0) + 1
    record_by(
        session,
        actor,
        action="plan.unarchive" if active else "plan.archive",
        entity_type="plan",
        entity_id=plan.id,
        before={"is_active": not active},
        after={"is_active": active},
    )
    return plan


async def remove(session: AsyncSession, actor: Actor, plan: Plan) -> None:
    """Delete a plan nobody ever subscribed to or paid for; one with history can only be archived."""
    if await is_used(session, plan.id):
        raise Conflict(
            "This plan has subscriptions or payments: archive it instead (its history must stay).", code="plan_in_use"
        )
    before = await _state(session, plan)
    await session.execute(delete(PlanPrice).where(PlanPrice.plan_id == plan.id))
    await session.delete(plan)
    record_by(session, actor, action="plan.delete", entity_type="plan", entity_id=plan.id, before=before)
    await session.flush()


async def reorder(session: AsyncSession, actor: Actor, order: object) -> list[Plan]:
    """Put the plans on sale in the order of `order` (their ids, each once, all of them)."""
    if not isinstance(order, list) or not all(isinstance(item, int) and not isinstance(item, bool) for item in order):
        raise FieldInvalid("order", "Expected the list of the plans' ids, in the new order.")
    plans = list((await session.scalars(select(Plan).where(Plan.is_active).with_for_update())).all())
    by_id = {plan.id: plan for plan in plans}
    if len(order) != len(set(order)) or set(order) != set(by_id):
        raise FieldInvalid("order", "Give every plan on sale exactly once (archived plans are not ordered).")
    before = [plan.id for plan in sorted(plans, key=lambda plan: (plan.sort_order, plan.id))]
    for position, plan_id in enumerate(order):
        by_id[plan_id].sort_order = position
    if before != order:
        record_by(
            session,
            actor,
            action="plan.reorder",
            entity_type="plan",
            entity_id=None,
            before={"order": before},
            after={"order": order},
        )
    return [by_id[plan_id] for plan_id in order]


async def move(session: AsyncSession, actor: Actor, plan: Plan, step: int) -> list[Plan]:
    """Move one plan on sale up (-1) or down (+1) among the others: the page's arrows."""
    if not plan.is_active:
        raise Conflict("An archived plan has no place in the order.", code="plan_archived")
    plans = list((await session.scalars(select(Plan).where(Plan.is_active).order_by(Plan.sort_order, Plan.id))).all())
    ids = [item.id for item in plans]
    index = ids.index(plan.id)
    target = min(max(index + step, 0), len(ids) - 1)
    ids.insert(target, ids.pop(index))
    return await reorder(session, actor, ids)
