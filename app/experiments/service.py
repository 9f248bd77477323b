"""Experiments for staff (create, start, stop: validated, audited in the caller's transaction) and for the
customer's side (the price checkout shows and charges; texts: app/experiments/texts.py). No HTTP: the admin calls
these.

An experiment changes one thing: a plan's price (`kind="price"`, target = the plan's code; a variant's params
`{"prices": {"RUB": 14900}}` in minor units, a currency it leaves out keeps the plan's price) or one text
(`kind="text"`, target = the text's key; params `{"text": {"ru": …, "en": …}}`, a language left out keeps the
normal text). The first variant is the control; it usually changes nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import Actor, record_by
from app.experiments.assignment import expose, variant_params
from app.kit.clock import utcnow
from app.kit.errors import Conflict, NotFound
from app.kit.field_errors import FieldInvalid
from app.kit.i18n import available_languages
from app.models import Experiment, ExperimentAssignment, ExperimentKind, Plan, PlanPrice, User

KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
VARIANT_KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
TEXT_KEY = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)*$")
MAX_VARIANTS = 10
MAX_WEIGHT = 1000
MAX_TEXT = 4096
MAX_CONVERSION_DAYS = 365


class ExperimentNotFound(NotFound):
    """No such experiment."""

    code = "experiment_not_found"


class ExperimentTransitionRefused(Conflict):
    """The experiment is not in a state that allows this."""

    code = "experiment_transition_refused"


@dataclass
class VariantDraft:
    key: str
    weight: int
    prices: dict[str, int] = field(default_factory=dict)  # price experiments: currency -> minor units
    texts: dict[str, str] = field(default_factory=dict)  # text experiments: language -> text


@dataclass
class ExperimentDraft:
    key: str
    name: str
    kind: str
    target: str
    variants: list[VariantDraft]
    conversion_days: int = 14


def state(experiment: Experiment) -> str:
    """draft, running or stopped (what the admin shows and the transitions check)."""
    if experiment.ended_at is not None:
        return "stopped"
    return "running" if experiment.is_active else "draft"


# --- staff: create, start, stop ---------------------------------------------------------------------------


async def create(session: AsyncSession, draft: ExperimentDraft, actor: Actor) -> Experiment:
    """A new draft experiment after checking every field; FieldInvalid names the first bad one."""
    key = draft.key.strip()
    if not KEY.match(key):
        raise FieldInvalid(
            "key", "1–64 characters: lowercase letters, digits, '-' and '_', starting with one of the first two."
        )
    if await session.scalar(select(func.count()).select_from(Experiment).where(Experiment.key == key)):
        raise FieldInvalid("key", f"an experiment with the key {key!r} already exists")
    name = draft.name.strip()
    if not 1 <= len(name) <= 255:
        raise FieldInvalid("name", "the name must be 1–255 characters")
    try:
        kind = ExperimentKind(draft.kind)
    except ValueError:
        raise FieldInvalid("kind", "expected price or text") from None
    if not 1 <= draft.conversion_days <= MAX_CONVERSION_DAYS:
        raise FieldInvalid("conversion_days", f"the conversion window must be 1–{MAX_CONVERSION_DAYS} days")
    target = draft.target.strip()
    currencies: set[str] = set()
    if kind is ExperimentKind.PRICE:
        plan = await session.scalar(select(Plan).where(Plan.code == target))
        if plan is None:
            raise FieldInvalid("target", f"no plan with the code {target!r}")
        currencies = set((await session.scalars(select(PlanPrice.currency).where(PlanPrice.plan_id == plan.id))).all())
    elif not (1 <= len(target) <= 128 and TEXT_KEY.match(target)):
        raise FieldInvalid("target", "a text key such as checkout.title (lowercase, digits, '_' and '.')")
    variants = _checked_variants(kind, draft.variants, currencies)
    experiment = Experiment(
        key=key,
        name=name,
        kind=kind,
        target=target,
        variants=variants,
        conversion_days=draft.conversion_days,
        is_active=False,
    )
    session.add(experiment)
    await session.flush()
    _audit(session, actor, "experiment.created", experiment, before=None)
    return experiment


def _checked_variants(kind: ExperimentKind, drafts: list[VariantDraft], currencies: set[str]) -> list[dict[str, Any]]:
    if not 2 <= len(drafts) <= MAX_VARIANTS:
        raise FieldInvalid("variants", f"give 2–{MAX_VARIANTS} variants (the first is the control)")
    seen: set[str] = set()
    checked: list[dict[str, Any]] = []
    for number, variant in enumerate(drafts, start=1):
        where = f"variant {number}"
        key = variant.key.strip()
        if not VARIANT_KEY.match(key):
            raise FieldInvalid("variants", f"{where}: the key must be 1–32 lowercase letters, digits, '-' or '_'")
        if key in seen:
            raise FieldInvalid("variants", f"{where}: the key {key!r} is used twice")
        seen.add(key)
        if not 1 <= variant.weight <= MAX_WEIGHT:
            raise FieldInvalid("variants", f"{where}: the weight must be a whole number 1–{MAX_WEIGHT}")
        params: dict[str, Any]
        if kind is ExperimentKind.PRICE:
            for currency, minor in variant.prices.items():
                if currency not in currencies:
                    offered = ", ".join(sorted(currencies)) or "none"
                    raise FieldInvalid("variants", f"{where}: the plan has no price in {currency!r} ({offered})")
                if not 0 < minor <= 10**12:
                    raise FieldInvalid("variants", f"{where}: the {currency} price must be above zero")
            params = {"prices": dict(sorted(variant.prices.items()))}
        else:
            known = available_languages()
            for language, text in variant.texts.items():
                if language not in known:
                    raise FieldInvalid("variants", f"{where}: no such language {language!r}")
                if len(text) > MAX_TEXT:
                    raise FieldInvalid("variants", f"{where}: the {language} text is over {MAX_TEXT} characters")
            params = {"text": {lang: text for lang, text in sorted(variant.texts.items()) if text.strip()}}
        checked.append({"key": key, "weight": variant.weight, "params": params})
    return checked


async def get(session: AsyncSession, experiment_id: int, *, lock: bool = False) -> Experiment:
    query = select(Experiment).where(Experiment.id == experiment_id)
    if lock:
        query = query.with_for_update()
    experiment = await session.scalar(query)
    if experiment is None:
        raise ExperimentNotFound(f"no experiment #{experiment_id}")
    return experiment


async def list_experiments(session: AsyncSession, *, limit: int = 100) -> list[Experiment]:
    return list((await session.scalars(select(Experiment).order_by(Experiment.id.desc()).limit(limit))).all())


async def start(session: AsyncSession, experiment_id: int, actor: Actor) -> Experiment:
    """A draft starts: customers are assigned from their next exposure on. One running experiment per target, so
    a customer never sees two prices for one plan."""
    experiment = await get(session, experiment_id, lock=True)
    if state(experiment) != "draft":
        raise ExperimentTransitionRefused(f"experiment #{experiment.id} is {state(experiment)}: only a draft can start")
    clash = await session.scalar(
        select(Experiment.key).where(
            Experiment.kind == experiment.kind, Experiment.target == experiment.target, Experiment.is_active
        )
    )
    if clash is not None:
        raise ExperimentTransitionRefused(f"experiment {clash!r} is already running on {experiment.target}")
    before = _summary(experiment)
    experiment.is_active = True
    experiment.started_at = utcnow()
    _audit(session, actor, "experiment.started", experiment, before)
    return experiment


async def stop(session: AsyncSession, experiment_id: int, actor: Actor) -> Experiment:
    """Everyone gets the normal price or text again; the assignments stay for the results."""
    experiment = await get(session, experiment_id, lock=True)
    if state(experiment) != "running":
        raise ExperimentTransitionRefused(
            f"experiment #{experiment.id} is {state(experiment)}: only a running one can stop"
        )
    before = _summary(experiment)
    experiment.is_active = False
    experiment.ended_at = utcnow()
    _audit(session, actor, "experiment.stopped", experiment, before)
    return experiment


def _summary(experiment: Experiment) -> dict[str, Any]:
    return {
        "key": experiment.key,
        "name": experiment.name,
        "kind": experiment.kind.value,
        "target": experiment.target,
        "variants": experiment.variants,
        "conversion_days": experiment.conversion_days,
        "state": state(experiment),
    }


def _audit(
    session: AsyncSession, actor: Actor, action: str, experiment: Experiment, before: dict[str, Any] | None
) -> None:
    record_by(
        session,
        actor,
        action=action,
        entity_type="experiment",
        entity_id=experiment.id,
        before=before,
        after=_summary(experiment),
    )


# --- customers: what they see -----------------------------------------------------------------------------


async def _running(session: AsyncSession, kind: ExperimentKind, target: str) -> Experiment | None:
    return await session.scalar(
        select(Experiment).where(Experiment.kind == kind, Experiment.target == target, Experiment.is_active)
    )


async def price_for(session: AsyncSession, user: User, plan: Plan, currency: str) -> int | None:
    """The customer's price of `plan` in `currency` in minor units, or None for the plan's own. Exposes the
    customer (records their variant) when an experiment runs on the plan — the same call for the price shown and
    the price charged, so the two cannot differ."""
    experiment = await _running(session, ExperimentKind.PRICE, plan.code)
    if experiment is None:
        return None
    variant = await expose(session, experiment, user.id)
    price = (variant_params(experiment, variant).get("prices") or {}).get(currency)
    return int(price) if price is not None else None


async def renewal_price_for(session: AsyncSession, user: User, plan: Plan, currency: str) -> int | None:
    """The price of an automatic renewal: the variant the customer was shown (and paid) while the experiment on
    the plan still runs, else None (the plan's own). Never exposes anyone: a charge nobody saw is no exposure,
    and a customer is never charged a variant price they were not shown."""
    experiment = await _running(session, ExperimentKind.PRICE, plan.code)
    if experiment is None:
        return None
    variant = await session.scalar(
        select(ExperimentAssignment.variant).where(
            ExperimentAssignment.experiment_id == experiment.id, ExperimentAssignment.user_id == user.id
        )
    )
    price = (variant_params(experiment, variant).get("prices") or {}).get(currency) if variant else None
    return int(price) if price is not None else None
