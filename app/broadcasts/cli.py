"""`vpnshop broadcast …`: the broadcasts service from a shell (the admin pages call the same service).

Every refusal (bad input, a state that does not allow the action) is one line on stderr and exit code 2, with
nothing changed: each command is one transaction, rolled back on error.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from sqlalchemy.ext.asyncio import AsyncSession

from app.broadcasts import service
from app.broadcasts.segments import Segment, SegmentKind
from app.config import ConfigError, Settings, load_settings
from app.db import standalone_transaction
from app.kit.clock import ensure_utc
from app.kit.errors import AppError
from app.kit.i18n import available_languages

T = TypeVar("T")
CLI = service.Actor("cli")


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        _fail(str(exc))


def _in_transaction(work: Callable[[AsyncSession, Settings], Awaitable[T]], settings: Settings | None = None) -> T:
    """Run `work` in one transaction of its own; a refusal rolls it back and ends the command with exit code 2."""
    settings = settings or _settings()

    async def main() -> T:
        async with standalone_transaction(settings) as session:
            return await work(session, settings)

    try:
        return asyncio.run(main())
    except AppError as exc:
        _fail(exc.message)


def _parse_time(value: str | None, settings: Settings) -> datetime | None:
    """ISO 8601; without an offset it is read in TIMEZONE (the shop's zone, as staff think of times)."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        _fail(f"--at {value!r} is not an ISO 8601 time (e.g. 2030-05-01T10:00 or 2030-05-01T07:00+00:00)")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=settings.zone)
    return ensure_utc(parsed)


def _language_pairs(values: tuple[str, ...], option: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        language, separator, rest = value.partition("=")
        if not separator or not rest:
            _fail(f"{option} expects LANG=VALUE, got {value!r}")
        pairs[language.strip()] = rest
    return pairs


@click.group()
def broadcast() -> None:
    """News and promotions to a segment of users, at Telegram's limits."""


@broadcast.command("create")
@click.option("--title", required=True, help="For staff only; recipients do not see it.")
@click.option("--text-ru", help="The Russian text (Telegram HTML).")
@click.option("--text-en", help="The English text (Telegram HTML).")
@click.option("--text-file", "text_files", multiple=True, metavar="LANG=PATH", help="A text from a file; repeatable.")
@click.option(
    "--segment",
    type=click.Choice([kind.value for kind in SegmentKind]),
    default=SegmentKind.ALL.value,
    show_default=True,
    help="Who gets it.",
)
@click.option("--plan", "plan_id", type=int, help="The plan, for --segment plan.")
@click.option("--language", help="Only users with this language (with any segment).")
@click.option(
    "--button-text",
    "button_texts",
    multiple=True,
    metavar="[LANG=]TEXT",
    help="The button's text, for every language or LANG=TEXT for one; repeatable.",
)
@click.option("--button-url", help="An http(s) link, or web_app to open the Mini App.")
@click.option("--paid", is_flag=True, help="Paid broadcast: up to 1000 messages/s for 0.1 Star each.")
@click.option("--at", "at", help="Start time (ISO 8601; without an offset, in TIMEZONE); set by `start`.")
def create_command(
    title: str,
    text_ru: str | None,
    text_en: str | None,
    text_files: tuple[str, ...],
    segment: str,
    plan_id: int | None,
    language: str | None,
    button_texts: tuple[str, ...],
    button_url: str | None,
    paid: bool,
    at: str | None,
) -> None:
    """Create a draft broadcast (start it with `start ID`)."""
    bodies = {lang: text for lang, text in (("ru", text_ru), ("en", text_en)) if text is not None}
    for lang, path in _language_pairs(text_files, "--text-file").items():
        try:
            bodies[lang] = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            _fail(f"--text-file {lang}={path}: {exc}")
    button = _button(button_texts, button_url)
    settings = _settings()
    scheduled_at = _parse_time(at, settings)

    async def work(session: AsyncSession, settings: Settings) -> str:
        draft = service.Draft(
            title=title,
            bodies=bodies,
            segment=segment,
            plan_id=plan_id,
            language=language,
            button=button,
            is_paid=paid,
            scheduled_at=scheduled_at,
        )
        created = await service.create(session, settings, draft, CLI)
        preview = await service.preview(session, settings, created.id)
        return f"broadcast #{created.id} created (draft): {preview.recipients} recipients now"

    click.echo(_in_transaction(work, settings))


def _button(texts: tuple[str, ...], url: str | None) -> service.Button | None:
    if url is None:
        if texts:
            _fail("--button-text needs --button-url (a link, or web_app)")
        return None
    labels: dict[str, str] = {}
    for value in texts:
        language, separator, rest = value.partition("=")
        if separator and language in available_languages():
            labels[language] = rest
        else:
            labels |= {lang: value for lang in available_languages() if lang not in labels}
    return service.Button(url=url, text=labels)


@broadcast.command("list")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
def list_command(limit: int) -> None:
    """The newest broadcasts."""

    async def work(session: AsyncSession, settings: Settings) -> list[str]:
        return [
            f"#{b.id}\t{b.status.value}\t{Segment.from_json(b.segment).describe()}\t"
            f"{b.sent}/{b.total} sent\t{'paid' if b.is_paid else ''}\t{b.title}"
            for b in await service.list_broadcasts(session, limit=limit)
        ]

    for line in _in_transaction(work) or ["no broadcasts yet"]:
        click.echo(line)


@broadcast.command("show")
@click.argument("broadcast_id", type=int)
def show_command(broadcast_id: int) -> None:
    """A broadcast's state and progress."""

    async def work(session: AsyncSession, settings: Settings) -> list[str]:
        b = await service.get(session, broadcast_id)
        p = await service.progress(session, settings, broadcast_id)
        lines = [
            f'#{b.id} "{b.title}": {p.status.value}{" (paid)" if b.is_paid else ""}',
            f"segment: {Segment.from_json(b.segment).describe()}",
            f"total {p.total} · sent {p.sent} · failed {p.failed} · skipped {p.skipped} · unknown {p.unknown} · "
            f"pending {p.pending}",
            f"rate {p.rate:.1f}/s" + (f" · about {_duration(p.eta_seconds)} left" if p.eta_seconds else ""),
        ]
        if b.scheduled_at and b.status.value == "scheduled":
            lines.append(f"scheduled for {b.scheduled_at.isoformat()}")
        if p.started_at:
            lines.append(f"started {p.started_at.isoformat()}")
        if p.finished_at:
            lines.append(f"finished {p.finished_at.isoformat()}")
        return lines

    click.echo("\n".join(_in_transaction(work)))


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


@broadcast.command("preview")
@click.argument("broadcast_id", type=int)
def preview_command(broadcast_id: int) -> None:
    """Recipients per language and the message each language gets."""

    async def work(session: AsyncSession, settings: Settings) -> list[str]:
        p = await service.preview(session, settings, broadcast_id)
        counts = ", ".join(f"{language} {number}" for language, number in p.by_language.items()) or "none"
        lines = [f'#{p.broadcast.id} "{p.broadcast.title}": {p.recipients} recipients ({counts})']
        for language, message in p.messages.items():
            lines += [f"--- {language} ({p.by_language.get(language, 0)}) ---", message.text]
            for row in (message.reply_markup or {}).get("inline_keyboard", []):
                for button in row:
                    target = button.get("url") or f"web_app {button.get('web_app', {}).get('url')}"
                    lines.append(f"[{button['text']}] → {target}")
        return lines

    click.echo("\n".join(_in_transaction(work)))


@broadcast.command("test")
@click.argument("broadcast_id", type=int)
@click.option("--telegram-id", required=True, type=int, help="Who gets the test message (e.g. yourself).")
@click.option("--language", help="Send this language's text (default: that user's language).")
def test_command(broadcast_id: int, telegram_id: int, language: str | None) -> None:
    """Send the broadcast to one Telegram account now (not counted as a delivery)."""
    from app.resources import open_resources

    settings = _settings()
    if not settings.encryption_key:  # DEMO_MODE outside `vpnshop demo` has none, and the resources need one
        _fail("config error: ENCRYPTION_KEY: expected a Fernet key (the one the shop runs with)")

    async def main() -> None:
        resources = open_resources(settings)
        try:
            await service.send_test(
                resources.sessionmaker, resources.telegram, settings, broadcast_id, telegram_id, CLI, language=language
            )
        finally:
            await resources.aclose()

    try:
        asyncio.run(main())
    except AppError as exc:
        _fail(exc.message)
    click.echo(f"test message of broadcast #{broadcast_id} sent to {telegram_id}")


@broadcast.command("start")
@click.argument("broadcast_id", type=int)
@click.option("--at", "at", help="Schedule for this time instead (ISO 8601; without an offset, in TIMEZONE).")
@click.option("--now", "now", is_flag=True, help="Start now even if a time was set at creation.")
def start_command(broadcast_id: int, at: str | None, now: bool) -> None:
    """Start now, or at the time given (or set at creation)."""
    if at and now:
        _fail("give either --at or --now")
    settings = _settings()
    if not settings.bot_token:
        # As `broadcast test` does: a started broadcast would wait forever for a sender that cannot send.
        _fail("no bot is configured (BOT_TOKEN), so nothing can be sent")
    when = _parse_time(at, settings)

    async def work(session: AsyncSession, settings: Settings) -> str:
        b = await service.start(session, broadcast_id, CLI, at=when, now=now)
        if b.scheduled_at is not None:
            return f"broadcast #{b.id} scheduled for {b.scheduled_at.isoformat()}"
        return f"broadcast #{b.id} started: the worker begins sending within seconds"

    click.echo(_in_transaction(work, settings))


Transition = Callable[[AsyncSession, int, service.Actor], Awaitable[Any]]


def _simple(name: str, action: Transition, done: str, doc: str) -> None:
    @broadcast.command(name, help=doc)
    @click.argument("broadcast_id", type=int)
    def command(broadcast_id: int) -> None:
        async def work(session: AsyncSession, settings: Settings) -> None:
            await action(session, broadcast_id, CLI)

        _in_transaction(work)
        click.echo(f"broadcast #{broadcast_id} {done}")


_simple("pause", service.pause, "paused", "Pause after the messages already on their way.")
_simple("resume", service.resume, "resumed", "Resume a paused broadcast where it stopped.")
_simple("cancel", service.cancel, "cancelled", "Cancel: whatever has not been sent yet is skipped.")
