"""What the promo pages show of a code: its rule in words, and money per currency in the viewer's language."""

from __future__ import annotations

from collections.abc import Mapping

from app.admin.payments.views import HELPERS as PAYMENT_HELPERS
from app.kit.formatting import minor_text
from app.models import PromoCode, PromoKind


def amounts_text(amounts: Mapping[str, int], language: str) -> str:
    """ "1,500 ₽ · $12.00", or "—"."""
    parts = [minor_text(minor, currency, language) for currency, minor in sorted(amounts.items())]
    return " · ".join(parts) or "—"


def rule_text(promo: PromoCode) -> str:
    if promo.kind == PromoKind.PERCENT:
        return f"−{promo.percent.normalize():f} %" if promo.percent is not None else "—"
    if promo.kind == PromoKind.DAYS:
        return f"+{promo.extra_days} d"
    return "fixed"


def uses_text(promo: PromoCode) -> str:
    return f"{promo.used_count} / {promo.max_uses}" if promo.max_uses is not None else f"{promo.used_count} / ∞"


HELPERS = {**PAYMENT_HELPERS, "amounts_text": amounts_text, "rule_text": rule_text, "uses_text": uses_text}
