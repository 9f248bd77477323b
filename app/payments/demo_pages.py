"""The demo provider's pay page (SPEC §1.1): what the customer sees on a real provider's site, reduced to the
choices a demo needs. Its notification reaches the shop through the outbox, like a provider's webhook."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select

from app.db import transaction
from app.kit.clock import ensure_utc, utcnow
from app.kit.errors import NotFound, ValidationFailed
from app.kit.money import Money
from app.models import DemoInvoice, DemoInvoiceStatus
from app.outbox import service as outbox
from app.payments.providers.demo import DemoProvider, notification
from app.payments.topics import DEMO_DELIVER_TOPIC
from app.resources import Resources

router = APIRouter(prefix="/pay/demo", include_in_schema=False)

OUTCOMES = {
    "succeed": DemoInvoiceStatus.PAID,
    "twice": DemoInvoiceStatus.PAID,
    "fail": DemoInvoiceStatus.FAILED,
    "cancel": DemoInvoiceStatus.CANCELLED,
}


def _provider(request: Request) -> DemoProvider:
    resources: Resources = request.app.state.resources
    if "demo" not in resources.payments:
        raise NotFound("The demo payment provider is not enabled.", code="provider_not_available")
    return resources.payments.get("demo")  # type: ignore[return-value]


async def _invoice(session, external_id: str) -> DemoInvoice:
    invoice = await session.scalar(select(DemoInvoice).where(DemoInvoice.external_id == external_id).with_for_update())
    if invoice is None:
        raise NotFound("There is no such demo invoice.", code="invoice_not_found")
    if invoice.status == DemoInvoiceStatus.PENDING and ensure_utc(invoice.expires_at) <= utcnow():
        invoice.status = DemoInvoiceStatus.CANCELLED
    return invoice


@router.get("/{external_id}", response_class=HTMLResponse)
async def pay_page(external_id: str, request: Request) -> Response:
    _provider(request)
    async with transaction(request.app.state.resources.sessionmaker) as session:
        invoice = await _invoice(session, external_id)
    return request.app.state.templates.response(
        request,
        "checkout/demo_pay.html",
        {"invoice": invoice, "amount": Money.from_minor(invoice.amount_minor, invoice.currency)},
    )


@router.post("/{external_id}")
async def pay(
    external_id: str,
    request: Request,
    outcome: Annotated[str, Form()],
    save_card: Annotated[bool, Form()] = False,
) -> Response:
    """The customer's choice. Notifications are queued in the same transaction as the invoice's new status;
    "twice" queues the same notification twice, as a provider retrying a delivery would."""
    provider = _provider(request)
    if outcome not in OUTCOMES:
        raise ValidationFailed(f"Unknown outcome {outcome!r}; expected one of {', '.join(OUTCOMES)}.")
    async with transaction(request.app.state.resources.sessionmaker) as session:
        invoice = await _invoice(session, external_id)
        if invoice.status != DemoInvoiceStatus.PENDING:
            raise ValidationFailed(f"This invoice is already {invoice.status.value}.", code="invoice_closed")
        invoice.status = OUTCOMES[outcome]
        if invoice.status == DemoInvoiceStatus.PAID:
            invoice.paid_at = utcnow()
            if save_card:
                invoice.card_token = f"demo_card_{invoice.external_id}"
        body, headers = notification(invoice, provider.key)
        for _ in range(2 if outcome == "twice" else 1):
            await outbox.add(session, DEMO_DELIVER_TOPIC, {"body": body.decode(), "headers": headers})
        return_url = invoice.return_url
    return RedirectResponse(return_url, status_code=303)
