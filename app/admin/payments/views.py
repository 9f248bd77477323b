"""What the payments pages show of a payment: money in the viewer's language, the status's badge, and the
JSON of events and receipts pretty-printed."""

from __future__ import annotations

import json
from typing import Any

from app.kit.formatting import minor_text
from app.models import Payment, PaymentStatus

# Badge class per status: problems stand out, settled money is green.
STATUS_BADGES = {
    PaymentStatus.SUCCEEDED: "ok",
    PaymentStatus.PENDING: "",
    PaymentStatus.FAILED: "warn",
    PaymentStatus.CANCELLED: "",
    PaymentStatus.REFUNDED: "warn",
    PaymentStatus.MISMATCH: "bad",
}


def amount_text(payment: Payment, language: str) -> str:
    return minor_text(payment.amount_minor, payment.currency, language)


def badge(status: PaymentStatus) -> str:
    return STATUS_BADGES.get(status, "")


def row_class(row: Any) -> str:
    """The list's <tr> class: a mismatch stands out (admin.css marks tr.mismatch red)."""
    return "mismatch" if row.payment.status == PaymentStatus.MISMATCH else ""


def pretty_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True, default=str)


# Template helpers of the payments pages (passed in the context, so a block rendered alone has them too).
HELPERS = {
    "amount_text": amount_text,
    "minor_text": minor_text,
    "badge": badge,
    "pretty_json": pretty_json,
    "payment_row_class": row_class,
}
