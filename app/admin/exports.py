"""Exports of admin lists (ADMIN.md, "Exports"), for every section that has one (customers, payments).

- CSV is streamed straight from the database: a UTF-8 BOM so Excel shows Cyrillic, a header row, and every
  cell that starts with = + - @ (or a tab or carriage return) prefixed with an apostrophe, since names come
  from Telegram users and a spreadsheet would run them as formulas. The rows are read in batches from a
  session of the response's own (the request's session is closed by the time the body streams), so memory
  stays flat however many rows there are.
- Excel (an .xlsx is a zip, it cannot be streamed) is built by a job into an `ExportFile` row and downloaded
  when done; XlsxWriter's constant-memory mode keeps the job flat too. Asked for, the finished file also goes to
  the staff member's own Telegram (their linked account), through the outbox: a phone gets it where it is read.
Both refuse more than `MAX_ROWS` rows with a clear message, and both are audited (who exported what).

A section registers an `ExportKind` (its columns, and how to select its rows from the list's URL parameters)
with `register(...)`; the job builds any registered kind."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import StreamingResponse
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.audit.service import Actor, record_by
from app.db import transaction
from app.kit.clock import ensure_utc, utcnow
from app.kit.errors import AppError
from app.kit.field_errors import FieldInvalid
from app.kit.i18n import translate
from app.models import ExportFile, JobState
from app.outbox import service as outbox
from app.telegram.api import OutcomeUnknown, Undeliverable

log = logging.getLogger(__name__)

BOM = "\ufeff"
# What a spreadsheet treats as the start of a formula (OWASP "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
MAX_ROWS = 200_000
BATCH = 1000
FLUSH_BYTES = 64 * 1024


class ExportTooLarge(AppError):
    """Too many rows to export at once."""

    status_code = 413
    code = "export_too_large"


@dataclass(frozen=True, slots=True)
class Column:
    title: str
    value: Callable[[Any], Any]
    # An Excel column width in characters.
    width: int = 16


@dataclass(frozen=True, slots=True)
class ExportKind:
    name: str  # customers | payments: the file name's stem and the ExportFile.kind
    columns: Sequence[Column]
    # The rows of the list the URL parameters describe, in a stable order.
    statement: Callable[[dict[str, str]], Select[Any]]


_kinds: dict[str, ExportKind] = {}


def register(kind: ExportKind) -> ExportKind:
    _kinds[kind.name] = kind
    return kind


def kind_named(name: str) -> ExportKind:
    return _kinds[name]


def neutralise(text: str) -> str:
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def cell(value: Any) -> str:
    """One CSV cell: dates in UTC as `YYYY-MM-DD HH:MM:SS`, booleans as yes/no, text neutralised."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return ensure_utc(value).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, int | float | Decimal | date):
        return str(value)
    return neutralise(str(value))


def file_name(kind: str, extension: str) -> str:
    return f"{kind}-{utcnow():%Y%m%d-%H%M}.{extension}"


def attachment(name: str) -> dict[str, str]:
    return {"content-disposition": f"attachment; filename=\"{name}\"; filename*=UTF-8''{quote(name)}"}


async def count_rows(session: AsyncSession, statement: Select[Any]) -> int:
    return int(await session.scalar(select(func.count()).select_from(statement.order_by(None).subquery())) or 0)


async def check_size(session: AsyncSession, statement: Select[Any], *, max_rows: int | None = None) -> int:
    """The number of rows, refused above `max_rows` (MAX_ROWS by default) before anything is sent."""
    max_rows = max_rows or MAX_ROWS
    total = await count_rows(session, statement)
    if total > max_rows:
        raise ExportTooLarge(f"{total} rows match; an export takes at most {max_rows}. Narrow the filters.")
    return total


async def stream_rows(
    sessionmaker: async_sessionmaker[AsyncSession], statement: Select[Any], *, limit: int = MAX_ROWS
) -> AsyncIterator[Any]:
    """The rows of `statement`, read in batches on a session of their own (at most `limit`)."""
    async with sessionmaker() as session:
        result = await session.stream(statement.limit(limit).execution_options(yield_per=BATCH))
        async for partition in result.partitions():
            for row in partition:
                yield row


async def csv_chunks(columns: Sequence[Column], rows: AsyncIterator[Any]) -> AsyncIterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    buffer.write(BOM)
    writer.writerow([neutralise(column.title) for column in columns])
    async for row in rows:
        writer.writerow([cell(column.value(row)) for column in columns])
        if buffer.tell() >= FLUSH_BYTES:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode("utf-8")


def csv_response(
    sessionmaker: async_sessionmaker[AsyncSession], kind: ExportKind, params: dict[str, str]
) -> StreamingResponse:
    """The streamed CSV of a list (check its size first with `check_size`)."""
    rows = stream_rows(sessionmaker, kind.statement(params))
    headers = attachment(file_name(kind.name, "csv"))
    return StreamingResponse(csv_chunks(kind.columns, rows), media_type="text/csv; charset=utf-8", headers=headers)


def xlsx_value(value: Any) -> Any:
    """Excel keeps numbers and dates typed; text is neutralised as in CSV (Excel runs formulas too)."""
    if value is None or isinstance(value, int | float):
        return value
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return ensure_utc(value).replace(tzinfo=None)
    return cell(value)


async def build_xlsx(columns: Sequence[Column], rows: AsyncIterator[Any]) -> tuple[bytes, int]:
    """The workbook's bytes and its number of data rows."""
    import xlsxwriter  # the web process never needs it

    output = io.BytesIO()
    workbook = xlsxwriter.Workbook(output, {"constant_memory": True, "in_memory": False, "strings_to_formulas": False})
    sheet = workbook.add_worksheet()
    bold = workbook.add_format({"bold": True})
    when = workbook.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
    for index, column in enumerate(columns):
        sheet.set_column(index, index, column.width)
        sheet.write_string(0, index, column.title, bold)
    count = 0
    async for row in rows:
        count += 1
        for index, column in enumerate(columns):
            value = xlsx_value(column.value(row))
            if isinstance(value, datetime):
                sheet.write_datetime(count, index, value, when)
            elif value is not None:
                sheet.write(count, index, value)
    sheet.freeze_panes(1, 0)
    workbook.close()
    return output.getvalue(), count


# --- Excel files, built by a job ------------------------------------------------------------------------------

EXCEL_JOB = "build_excel_export"


async def request_excel(
    session: AsyncSession,
    actor: Actor,
    kind: ExportKind,
    params: dict[str, str],
    *,
    telegram_chat_id: int | None = None,
) -> ExportFile:
    """Record an Excel export to build (size checked now, so a refusal is immediate), to be sent to
    `telegram_chat_id` too when given; the caller commits and then enqueues EXCEL_JOB with its id."""
    total = await check_size(session, kind.statement(params))
    export = ExportFile(
        staff_id=actor.id,
        kind=kind.name,
        params=params,
        state=JobState.QUEUED,
        row_count=total,
        telegram_chat_id=telegram_chat_id,
    )
    session.add(export)
    await session.flush()
    record_by(
        session,
        actor,
        action="export.excel",
        entity_type="export",
        entity_id=export.id,
        before=None,
        after={"kind": kind.name, "params": params, "rows": total, "to_telegram": telegram_chat_id is not None},
    )
    return export


class NoTelegramLinked(FieldInvalid):
    def __init__(self) -> None:
        super().__init__(
            "to_telegram", "Link your Telegram account to your staff profile first (and the shop needs a bot)."
        )


def own_chat(request: Request) -> int | None:
    """Where the signed-in staff member's exports can go: their linked Telegram, when the shop has a bot."""
    viewer = getattr(request.state, "staff_viewer", None)
    if viewer is None or request.app.state.resources.telegram is None:
        return None
    return viewer.staff.telegram_id


def telegram_chat_of(request: Request, form: Mapping[str, Any]) -> int | None:
    """The chat an export form asks the file to be sent to (the viewer's own), or None when not asked."""
    if str(form.get("to_telegram") or "") not in ("1", "on", "true"):
        return None
    chat = own_chat(request)
    if chat is None:
        raise NoTelegramLinked()
    return chat


def audit_csv(session: AsyncSession, actor: Actor, kind: ExportKind, params: dict[str, str], total: int) -> None:
    record_by(
        session,
        actor,
        action="export.csv",
        entity_type="export",
        entity_id=None,
        before=None,
        after={"kind": kind.name, "params": params, "rows": total},
    )


async def build_excel(sessionmaker: async_sessionmaker[AsyncSession], export_id: int) -> JobState:
    """Build the file of an ExportFile; safe to repeat (a finished one is left as it is)."""
    async with transaction(sessionmaker) as session:
        export = await session.get_one(ExportFile, export_id, with_for_update=True)
        if export.state in (JobState.DONE, JobState.FAILED):
            return export.state
        export.state = JobState.RUNNING
        kind, params = kind_named(export.kind), dict(export.params)
    try:
        content, count = await build_xlsx(kind.columns, stream_rows(sessionmaker, kind.statement(params)))
    except Exception as exc:
        log.exception("excel export %s failed", export_id)
        async with transaction(sessionmaker) as session:
            export = await session.get_one(ExportFile, export_id, with_for_update=True)
            export.state, export.error, export.finished_at = JobState.FAILED, str(exc)[:500], utcnow()
        return JobState.FAILED
    async with transaction(sessionmaker) as session:
        export = await session.get_one(ExportFile, export_id, with_for_update=True)
        export.content, export.row_count = content, count
        export.file_name = file_name(kind.name, "xlsx")
        export.state, export.finished_at = JobState.DONE, utcnow()
        if export.telegram_chat_id is not None:
            await outbox.add(session, TELEGRAM_TOPIC, {"export_id": export.id}, dedupe_key=f"export:{export.id}")
    return JobState.DONE


# --- the finished file in the staff member's Telegram -----------------------------------------------------------

TELEGRAM_TOPIC = "notify.export_file"  # the messages lane: paced with every other message to a person
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@outbox.handler(TELEGRAM_TOPIC, max_attempts=50)
async def send_to_telegram(ctx: dict[str, Any], payload: dict[str, Any]) -> None:
    resources = ctx["resources"]
    if resources.telegram is None:
        raise outbox.PermanentFailure("no bot is configured (BOT_TOKEN)")
    async with transaction(resources.sessionmaker) as session:
        export = await session.get(ExportFile, payload["export_id"])
        if export is None or export.content is None:
            raise outbox.PermanentFailure("the export file is gone")
        if export.sent_to_telegram_at is not None or export.telegram_chat_id is None:
            return
        chat_id, name, content, rows = (
            export.telegram_chat_id,
            export.file_name or "export.xlsx",
            export.content,
            export.row_count,
        )
    caption = translate(resources.settings.default_language, "admin_users.export_caption", rows=rows)
    try:
        await resources.telegram.send_document(chat_id, name, content, XLSX_TYPE, caption=caption)
    except (OutcomeUnknown, Undeliverable) as exc:
        # Not sent again: a file may have arrived (no answer), or Telegram refuses it for good (403, too large).
        raise outbox.PermanentFailure(f"sendDocument: {exc.description}") from exc
    async with transaction(resources.sessionmaker) as session:
        export = await session.get_one(ExportFile, payload["export_id"], with_for_update=True)
        export.sent_to_telegram_at = utcnow()
