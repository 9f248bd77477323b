"""The customers export: the table's rows (its filters, search and segment), one line per customer."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select

from app.admin.exports import Column, ExportKind, register
from app.admin.users.queries import CustomerFilters, CustomerQuery, customer_status


def _statement(params: dict[str, str]) -> Select[Any]:
    return CustomerQuery(CustomerFilters.model_validate(params)).rows_statement()


def _plan(row: Any) -> str | None:
    return row[2].code if row[2] is not None else None


def _sub(name: str) -> Any:
    return lambda row: getattr(row[1], name) if row[1] is not None else None


CUSTOMERS = register(
    ExportKind(
        name="customers",
        columns=(
            Column("id", lambda row: row[0].id, 10),
            Column("telegram_id", lambda row: row[0].telegram_id, 14),
            Column("username", lambda row: row[0].username, 18),
            Column("first_name", lambda row: row[0].first_name, 18),
            Column("last_name", lambda row: row[0].last_name, 18),
            Column("language", lambda row: row[0].language, 8),
            Column("status", lambda row: customer_status(row[1]), 10),
            Column("plan", _plan, 12),
            Column("trial", _sub("is_trial"), 6),
            Column("ends_at", _sub("ends_at"), 20),
            Column("auto_renew", _sub("auto_renew"), 6),
            Column("blocked", lambda row: row[0].is_blocked, 6),
            Column("unreachable_since", lambda row: row[0].unreachable_since, 20),
            Column("referral_code", lambda row: row[0].referral_code, 12),
            Column("created_at", lambda row: row[0].created_at, 20),
            Column("last_seen_at", lambda row: row[0].last_seen_at, 20),
        ),
        statement=_statement,
    )
)
