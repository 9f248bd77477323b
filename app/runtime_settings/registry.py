"""The typed registry: every runtime setting with its type, bounds, env default and a parser that refuses bad
input with a message naming what is wrong. The admin form, the JSON API and the stored rows all go through
`Definition.parse`, so nothing unvalidated is ever stored."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.config import Settings
from app.kit.field_errors import FieldInvalid
from app.kit.money import CURRENCY_EXPONENTS

_USERNAME = re.compile(r"^@?[A-Za-z][A-Za-z0-9_]{3,31}$")
# Telegram chat ids: groups and channels are negative (-100…), people positive; 52 bits covers both.
_CHAT_ID_LIMIT = 2**52


@dataclass(frozen=True, slots=True)
class Definition:
    key: str
    kind: str  # int | bool | username | currency | days | milestones | chat | topic
    group: str  # the admin page's section heading (admin.settings.group.<group>)
    default: Callable[[Settings], Any]
    minimum: int = 0
    maximum: int = 0

    def parse(self, raw: Any) -> Any:
        """The typed value of `raw` (a form string or a JSON value); FieldInvalid(key, why) when unacceptable."""
        parser = _PARSERS[self.kind]
        return parser(self, raw)

    def stored(self, value: Any) -> Any:
        """JSON form of a parsed value (milestones' int keys become strings in JSON)."""
        if self.kind == "milestones":
            return [[count, days] for count, days in sorted(value.items())]
        if self.kind == "days":
            return list(value)
        return value

    def loaded(self, stored: Any) -> Any:
        """A stored value back, re-validated: a row written by an older build with other bounds falls back to
        the default rather than breaking every reader."""
        if self.kind == "milestones" and isinstance(stored, list):
            stored = ",".join(f"{count}:{days}" for count, days in stored)
        return self.parse(stored)

    def text(self, value: Any) -> str:
        """How the admin form shows a value."""
        if self.kind == "milestones":
            return ", ".join(f"{count}:{days}" for count, days in sorted(value.items()))
        if self.kind == "days":
            return ", ".join(str(day) for day in value)
        if value is None:
            return ""
        if isinstance(value, bool):
            return "1" if value else ""
        return str(value)


def _integer(definition: Definition, raw: Any, *, what: str = "a whole number") -> int:
    if isinstance(raw, bool):
        raise FieldInvalid(definition.key, f"Expected {what}, not true/false.")
    if isinstance(raw, int):
        number = raw
    else:
        text = str(raw if raw is not None else "").strip()
        if not re.fullmatch(r"-?\d{1,18}", text):
            raise FieldInvalid(definition.key, f"Expected {what}, got {text[:40]!r}.")
        number = int(text)
    if not definition.minimum <= number <= definition.maximum:
        raise FieldInvalid(definition.key, f"Must be between {definition.minimum} and {definition.maximum}.")
    return number


def _int(definition: Definition, raw: Any) -> int:
    return _integer(definition, raw)


def _bool(definition: Definition, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw if raw is not None else "").strip().lower()
    if text in ("1", "true", "on", "yes"):
        return True
    if text in ("", "0", "false", "off", "no"):
        return False
    raise FieldInvalid(definition.key, f"Expected true or false, got {text[:40]!r}.")


def _username(definition: Definition, raw: Any) -> str:
    text = str(raw if raw is not None else "").strip()
    if not _USERNAME.fullmatch(text):
        raise FieldInvalid(definition.key, "Expected a Telegram username such as @support (4–32 letters, digits, _).")
    return text if text.startswith("@") else f"@{text}"


def _currency(definition: Definition, raw: Any) -> str:
    text = str(raw if raw is not None else "").strip().upper()
    if text not in CURRENCY_EXPONENTS:
        raise FieldInvalid(definition.key, f"Expected one of {', '.join(sorted(CURRENCY_EXPONENTS))}.")
    return text


def _parts(raw: Any) -> list[str]:
    if isinstance(raw, list | tuple):
        return [str(part).strip() for part in raw]
    return [part.strip() for part in str(raw if raw is not None else "").split(",") if part.strip()]


def _days(definition: Definition, raw: Any) -> tuple[int, ...]:
    days: list[int] = []
    for part in _parts(raw):
        if not part.isdigit() or not definition.minimum <= int(part) <= definition.maximum:
            raise FieldInvalid(
                definition.key,
                f"{part[:20]!r} is not a day count between {definition.minimum} and {definition.maximum}.",
            )
        days.append(int(part))
    if not days:
        raise FieldInvalid(definition.key, "Give at least one day, e.g. 3, 2, 1.")
    if len(set(days)) != len(days):
        raise FieldInvalid(definition.key, "Each day may appear only once.")
    return tuple(sorted(days, reverse=True))


def _milestones(definition: Definition, raw: Any) -> dict[int, int]:
    if isinstance(raw, dict):
        raw = ",".join(f"{count}:{days}" for count, days in raw.items())
    milestones: dict[int, int] = {}
    for pair in _parts(raw):
        count, sep, days = (item.strip() for item in pair.partition(":"))
        if not sep or not count.isdigit() or not days.isdigit():
            raise FieldInvalid(definition.key, f'{pair[:20]!r} is not a "count:days" pair such as 3:30.')
        if not 1 <= int(count) <= 100_000 or not 1 <= int(days) <= definition.maximum:
            raise FieldInvalid(
                definition.key, f"{pair!r}: the count must be 1–100000 and the days 1–{definition.maximum}."
            )
        if int(count) in milestones:
            raise FieldInvalid(definition.key, f"The count {int(count)} is given twice.")
        milestones[int(count)] = int(days)
    return milestones


def _optional_id(definition: Definition, raw: Any) -> int | None:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    return _integer(definition, raw, what="a Telegram id (a whole number) or nothing")


_PARSERS: dict[str, Callable[[Definition, Any], Any]] = {
    "int": _int,
    "bool": _bool,
    "username": _username,
    "currency": _currency,
    "days": _days,
    "milestones": _milestones,
    "chat": _optional_id,
    "topic": _optional_id,
}

DEFINITIONS: tuple[Definition, ...] = (
    Definition("trial_days", "int", "customers", lambda s: s.trial_days, 0, 365),
    Definition("auto_renew_default", "bool", "customers", lambda s: True),
    Definition("reminder_days", "days", "customers", lambda s: (3, 2, 1), 1, 14),
    Definition("support_username", "username", "customers", lambda s: s.support_username),
    Definition("referral_bonus_days_referrer", "int", "referrals", lambda s: s.referral_bonus_days_referrer, 0, 365),
    Definition("referral_bonus_days_referred", "int", "referrals", lambda s: s.referral_bonus_days_referred, 0, 365),
    Definition("referral_milestones", "milestones", "referrals", lambda s: dict(s.referral_milestones), 0, 3650),
    Definition("checkout_ttl_minutes", "int", "payments", lambda s: s.checkout_ttl_minutes, 15, 1440),
    Definition("reporting_currency", "currency", "payments", lambda s: s.reporting_currency),
    Definition("rate_limit_per_ip_per_minute", "int", "limits", lambda s: s.rate_limit_per_ip_per_minute, 1, 100_000),
    Definition(
        "rate_limit_per_user_per_minute", "int", "limits", lambda s: s.rate_limit_per_user_per_minute, 1, 100_000
    ),
    Definition("staff_alert_chat_id", "chat", "alerts", lambda s: None, -_CHAT_ID_LIMIT, _CHAT_ID_LIMIT),
    Definition("staff_alert_topic_id", "topic", "alerts", lambda s: None, 1, 2**31 - 1),
)
BY_KEY: dict[str, Definition] = {definition.key: definition for definition in DEFINITIONS}
GROUPS: tuple[str, ...] = tuple(dict.fromkeys(definition.group for definition in DEFINITIONS))
