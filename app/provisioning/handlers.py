"""Outbox handlers that make a panel match our database. Each is safe to repeat: sync converges to the
stored state, delete ignores a missing account, revoke and reset leave the same end state when repeated.

The delete of a moved account's old copy runs on its own ordering key (see `move_account`), so it checks our
state itself: it waits until the account exists on its new server, and spares the copy if the account was moved
back.

Nothing is changed on a panel account that does not bear our ownership mark (app.panels.ownership): a same-name
account of someone else is left alone, ours is renamed and created beside it, and staff are told."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import transaction
from app.kit.clock import utcnow
from app.kit.crypto import cipher
from app.kit.metrics import PANEL_ERRORS
from app.models import Plan, Server, Subscription, User, VpnAccount
from app.outbox.service import handler
from app.panels.base import (
    AccountChanges,
    AccountExists,
    AccountNotFound,
    AccountRef,
    AccountSpec,
    PanelAccount,
    VpnPanel,
)
from app.panels.ownership import LEGACY, clash_name, is_ours, owner_mark, record_clash
from app.provisioning.service import (
    DELETE_TOPIC,
    DELETED_ON_PANEL,
    RESET_TRAFFIC_TOPIC,
    REVOKE_TOPIC,
    SYNC_TOPIC,
    desired_spec,
    should_be_enabled,
)

log = logging.getLogger(__name__)


async def _load(
    session: AsyncSession, account_id: int
) -> tuple[VpnAccount, Subscription, Server, int, bool, Plan | None] | None:
    row = (
        await session.execute(
            select(VpnAccount, Subscription, Server, User.telegram_id, User.is_blocked, Plan)
            .join(Subscription, Subscription.id == VpnAccount.subscription_id)
            .join(Server, Server.id == VpnAccount.server_id)
            .join(User, User.id == VpnAccount.user_id)
            .outerjoin(Plan, Plan.id == Subscription.plan_id)
            .where(VpnAccount.id == account_id)
        )
    ).first()
    return None if row is None else (row[0], row[1], row[2], row[3], row[4], row[5])


def _same_second(a: datetime | None, b: datetime | None) -> bool:
    # Panels keep whole seconds (Marzban) or milliseconds (Remnawave); we keep microseconds.
    if a is None or b is None:
        return a is b
    return int(a.timestamp()) == int(b.timestamp())


def changes_needed(
    actual: PanelAccount, spec: AccountSpec, *, devices: bool = True, off: frozenset[str] = frozenset({"disabled"})
) -> AccountChanges | None:
    """The partial update that makes `actual` match `spec`, or None when they already agree. `devices=False`
    (the panel's `supports_devices`) ignores the device limit, which such a panel cannot hold; `off` (the panel's
    `off_statuses`) are the statuses that already mean "disabled"."""
    changes = AccountChanges()
    changed = False
    # A disabled account's expiry does not matter, and panels refuse a past expiry on update (Remnawave).
    expiry_matters = spec.enabled or (spec.expire_at is not None and spec.expire_at > utcnow())
    if expiry_matters and not _same_second(actual.expire_at, spec.expire_at):
        changes.expire_at, changes.clear_expiry, changed = spec.expire_at, spec.expire_at is None, True
    if (actual.traffic_limit_bytes or 0) != (spec.traffic_limit_bytes or 0):
        changes.traffic_limit_bytes, changed = spec.traffic_limit_bytes or 0, True
    if devices and (actual.device_limit or 0) != (spec.device_limit or 0):
        changes.device_limit, changed = spec.device_limit or 0, True
    # On Remnawave expired and limited accounts are off already: it disables only ACTIVE users (its status job
    # marks them EXPIRED/LIMITED by itself), so asking again would never converge.
    is_off = actual.status in off if not spec.enabled else actual.status == "disabled"
    if is_off == spec.enabled:
        changes.enabled, changed = spec.enabled, True
    if actual.note is not None and _mark_of(spec) not in actual.note:
        changes.note, changed = spec.note, True  # an account we recognised without its mark (made before marks)
    if actual.traffic_strategy is not None and actual.traffic_strategy != spec.traffic_strategy:
        changes.traffic_strategy, changed = spec.traffic_strategy, True
    return changes if changed else None


def _mark_of(spec: AccountSpec) -> str:
    """The ownership mark at the front of our note (ownership.with_mark)."""
    return spec.note.split(" ", 1)[0]


@dataclass(slots=True)
class Converged:
    account: PanelAccount | None
    # The panel account was made by this convergence (or by an earlier attempt whose answer was lost): its
    # traffic counters start afresh, so our usage baseline must too.
    created: bool = False


class NameClash(Exception):
    """The panel account with our account's name is not ours (no ownership mark)."""


async def _converge(
    panel: VpnPanel,
    account: VpnAccount,
    subscription: Subscription,
    telegram_id: int,
    plan: Plan | None,
    *,
    blocked: bool = False,
) -> Converged:
    """Create the panel account if it is missing (and should exist), else fix whatever differs from our state.
    Raises NameClash, changing nothing, when the account under our name is someone else's."""
    spec = desired_spec(account, subscription, telegram_id, plan, blocked=blocked)
    ref = AccountRef(account.panel_username, account.panel_id)
    try:
        actual = await panel.get_account(ref)
    except AccountNotFound:
        if not spec.enabled or account.status == DELETED_ON_PANEL:
            # Nothing to create for a subscription that has ended; an account staff deleted on the panel comes
            # back only when they (or a payment) ask for it.
            return Converged(None)
        try:
            return Converged(await panel.create_account(spec), created=True)
        except AccountExists:
            # Created by an earlier attempt whose answer we never saw, or someone else's: checked below.
            actual = await panel.get_account(AccountRef(account.panel_username))
            created = True
    else:
        created = False
    if not is_ours(actual, account.owner_key, telegram_id):
        raise NameClash(f"{actual.username} on the panel is not ours")
    changes = changes_needed(actual, spec, devices=panel.supports_devices, off=panel.off_statuses)
    result = actual if changes is None else await panel.modify_account(actual.ref, changes)
    return Converged(result, created)


async def _store(sessionmaker: Any, account_id: int, result: PanelAccount | None, *, created: bool = False) -> None:
    if result is None:
        return
    async with transaction(sessionmaker) as session:
        account = await session.get(VpnAccount, account_id)
        if account is None:
            return
        if created:
            # A new panel account (first creation, a move, or a recreation after it vanished) counts from zero;
            # the sync adds growth over this baseline, so an old server's total must not swallow the new usage.
            account.lifetime_traffic_bytes = result.lifetime_traffic_bytes
        account.panel_id = result.panel_id
        account.status = result.status
        account.subscription_url_encrypted = cipher().encrypt(result.subscription_url)
        account.used_traffic_bytes = result.used_traffic_bytes
        account.online_at = result.online_at or account.online_at
        account.sub_updated_at = result.sub_updated_at or account.sub_updated_at
        account.last_synced_at = utcnow()
        account.provisioned_at = account.provisioned_at or utcnow()


@dataclass(slots=True)
class _Target:
    """Everything a handler needs about one account, read in one short transaction before any panel call."""

    account: VpnAccount
    subscription: Subscription
    server: Server
    telegram_id: int
    blocked: bool  # its owner is blocked by staff: the account is kept off
    plan: Plan | None
    panel: VpnPanel

    @property
    def ref(self) -> AccountRef:
        return AccountRef(self.account.panel_username, self.account.panel_id)

    async def call(self, operation: Any) -> Any:
        """Await a panel call, counting its failures per server."""
        try:
            return await operation
        except Exception as exc:
            PANEL_ERRORS.labels(self.server.name, type(exc).__name__).inc()
            raise

    async def converge(self, sessionmaker: Any) -> Converged:
        """Converge; on a name clash, take a new name (leaving the other account alone) and converge that."""
        try:
            return await self.call(self._converge())
        except NameClash as clash:
            log.warning("account %s: %s; renaming ours", self.account.id, clash)
        await self._rename(sessionmaker)
        return await self.call(self._converge())

    def _converge(self) -> Any:
        return _converge(self.panel, self.account, self.subscription, self.telegram_id, self.plan, blocked=self.blocked)

    async def _rename(self, sessionmaker: Any) -> None:
        async with transaction(sessionmaker) as session:
            account = await session.get_one(VpnAccount, self.account.id, with_for_update=True)
            old_name = account.panel_username
            if old_name == self.account.panel_username:  # not renamed meanwhile by a concurrent handler
                account.panel_username, account.panel_id = clash_name(old_name), None
                await session.flush()
                await record_clash(session, self.server, account, old_name)
            self.account.panel_username, self.account.panel_id = account.panel_username, account.panel_id


async def _target(ctx: dict[str, Any], account_id: int) -> _Target | None:
    async with transaction(ctx["resources"].sessionmaker) as session:
        loaded = await _load(session, account_id)
    if loaded is None:
        log.info("panel operation for account %s skipped: the account no longer exists", account_id)
        return None
    account, subscription, server, telegram_id, blocked, plan = loaded
    panel = ctx["resources"].panels.for_server(server)
    return _Target(account, subscription, server, telegram_id, blocked, plan, panel)


@handler(SYNC_TOPIC)
async def sync_account(ctx: dict[str, Any], payload: dict[str, Any]) -> None:
    target = await _target(ctx, payload["account_id"])
    if target is None:
        return
    converged = await target.converge(ctx["resources"].sessionmaker)
    await _store(ctx["resources"].sessionmaker, target.account.id, converged.account, created=converged.created)


@handler(REVOKE_TOPIC)
async def revoke_account(ctx: dict[str, Any], payload: dict[str, Any]) -> None:
    target = await _target(ctx, payload["account_id"])
    if target is None:
        return
    # The account may not exist yet on the panel (revoked before provisioning finished): create it first.
    converged = await target.converge(ctx["resources"].sessionmaker)
    if converged.account is None:
        return  # no panel account to revoke (the subscription has ended)
    result = await target.call(target.panel.revoke_subscription(target.ref))
    await _store(ctx["resources"].sessionmaker, target.account.id, result, created=converged.created)


@handler(RESET_TRAFFIC_TOPIC)
async def reset_account_traffic(ctx: dict[str, Any], payload: dict[str, Any]) -> None:
    target = await _target(ctx, payload["account_id"])
    if target is None:
        return
    # Converged first: the account must exist, be ours, and have its new expiry before its traffic starts over.
    converged = await target.converge(ctx["resources"].sessionmaker)
    if converged.account is None:
        return  # the subscription has ended: nothing to restore
    result = await target.call(target.panel.reset_traffic(converged.account.ref))
    await _store(ctx["resources"].sessionmaker, target.account.id, result, created=converged.created)


class AccountNotMovedYet(Exception):
    """The old copy of a moved account is kept until the account exists on its new server (retried later)."""


@handler(DELETE_TOPIC)
async def delete_panel_account(ctx: dict[str, Any], payload: dict[str, Any]) -> None:
    async with transaction(ctx["resources"].sessionmaker) as session:
        server = await session.get(Server, payload["server_id"])
        # Usernames are derived from the subscription, so this is the account the copy belongs to, if we still
        # keep it (a deleted account has no record; a moved one lives on another server, or back on this one).
        row = (
            await session.execute(
                select(VpnAccount, Subscription)
                .join(Subscription, Subscription.id == VpnAccount.subscription_id)
                .where(VpnAccount.panel_username == payload["username"])
            )
        ).first()
    if server is None:
        return
    if row is not None:
        account, subscription = row
        if account.server_id == server.id:
            log.info("delete of %s on %s skipped: the account was moved back", account.panel_username, server.name)
            return
        if account.panel_id is None and should_be_enabled(subscription):
            raise AccountNotMovedYet(f"{account.panel_username} is not on its new server yet")
    panel = ctx["resources"].panels.for_server(server)
    ref = AccountRef(payload["username"], payload.get("panel_id"))
    try:
        if "owner_key" in payload and not await _still_ours(ctx, panel, ref, payload):
            log.warning("delete of %s on %s skipped: that panel account is not ours", ref.username, server.name)
            return
        await panel.delete_account(ref)
    except Exception as exc:
        PANEL_ERRORS.labels(server.name, type(exc).__name__).inc()
        raise


async def _still_ours(ctx: dict[str, Any], panel: VpnPanel, ref: AccountRef, payload: dict[str, Any]) -> bool:
    """Whether the panel account to delete bears our mark (a missing one is "ours": deleting it is a no-op)."""
    try:
        found = await panel.get_account(ref)
    except AccountNotFound:
        return True
    telegram_id = None
    if payload["owner_key"].startswith(LEGACY) and owner_mark(payload["owner_key"]) not in (found.note or ""):
        async with ctx["resources"].sessionmaker() as session:
            telegram_id = await session.scalar(select(User.telegram_id).where(User.id == payload["user_id"]))
    return is_ours(found, payload["owner_key"], telegram_id)
