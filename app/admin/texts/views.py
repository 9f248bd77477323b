"""What /admin/texts shows: a text's forms (one, or each plural form) for the editor, and its preview — as
Telegram would show it for the bot's texts (only Telegram's few tags, checked, are let through), as plain text
elsewhere."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from markupsafe import Markup, escape

from app.kit.field_errors import FieldInvalid
from app.texts import service
from app.texts.service import Text


@dataclass(frozen=True, slots=True)
class Form:
    name: str  # the form field: "body" or "body.<plural form>"
    label: str  # "" for a single text, else the plural form
    default: str
    value: str


def forms(text: Text, typed: dict[str, str] | None = None) -> list[Form]:
    current, default = text.current, text.default
    if isinstance(default, dict):
        values = current if isinstance(current, dict) else {}
        return [
            Form(f"body.{form}", form, str(default[form]), (typed or {}).get(f"body.{form}", str(values.get(form, ""))))
            for form in default
        ]
    return [Form("body", "", str(default or ""), (typed or {}).get("body", str(current or "")))]


def body_of(text: Text, data: dict[str, Any]) -> Any:
    """The submitted body in the shape the service takes (a dict of forms for plural texts)."""
    if isinstance(text.default, dict):
        return {form: str(data.get(f"body.{form}", "")) for form in text.default}
    return str(data.get("body", ""))


def preview(text: Text, body: Any) -> tuple[list[Markup], str | None]:
    """Each form rendered for the preview, and the error that stops it (then the forms are shown escaped)."""
    bodies = list(body.values()) if isinstance(body, dict) else [body]
    try:
        service.validate(text.key, text.language, body)
    except FieldInvalid as exc:
        return [Markup(escape(str(one))) for one in bodies], exc.message
    if text.sent_by_bot:
        # Validated Telegram HTML: b, i, u, s, code, pre, blockquote, spoilers and http(s)/tg links only.
        return [Markup(str(one).replace("\n", "<br>")) for one in bodies], None
    return [Markup(escape(str(one))) for one in bodies], None


def as_json(text: Text) -> dict[str, Any]:
    return {
        "key": text.key,
        "area": text.area,
        "language": text.language,
        "default": text.default,
        "override": text.override,
        "sent_by_bot": text.sent_by_bot,
    }
