"""Webhooks from the panels (SPEC §6.3): authenticate the raw body, then hand the events to app.panels.events.

Each server's secret is `Server.settings["webhook_secret"]`, set by staff to the value configured in the panel
(Remnawave `WEBHOOK_SECRET_HEADER`, Marzban `WEBHOOK_SECRET`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request

from app.deps import DbSession
from app.inbound import RowId, read_capped_body
from app.kit.clock import parse_utc, utcnow
from app.kit.errors import AppError, NotAuthenticated, NotFound
from app.models import PanelKind, Server
from app.panels.events import InvalidPanelEvent, apply_panel_event, parse_events
from app.webhook_log import service as webhook_log

log = logging.getLogger(__name__)

router = APIRouter(tags=["panels"])

# Remnawave's timestamp is not covered by its signature and the panel has no replay protection of its own
# (reference §2.7), so a captured request could be sent again later: refuse events this far from our clock.
MAX_EVENT_AGE = timedelta(minutes=5)
# Read before the sender is authenticated, so keep it bounded; a Marzban batch of notifications is far smaller.


@router.post("/api/panels/webhook/{server_id}")
async def panel_webhook(server_id: RowId, request: Request, session: DbSession) -> dict[str, Any]:
    """Apply a panel's events to our records; unknown kinds are acknowledged and ignored. Every delivery is
    recorded with its verdict (/admin/system), a refused one with the reason."""
    try:
        answer = await _apply(server_id, request, session)
    except AppError as exc:
        # Let go of whatever the request's transaction holds first: on SQLite its write lock would keep the
        # record's own transaction waiting.
        await session.rollback()
        await webhook_log.record(
            request.app.state.resources.sessionmaker,
            source="panel",
            sender=str(server_id),
            status_code=exc.status_code,
            reason=exc.message,
        )
        raise
    # Accepted: recorded in the request's transaction, with the changes it made.
    reason = f"{answer['received']} events, {answer['changed']} changed"
    webhook_log.add(session, source="panel", sender=str(server_id), status_code=200, reason=reason)
    return answer


async def _apply(server_id: int, request: Request, session: DbSession) -> dict[str, Any]:
    server, secret = _configured(await session.get(Server, server_id))
    raw = await read_capped_body(request)
    if server.panel_kind == PanelKind.REMNAWAVE:
        verify_remnawave(raw, request.headers, secret)
    else:
        verify_marzban(request.headers, secret)
    try:
        payload = json.loads(raw)
    except ValueError as exc:  # JSONDecodeError and undecodable bytes alike
        raise InvalidPanelEvent(f"the body is not valid JSON: {exc}") from None
    if server.panel_kind == PanelKind.REMNAWAVE and isinstance(payload, dict):
        # The copy of the timestamp inside the signed body, which (unlike the header) cannot be swapped.
        # An unreadable one is left to the parser, which reports it as a malformed body.
        moment = parse_utc(payload.get("timestamp"))
        if moment is not None:
            _require_recent(moment, "the event timestamp")
    events = parse_events(server.panel_kind, payload)
    outcomes = [await apply_panel_event(session, server, event) for event in events]
    changed = outcomes.count("changed")
    log.info("panel webhook from server %s: %d events, %d changed", server.id, len(events), changed)
    return {"received": len(events), "changed": changed, "ignored": all(o == "ignored" for o in outcomes)}


def _configured(server: Server | None) -> tuple[Server, str]:
    """The server and its webhook secret; the same 404 for every refusal, revealing nothing about servers."""
    secret = (server.settings or {}).get("webhook_secret") if server is not None else None
    if server is None or server.panel_kind == PanelKind.DEMO or not isinstance(secret, str) or not secret:
        raise NotFound("No webhook is configured here")
    return server, secret


def verify_remnawave(raw: bytes, headers: Mapping[str, str], secret: str) -> None:
    """`X-Remnawave-Signature` must be hex HMAC-SHA256 of the exact raw body; the timestamp must be recent."""
    signature = headers.get("x-remnawave-signature", "").strip().lower()
    if not signature:
        raise NotAuthenticated("X-Remnawave-Signature is missing", code="bad_signature")
    expected = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise NotAuthenticated("X-Remnawave-Signature does not match the body", code="bad_signature")
    if "x-remnawave-timestamp" in headers:
        moment = parse_utc(headers["x-remnawave-timestamp"])
        if moment is None:
            raise NotAuthenticated("X-Remnawave-Timestamp is not an ISO-8601 time", code="stale_event")
        _require_recent(moment, "X-Remnawave-Timestamp")


def verify_marzban(headers: Mapping[str, str], secret: str) -> None:
    """Marzban sends its shared secret as is in `x-webhook-secret` (no signature, reference §1.7)."""
    given = headers.get("x-webhook-secret", "")
    if not given:
        raise NotAuthenticated("x-webhook-secret is missing", code="bad_signature")
    # Bytes, because compare_digest refuses non-ASCII str and header values may be anything.
    if not hmac.compare_digest(given.encode(), secret.encode()):
        raise NotAuthenticated("x-webhook-secret is wrong", code="bad_signature")


def _require_recent(moment: datetime, what: str) -> None:
    # Both directions: a time far in the future would otherwise stay "fresh" for as long as it likes.
    if abs(utcnow() - moment) > MAX_EVENT_AGE:
        raise NotAuthenticated(f"{what} is more than 5 minutes away from our clock", code="stale_event")
