"""The editable texts and the rules of an override: which catalog entries customers see (bot, notifications,
cabinet — never the admin's or staff alerts), and what an override must satisfy before it is stored:
not empty, the same placeholders as the default (a new one could never be filled), Telegram's HTML and
length limit for texts the bot sends, the same plural forms as the default. Every change is audited with
before and after, in the caller's transaction."""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import Actor, record_by
from app.broadcasts.markup import MAX_VISIBLE_LENGTH, MarkupError, check_html, visible_text
from app.kit.field_errors import FieldInvalid
from app.kit.i18n import LOCALES_DIR, available_languages, catalog
from app.models import MessageText
from app.texts.overrides import entry_of

MAX_BODY = 8000
# Catalog files of the admin, and keys of messages to staff, are not customer-facing.
_STAFF_AREAS = ("admin",)
_STAFF_PREFIXES = ("admin", "staff.")


@dataclass(frozen=True, slots=True)
class Text:
    key: str
    area: str  # the catalog file: bot, notifications, cabinet…
    language: str
    default: Any  # str, or a dict of plural forms
    override: Any  # the same, or None

    @property
    def sent_by_bot(self) -> bool:
        return sends_by_bot(self.key)

    @property
    def current(self) -> Any:
        return self.override if self.override is not None else self.default


def sends_by_bot(key: str) -> bool:
    """Texts the bot sends as Telegram HTML: its answers and the notifications."""
    return key.startswith(("bot.", "notify.", "broadcast."))


@lru_cache(maxsize=1)
def areas() -> dict[str, str]:
    """key → area (catalog file name) of every customer-facing entry."""
    found: dict[str, str] = {}
    for language in available_languages():
        for path in sorted((LOCALES_DIR / language).glob("*.json")):
            if path.stem.startswith(_STAFF_AREAS):
                continue
            for key in json.loads(path.read_text(encoding="utf-8")):
                if not key.startswith(_STAFF_PREFIXES):
                    found.setdefault(key, path.stem)
    return found


def check_language(language: str) -> str:
    if language not in available_languages():
        raise FieldInvalid("language", f"Expected one of {', '.join(available_languages())}.")
    return language


def check_key(key: str) -> str:
    if key not in areas():
        raise FieldInvalid("key", f"No customer-facing text is called {key[:128]!r}.")
    return key


def default_of(key: str, language: str) -> Any:
    return catalog(language).get(key, catalog(available_languages()[0]).get(key))


async def overrides_of(session: AsyncSession, language: str) -> dict[str, MessageText]:
    rows = await session.scalars(select(MessageText).where(MessageText.language == language))
    return {row.key: row for row in rows}


async def listing(session: AsyncSession, language: str, *, area: str | None = None, search: str = "") -> list[Text]:
    check_language(language)
    stored = await overrides_of(session, language)
    needle = search.strip().casefold()
    found = []
    for key, key_area in sorted(areas().items()):
        if area and key_area != area:
            continue
        default = default_of(key, language)
        override = entry_of(stored[key].body) if key in stored else None
        if needle and needle not in key.casefold() and needle not in json.dumps(default, ensure_ascii=False).casefold():
            continue
        found.append(Text(key, key_area, language, default, override))
    return found


async def get(session: AsyncSession, key: str, language: str) -> Text:
    check_key(key)
    check_language(language)
    row = (await overrides_of(session, language)).get(key)
    return Text(key, areas()[key], language, default_of(key, language), entry_of(row.body) if row else None)


def _placeholders(text: str, field: str) -> set[str]:
    try:
        return {name.split(".")[0].split("[")[0] for _, name, _, _ in string.Formatter().parse(text) if name}
    except ValueError as exc:
        raise FieldInvalid(field, f"Unbalanced braces: {exc}. Write {{{{ and }}}} for literal braces.") from exc


def _check_one(key: str, body: str, default: str, field: str) -> str:
    text = body.replace("\r\n", "\n")
    if not text.strip():
        raise FieldInvalid(field, "The text is empty; use “reset to default” to go back to the catalog's text.")
    if len(text) > MAX_BODY:
        raise FieldInvalid(field, f"The text is longer than {MAX_BODY} characters.")
    if "\x00" in text:
        raise FieldInvalid(field, "The text holds a character that cannot be stored.")
    allowed = _placeholders(default, field)
    if unknown := sorted(_placeholders(text, field) - allowed):
        may = ", ".join(f"{{{name}}}" for name in sorted(allowed)) or "none"
        raise FieldInvalid(field, f"Unknown placeholder {{{unknown[0]}}}: this text may use {may}.")
    if sends_by_bot(key):
        try:
            check_html(text)
        except MarkupError as exc:
            raise FieldInvalid(field, f"Not valid Telegram HTML: {exc}.") from exc
        if len(visible_text(text)) > MAX_VISIBLE_LENGTH:
            raise FieldInvalid(field, f"Telegram shows at most {MAX_VISIBLE_LENGTH} characters.")
    return text


def validate(key: str, language: str, body: Any) -> str:
    """The body to store (plural texts as a JSON object of forms); FieldInvalid naming the field otherwise:
    `body`, or `body.<form>` for a plural form."""
    default = default_of(key, language)
    if isinstance(default, dict):
        if not isinstance(body, dict):
            raise FieldInvalid("body", f"This text has plural forms: give each of {', '.join(default)}.")
        if missing := [form for form in default if not str(body.get(form) or "").strip()]:
            raise FieldInvalid(f"body.{missing[0]}", f"The form “{missing[0]}” is empty.")
        if extra := sorted(set(body) - set(default)):
            raise FieldInvalid(f"body.{extra[0]}", f"This language has no plural form “{extra[0]}”.")
        forms = {form: _check_one(key, str(body[form]), str(default[form]), f"body.{form}") for form in default}
        return json.dumps(forms, ensure_ascii=False)
    if not isinstance(body, str):
        raise FieldInvalid("body", "Expected the text as a string.")
    return _check_one(key, body, str(default or ""), "body")


def _audit_value(row: MessageText | None) -> dict[str, Any] | None:
    return {"body": row.body} if row is not None else None


async def save(session: AsyncSession, actor: Actor, key: str, language: str, body: Any) -> Text:
    """Store an override (validated first: nothing is written when it is refused)."""
    check_key(key)
    check_language(language)
    stored = validate(key, language, body)
    row = (await overrides_of(session, language)).get(key)
    before = _audit_value(row)
    if row is None:
        row = MessageText(key=key, language=language, body=stored)
        session.add(row)
    else:
        row.body = stored
    row.updated_by = actor.id if actor.type == "staff" and isinstance(actor.id, int) else None
    record_by(
        session,
        actor,
        action="text.update",
        entity_type="message_text",
        entity_id=f"{language}:{key}",
        before=before,
        after={"body": stored},
    )
    await session.flush()
    return await get(session, key, language)


async def reset(session: AsyncSession, actor: Actor, key: str, language: str) -> Text:
    """Back to the catalog's text (removing the override); nothing to do when there is none."""
    check_key(key)
    check_language(language)
    row = (await overrides_of(session, language)).get(key)
    if row is not None:
        record_by(
            session,
            actor,
            action="text.reset",
            entity_type="message_text",
            entity_id=f"{language}:{key}",
            before=_audit_value(row),
            after=None,
        )
        await session.delete(row)
        await session.flush()
    return await get(session, key, language)
