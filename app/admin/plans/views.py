"""What the plans pages show: the table rows, the editor's field values (from a plan or from a refused form),
and the preview of the customers' card in each language."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from app.kit.formatting import money_text
from app.kit.i18n import Translator, available_languages
from app.kit.money import CURRENCY_EXPONENTS, Money
from app.models import Plan, TrafficStrategy
from app.payments.pricing import LANGUAGE_CURRENCY, preferred_first
from app.plans.service import BULLETS

GIB = 1024**3
# The editor offers a price field for each currency money knows, the usual ones first.
CURRENCIES = ("RUB", "USD", "EUR", "XTR", *(c for c in CURRENCY_EXPONENTS if c not in {"RUB", "USD", "EUR", "XTR"}))


@dataclass(frozen=True, slots=True)
class PlanRow:
    plan: Plan
    prices: list[Money]
    used: bool


def price_texts(prices: list[Money], language: str) -> str:
    return " · ".join(money_text(price, language) for price in prices) or "—"


def form_values(plan: Plan | None, prices: dict[str, int]) -> dict[str, str]:
    """The editor's fields filled from a plan (empty for a new one)."""
    if plan is None:
        return {"duration_days": "30", "discount_percent": "0", "traffic_strategy": TrafficStrategy.NO_RESET.value}
    values = {
        "code": plan.code,
        "duration_days": str(plan.duration_days),
        "discount_percent": str(plan.discount_percent.normalize()) if plan.discount_percent else "0",
        "traffic_limit_gb": gib_text(plan.traffic_limit_bytes),
        "traffic_strategy": TrafficStrategy(plan.traffic_strategy).value,
        "device_limit": str(plan.device_limit or ""),
        "panel_squads": ", ".join(plan.panel_squads or []),
    }
    bullets = (plan.features or {}).get(BULLETS) or {}
    for language in available_languages():
        values[f"name_{language}"] = plan.name.get(language, "")
        values[f"features_{language}"] = "\n".join(bullets.get(language) or [])
    for currency, minor in prices.items():
        values[f"price_{currency}"] = str(Money.from_minor(minor, currency).amount)
    return values


def gib_text(size: int | None) -> str:
    if not size:
        return ""
    return str((Decimal(size) / GIB).quantize(Decimal("0.001")).normalize())


def form_data(form: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The editor's fields as the domain's input (the API's shape), and errors of the form's own units."""
    errors: dict[str, str] = {}
    data: dict[str, Any] = {
        "code": form.get("code", ""),
        "name": {language: form.get(f"name_{language}", "") for language in available_languages()},
        "duration_days": form.get("duration_days", ""),
        "discount_percent": form.get("discount_percent", ""),
        "traffic_strategy": form.get("traffic_strategy", ""),
        "device_limit": form.get("device_limit", ""),
        "panel_squads": form.get("panel_squads", ""),
        "features": {language: form.get(f"features_{language}", "") for language in available_languages()},
        "prices": {currency: form.get(f"price_{currency}", "") for currency in CURRENCIES},
    }
    gib = form.get("traffic_limit_gb", "").strip().replace(",", ".")
    data["traffic_limit_bytes"] = None
    if gib:
        try:
            amount = Decimal(gib)
            if not amount.is_finite() or amount <= 0 or amount > 10**9:
                raise InvalidOperation
            data["traffic_limit_bytes"] = int(amount * GIB)
        except InvalidOperation:
            errors["traffic_limit_gb"] = "Give a number of GiB above zero, or leave it empty for unlimited."
    return data, errors


def form_field(domain_field: str) -> str:
    """The editor's field for a domain field name (prices.RUB → price_RUB, name.en → name_en)."""
    if domain_field == "traffic_limit_bytes":
        return "traffic_limit_gb"
    for prefix, field in (("prices.", "price_"), ("name.", "name_"), ("features.", "features_")):
        if domain_field.startswith(prefix):
            return field + domain_field.removeprefix(prefix)
    return domain_field


def previews(plan: Plan, prices: list[Money], devices_enforced: bool) -> list[dict[str, Any]]:
    """The card in each language, as checkout renders it for a customer of that language."""
    shown = []
    for language in available_languages():
        ordered = preferred_first(prices, [LANGUAGE_CURRENCY.get(language, "USD")])
        shown.append(
            {
                "language": language,
                "translate": Translator(language),
                "price": ordered[0] if ordered else None,
                "money": lambda value, language=language: money_text(value, language),
                "devices_enforced": devices_enforced,
            }
        )
    return shown
