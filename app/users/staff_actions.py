"""What staff change about a customer (SPEC §10.2): block and unblock with a reason, the editable profile fields,
and a message through the bot. Each runs in the caller's transaction and writes its audit row (before and
after) there, so the change and its record commit together or not at all."""

from __future__ import annotations

import uuid
from typing import Any
from zoneinfo import available_timezones

from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import Actor, record_by
from app.kit.errors import Conflict, NotFound
from app.kit.field_errors import FieldInvalid
from app.kit.i18n import available_languages
from app.models import User
from app.notifications import service as notifications
from app.provisioning import service as provisioning
from app.users.preferences import payment_methods, revoke_payment_method

MAX_REASON = 500
# Telegram's limit for one message's text.
MAX_MESSAGE = 4096
STAFF_MESSAGE_KIND = "staff_message"
EDITABLE = ("language", "timezone", "marketing_opt_out")


async def get_user(session: AsyncSession, user_id: int, *, for_update: bool = False) -> User:
    user = await session.get(User, user_id, with_for_update=for_update)
    if user is None:
        raise NotFound("No such customer.")
    return user


def valid_reason(reason: object) -> str:
    text = str(reason or "").strip()
    if "\x00" in text:
        raise FieldInvalid("reason", "The reason holds a character that cannot be stored.")
    if not text:
        raise FieldInvalid("reason", "Say why: the reason is required.")
    if len(text) > MAX_REASON:
        raise FieldInvalid("reason", f"The reason is longer than {MAX_REASON} characters.")
    return text


def _block_state(user: User) -> dict[str, Any]:
    return {"is_blocked": user.is_blocked, "block_reason": user.block_reason}


async def block(session: AsyncSession, actor: Actor, user: User, reason: str | None) -> User:
    """Block a customer: they can no longer sign in or pay, and their VPN accounts are turned off on the panels
    (their paid time is kept: an unblock turns a live subscription's accounts back on). Their saved payment methods
    are revoked, so nothing renews while they cannot use the service: a Star or Razorpay subscription renews at the
    provider by itself, and only a cancel there (queued through the outbox) stops it. A revoked method stays
    revoked after an unblock: the customer's next payment saves one again."""
    text = valid_reason(reason)
    if user.is_blocked:
        raise Conflict("This customer is already blocked.", code="already_blocked")
    before = _block_state(user)
    user.is_blocked, user.block_reason = True, text
    await provisioning.sync_user_accounts(session, user.id)
    for method in await payment_methods(session, user):
        await revoke_payment_method(session, method)
        record_by(
            session,
            actor,
            action="payment_method.revoked",
            entity_type="saved_payment_method",
            entity_id=method.id,
            before={"active": True},
            after={"active": False, "why": "user.block"},
        )
    record_by(
        session,
        actor,
        action="user.block",
        entity_type="user",
        entity_id=user.id,
        before=before,
        after=_block_state(user),
    )
    return user


async def unblock(session: AsyncSession, actor: Actor, user: User, reason: str | None = None) -> User:
    """Lift a block; a reason is optional here (kept in the audit row when given). The payment methods the block
    revoked stay revoked: the customer's next payment saves one again."""
    text = valid_reason(reason) if reason and reason.strip() else None
    if not user.is_blocked:
        raise Conflict("This customer is not blocked.", code="not_blocked")
    before = _block_state(user)
    user.is_blocked, user.block_reason = False, None
    await provisioning.sync_user_accounts(session, user.id)
    record_by(
        session,
        actor,
        action="user.unblock",
        entity_type="user",
        entity_id=user.id,
        before=before,
        after=_block_state(user) | ({"reason": text} if text else {}),
    )
    return user


def _validated_profile(changes: dict[str, Any]) -> dict[str, Any]:
    unknown = set(changes) - set(EDITABLE)
    if unknown:
        raise FieldInvalid(sorted(unknown)[0], f"This field cannot be changed here; editable: {', '.join(EDITABLE)}.")
    if "language" in changes and changes["language"] not in available_languages():
        raise FieldInvalid("language", f"Expected one of {', '.join(available_languages())}.")
    if changes.get("timezone") is not None and changes["timezone"] not in available_timezones():
        raise FieldInvalid("timezone", "Not a known time zone (e.g. Europe/Moscow).")
    if "marketing_opt_out" in changes and not isinstance(changes["marketing_opt_out"], bool):
        raise FieldInvalid("marketing_opt_out", "Expected true or false.")
    return changes


async def update_profile(session: AsyncSession, actor: Actor, user: User, changes: dict[str, Any]) -> User:
    """Change the editable fields; fields left out stay as they are, an unchanged value writes no audit row."""
    changed = {name: value for name, value in _validated_profile(changes).items() if getattr(user, name) != value}
    if changed:
        before = {name: getattr(user, name) for name in changed}
        for name, value in changed.items():
            setattr(user, name, value)
        record_by(
            session, actor, action="user.update", entity_type="user", entity_id=user.id, before=before, after=changed
        )
    return user


def valid_message(text: object) -> str:
    body = str(text or "").strip()
    if "\x00" in body:
        raise FieldInvalid("text", "The message holds a character that cannot be stored.")
    if not body:
        raise FieldInvalid("text", "The message is empty.")
    if len(body) > MAX_MESSAGE:
        raise FieldInvalid("text", f"The message is longer than {MAX_MESSAGE} characters.")
    return body


async def message(session: AsyncSession, actor: Actor, user: User, text: str | None) -> str:
    """Queue a message to the customer through the bot (the notifications outbox); returns its dedupe key."""
    body = valid_message(text)
    key = f"{STAFF_MESSAGE_KIND}:{user.id}:{uuid.uuid4().hex}"
    await notifications.notify_user(session, user.id, STAFF_MESSAGE_KIND, {"text": body}, dedupe_key=key)
    record_by(
        session,
        actor,
        action="user.message",
        entity_type="user",
        entity_id=user.id,
        before=None,
        after={"text": body, "dedupe_key": key},
    )
    return key
