"""What a notification says: the staff-edited text for its key and the user's language when there is one
(`message_texts`), else the catalog's (app/locales/*/notifications.json); values from the queued data, escaped
for Telegram's HTML and formatted for the reader (dates in their zone, amounts in their currency style)."""

from __future__ import annotations

import contextlib
import html
import json
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.kit.clock import parse_utc
from app.kit.formatting import format_date, money_text, zone_of
from app.kit.i18n import DEFAULT_LANGUAGE, fill, plural_form, translate
from app.kit.money import Money
from app.models import MessageText, User
from app.telegram.buttons import keyboard, page_button

# The button under each kind of message: (label key, page).
BUTTONS = {
    "payment_succeeded": ("notify.button.config", "/app/connect"),
    "payment_failed": ("notify.button.renew", "/app/checkout"),
    "payment_refunded": ("notify.button.open", "/app"),
    "payment_partially_refunded": ("notify.button.open", "/app"),
    "referral_bonus": ("notify.button.referral", "/app/referrals"),
    "expiry_reminder": ("notify.button.renew", "/app/checkout"),
    "trial_ending": ("notify.button.choose_plan", "/app/checkout"),
    "renewal_failed": ("notify.button.renew", "/app/checkout"),
    "subscription_ended": ("notify.button.renew", "/app/checkout"),
    "vpn_problem": ("notify.button.config", "/app/connect"),
}
DATE_FIELDS = ("ends_at", "retry_at", "since", "restored_at", "paid_at")


@dataclass(frozen=True)
class Rendered:
    text: str
    reply_markup: dict[str, Any] | None


def text_key(kind: str, data: dict[str, Any]) -> str:
    """The catalog key: some kinds read differently by their data (a renewal, a final failure, a trial)."""
    if kind == "payment_succeeded" and data.get("renewal"):
        return "notify.payment_succeeded_renewal"
    if kind == "referral_bonus" and data.get("applied") is False:
        return "notify.referral_bonus_pending"
    if kind == "expiry_reminder" and data.get("auto_renew"):
        return "notify.expiry_reminder_auto"
    if kind == "renewal_failed" and not data.get("retry_at"):
        return "notify.renewal_failed_final"
    if kind == "subscription_ended" and data.get("reason") == "trial":
        return "notify.subscription_ended_trial"
    return f"notify.{kind}"


def _params(kind: str, data: dict[str, Any], language: str, zone: tzinfo) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name, value in data.items():
        if name in DATE_FIELDS and isinstance(value, str):
            params[name] = format_date(parse_utc(value), zone, language, with_time=name != "ends_at")
        elif isinstance(value, str):
            params[name] = html.escape(value)
        elif value is not None and not isinstance(value, dict | list):
            params[name] = value
    if "total_minor" in data and "currency" in data:
        params["total"] = money_text(Money.from_minor(data["total_minor"], data["currency"]), language)
    if "days" in data:
        params["count"] = data["days"]
    params["reason"] = html.escape(str(data.get("reason") or translate(language, "notify.reason_unknown")))
    params.setdefault("plan_name", "")
    return params


async def _override(session: AsyncSession, key: str, language: str) -> str | dict[str, Any] | None:
    """A staff-edited text; plural texts are stored as JSON objects of forms."""
    rows = dict(
        (
            await session.execute(
                select(MessageText.language, MessageText.body).where(
                    MessageText.key == key, MessageText.language.in_({language, DEFAULT_LANGUAGE})
                )
            )
        ).all()
    )
    body = rows.get(language) or rows.get(DEFAULT_LANGUAGE)
    if body and body.lstrip().startswith("{"):
        with contextlib.suppress(ValueError):
            forms = json.loads(body)
            if isinstance(forms, dict):
                return forms
    return body


def _fill(template: str | dict[str, Any], language: str, params: dict[str, Any]) -> str:
    if isinstance(template, dict):
        form = plural_form(language, int(params.get("count", 0)))
        template = template.get(form) or template.get("other") or template.get("many") or ""
    try:
        return fill(str(template), params)
    except (KeyError, IndexError, ValueError):
        # A staff text naming an unknown placeholder still goes out rather than blocking the message.
        return str(template)


async def render(session: AsyncSession, user: User, kind: str, data: dict[str, Any], settings: Settings) -> Rendered:
    language = user.language
    key = text_key(kind, data)
    params = _params(kind, data, language, zone_of(user.timezone, settings.zone))
    override = await _override(session, key, language)
    text = _fill(override, language, params) if override is not None else translate(language, key, **params)
    button = BUTTONS.get(kind)
    markup = keyboard([page_button(settings, translate(language, button[0]), button[1])]) if button else None
    return Rendered(text, markup)
