"""Shaping for the experiments pages: the form's variant rows into the service's drafts (a price typed as
"RUB 149.00, USD 1.99", parsed exactly), and results as the page shows them."""

from __future__ import annotations

from collections.abc import Mapping

from app.experiments import service
from app.kit.field_errors import FieldInvalid
from app.kit.i18n import available_languages
from app.kit.money import Money, MoneyError

VARIANT_ROWS = 4  # rows on the form; a row without a key is left out


def parse_prices(text: str, field: str) -> dict[str, int]:
    """ "RUB 149.00, USD 1.99" → {"RUB": 14900, "USD": 199}; exact (Money), never through a float."""
    prices: dict[str, int] = {}
    for part in (piece.strip() for piece in text.replace(";", ",").split(",")):
        if not part:
            continue
        currency, _, amount = part.partition(" ")
        try:
            money = Money.of(amount.strip(), currency.strip())
        except MoneyError as exc:
            raise FieldInvalid(field, f"{part!r}: {exc} (write e.g. RUB 149.00, USD 1.99)") from None
        if currency.upper() in prices:
            raise FieldInvalid(field, f"{currency.upper()} is given twice")
        prices[money.currency] = money.minor
    return prices


def _weight(form: Mapping[str, str], field: str) -> int:
    value = (form.get(field) or "").strip()
    if not value.isdigit():
        raise FieldInvalid(field, "give a whole number")
    return int(value)


def draft_from_form(form: Mapping[str, str]) -> service.ExperimentDraft:
    variants = []
    for row in range(1, VARIANT_ROWS + 1):
        key = (form.get(f"v{row}.key") or "").strip()
        if not key:
            continue
        texts = {lang: form.get(f"v{row}.text.{lang}", "") for lang in available_languages()}
        variants.append(
            service.VariantDraft(
                key=key,
                weight=_weight(form, f"v{row}.weight"),
                prices=parse_prices(form.get(f"v{row}.prices", ""), f"v{row}.prices"),
                texts={lang: text for lang, text in texts.items() if text.strip()},
            )
        )
    days = (form.get("conversion_days") or "").strip()
    if not days.isdigit():
        raise FieldInvalid("conversion_days", "give a whole number of days")
    return service.ExperimentDraft(
        key=form.get("key", ""),
        name=form.get("name", ""),
        kind=form.get("kind", ""),
        target=form.get("target", ""),
        variants=variants,
        conversion_days=int(days),
    )
