"""The payments export: the list's rows (its filters and search), one line per payment, amounts in units."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select

from app.admin.exports import Column, ExportKind, register
from app.admin.payments.queries import PaymentFilters, PaymentQuery
from app.kit.money import Money


def _statement(params: dict[str, str]) -> Select[Any]:
    return PaymentQuery(PaymentFilters.model_validate(params)).rows_statement()


def _payment(name: str) -> Any:
    return lambda row: getattr(row[0], name)


PAYMENTS = register(
    ExportKind(
        name="payments",
        columns=(
            Column("id", _payment("id"), 10),
            Column("payment", _payment("public_id"), 38),
            Column("created_at", _payment("created_at"), 20),
            Column("paid_at", _payment("paid_at"), 20),
            Column("refunded_at", _payment("refunded_at"), 20),
            Column("provider", _payment("provider"), 12),
            Column("method", _payment("method"), 12),
            Column("status", lambda row: row[0].status.value, 10),
            Column("amount", lambda row: Money.from_minor(row[0].amount_minor, row[0].currency).amount, 12),
            Column("currency", _payment("currency"), 8),
            Column("refunded", lambda row: Money.from_minor(row[0].refunded_minor, row[0].currency).amount, 12),
            Column("renewal", _payment("is_renewal"), 8),
            Column("days", _payment("days"), 6),
            Column("external_id", _payment("external_id"), 30),
            Column("failure_reason", _payment("failure_reason"), 30),
            Column("user_id", lambda row: row[1].id, 10),
            Column("telegram_id", lambda row: row[1].telegram_id, 14),
            Column("username", lambda row: row[1].username, 18),
        ),
        statement=_statement,
    )
)
