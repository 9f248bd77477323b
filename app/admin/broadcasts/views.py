"""Shaping for the broadcasts pages: the form's values back into a service Draft (errors keyed by the form's
field names), and the preview of a body as staff see it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from markupsafe import Markup

from app.admin.auth.dependencies import StaffViewer
from app.broadcasts import service
from app.broadcasts.errors import BroadcastInvalid
from app.broadcasts.markup import MAX_VISIBLE_LENGTH, MarkupError, check_html, visible_text
from app.broadcasts.segments import SegmentKind
from app.kit.i18n import available_languages

SEGMENTS = [kind.value for kind in SegmentKind]


def actor(viewer: StaffViewer) -> service.Actor:
    """The broadcasts service's actor for the signed-in staff member (its audit rows name them)."""
    return service.Actor("staff", viewer.staff.id, viewer.ip)


def optional_int(form: Mapping[str, str], name: str) -> int | None:
    value = (form.get(name) or "").strip()
    if not value:
        return None
    if not value.isdigit():
        raise BroadcastInvalid("give a whole number", field=name)
    return int(value)


def local_datetime(form: Mapping[str, str], name: str, zone: ZoneInfo) -> datetime | None:
    """A `datetime-local` field (no offset: the shop's time zone, as staff think of times), or None if blank."""
    value = (form.get(name) or "").strip()
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BroadcastInvalid("give a date and time, e.g. 2030-05-01T10:00", field=name) from None
    return parsed.replace(tzinfo=zone) if parsed.tzinfo is None else parsed


def segment_fields(form: Mapping[str, str]) -> tuple[str, int | None, str | None]:
    return (
        (form.get("segment") or SegmentKind.ALL.value).strip(),
        optional_int(form, "plan_id"),
        (form.get("language") or "").strip() or None,
    )


def draft_from_form(form: Mapping[str, str], zone: ZoneInfo) -> service.Draft:
    """The new-broadcast form as the service's Draft; the service checks the rest and names the field at fault."""
    segment, plan_id, language = segment_fields(form)
    bodies = {lang: form.get(f"bodies.{lang}", "") for lang in available_languages() if form.get(f"bodies.{lang}")}
    button = None
    if url := (form.get("button.url") or "").strip():
        texts = {lang: form.get(f"button.text.{lang}", "") for lang in available_languages()}
        button = service.Button(url=url, text={lang: text for lang, text in texts.items() if text.strip()})
    elif any((form.get(f"button.text.{lang}") or "").strip() for lang in available_languages()):
        raise BroadcastInvalid("a button text needs the button's link (or web_app)", field="button.url")
    return service.Draft(
        title=form.get("title", ""),
        bodies=bodies,
        segment=segment,
        plan_id=plan_id,
        language=language,
        button=button,
        is_paid=form.get("is_paid") == "1",
        scheduled_at=local_datetime(form, "scheduled_at", zone),
    )


def body_previews(form: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Per language: the body as Telegram shows it (only after the markup check passed: the tags left are
    Telegram's handful, links limited to http(s)/tg, so it is safe to show as HTML), or the check's error."""
    previews: dict[str, dict[str, Any]] = {}
    for language in available_languages():
        body = form.get(f"bodies.{language}") or ""
        if not body.strip():
            continue
        try:
            check_html(body)
        except MarkupError as exc:
            previews[language] = {"error": str(exc), "html": None, "length": None}
            continue
        length = len(visible_text(body))
        error = None if length <= MAX_VISIBLE_LENGTH else f"{length} characters as shown: at most {MAX_VISIBLE_LENGTH}"
        html = Markup(body.replace("\n", "<br>"))  # checked by check_html just above
        previews[language] = {"error": error, "html": html, "length": length}
    return previews


def stored_preview(body: str) -> Markup:
    """A saved body (checked when it was created) shown as Telegram would."""
    return Markup(body.replace("\n", "<br>"))  # bodies are checked by check_html on creation
