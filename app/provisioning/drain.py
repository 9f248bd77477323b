"""Moving customers between servers (SPEC §10.4): drain a whole server, or move chosen accounts. A move is
`service.move_account`: the account is switched to the new server in our database, and the outbox creates it
there and deletes the old copy (only if that copy bears our ownership mark). The customer's `/sub/{token}`
stays the same: the mirror serves it by our own token, from whatever server the account is on now.

A drain runs as one outbox message that moves the accounts in batches, each batch in its own transaction with
the drain's progress (`Server.settings["drain"]`). An account's switch and its outbox rows commit together, and
the next batch picks only accounts still on the old server, so a drain killed mid-way and retried moves every
customer exactly once; two runs at once queue behind the source server's row lock.
"""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.audit.service import Actor, record, record_by
from app.db import transaction
from app.kit.clock import utcnow
from app.kit.errors import Conflict
from app.kit.field_errors import FieldInvalid
from app.models import OutboxMessage, OutboxStatus, Server, VpnAccount
from app.outbox import service as outbox
from app.outbox.service import PermanentFailure, handler
from app.provisioning.service import DELETE_TOPIC, move_account

DRAIN_TOPIC = "panel.drain"
STATE_KEY = "drain"
BATCH = 200
MAX_MOVE = 1000


async def account_count(session: AsyncSession, server_id: int) -> int:
    return int(await session.scalar(select(func.count()).where(VpnAccount.server_id == server_id)) or 0)


async def _check_target(session: AsyncSession, source: Server, target: Server | None, moving: int) -> Server:
    if target is None:
        raise FieldInvalid("target_id", "No such server to move the customers to.")
    if target.id == source.id:
        raise FieldInvalid("target_id", "Choose another server than the one the customers are on.")
    if not target.is_enabled or not target.accepts_new_accounts:
        raise FieldInvalid("target_id", f"{target.name} takes no new accounts: turn its placement on first.")
    room = target.capacity - await account_count(session, target.id)
    if moving > room:
        raise FieldInvalid(
            "target_id", f"{target.name} has room for {max(room, 0)} more accounts; {moving} would be moved."
        )
    return target


def drain_state(server: Server) -> dict[str, Any] | None:
    return (server.settings or {}).get(STATE_KEY)


def is_draining(server: Server) -> bool:
    state = drain_state(server)
    return state is not None and not state.get("finished_at")


def _save(server: Server, state: dict[str, Any]) -> None:
    # A new dict, so the ORM sees the JSON column change.
    server.settings = {**(server.settings or {}), STATE_KEY: state}


async def start_drain(session: AsyncSession, actor: Actor, source: Server, target_id: int | None) -> dict[str, Any]:
    """Stop placing new accounts on `source` and queue the move of all its customers to the target server.
    `source` must be locked by the caller (loaded FOR UPDATE)."""
    if is_draining(source):
        raise Conflict(f"{source.name} is already being drained.", code="already_draining")
    total = await account_count(session, source.id)
    target = await _check_target(session, source, await session.get(Server, target_id) if target_id else None, total)
    before = {"accepts_new_accounts": source.accepts_new_accounts, STATE_KEY: drain_state(source)}
    state = {
        "id": secrets.token_hex(6),
        "target_id": target.id,
        "target": target.name,
        "requested_at": utcnow().isoformat(),
        "total": total,
        "moved": 0,
        "finished_at": None,
    }
    source.accepts_new_accounts = False
    _save(source, state)
    await outbox.add(
        session, DRAIN_TOPIC, {"server_id": source.id, "drain_id": state["id"]}, ordering_key=f"drain:{source.id}"
    )
    record_by(
        session,
        actor,
        action="server.drain",
        entity_type="server",
        entity_id=source.id,
        before=before,
        after={"accepts_new_accounts": False, STATE_KEY: state},
    )
    return state


async def move_accounts(
    session: AsyncSession, actor: Actor, source: Server, target_id: int | None, account_ids: list[int]
) -> list[int]:
    """Move the chosen accounts of `source` to the target server now (their panel work goes through the outbox).
    Refuses, changing nothing, if any of them is not on `source`."""
    wanted = sorted(set(account_ids))
    if not wanted:
        raise FieldInvalid("account_ids", "Choose at least one account to move.")
    if len(wanted) > MAX_MOVE:
        raise FieldInvalid("account_ids", f"At most {MAX_MOVE} accounts at once; drain the server to move all.")
    target = await _check_target(session, source, await session.get(Server, target_id) if target_id else None, 0)
    accounts = list(
        (
            await session.scalars(
                select(VpnAccount)
                .where(VpnAccount.id.in_(wanted), VpnAccount.server_id == source.id)
                .order_by(VpnAccount.id)
                .with_for_update()
            )
        ).all()
    )
    stray = sorted(set(wanted) - {account.id for account in accounts})
    if stray:
        shown = ", ".join(str(i) for i in stray[:10]) + ("…" if len(stray) > 10 else "")
        raise FieldInvalid("account_ids", f"Not on {source.name}: account {shown}.")
    await _check_target(session, source, target, len(accounts))
    for account in accounts:
        await move_account(session, account, target)
    record_by(
        session,
        actor,
        action="server.move_accounts",
        entity_type="server",
        entity_id=source.id,
        before={"server": source.name, "accounts": wanted},
        after={"server": target.name, "accounts": wanted},
    )
    return wanted


async def drain_progress(session: AsyncSession, server: Server) -> dict[str, Any] | None:
    """The drain's state with what is left: accounts still on the server, and old copies still to delete."""
    state = drain_state(server)
    if state is None:
        return None
    old_copies = await session.scalar(
        select(func.count()).where(
            OutboxMessage.topic == DELETE_TOPIC,
            OutboxMessage.status == OutboxStatus.PENDING,
            OutboxMessage.ordering_key.startswith(f"server:{server.id}:", autoescape=True),
        )
    )
    return {**state, "remaining": await account_count(session, server.id), "deletes_pending": int(old_copies or 0)}


@handler(DRAIN_TOPIC)
async def drain_server(ctx: dict[str, Any], payload: dict[str, Any]) -> None:
    """Move the source server's accounts in batches until none is left; safe to repeat (see the module)."""
    await drain_batches(ctx["resources"].sessionmaker, payload["server_id"], payload["drain_id"])


async def drain_batches(
    sessionmaker: async_sessionmaker[AsyncSession],
    server_id: int,
    drain_id: str,
    *,
    batch: int = BATCH,
    max_batches: int | None = None,
) -> bool:
    """Move up to `max_batches` batches (all when None), each in its own transaction with the progress; returns
    whether the drain is finished. What a run killed mid-way leaves is exactly some committed batches."""
    done = 0
    while max_batches is None or done < max_batches:
        async with transaction(sessionmaker) as session:
            source = await session.get(Server, server_id, with_for_update=True)
            state = drain_state(source) if source is not None else None
            if source is None or state is None or state.get("id") != drain_id or state["finished_at"]:
                return True  # finished by an earlier run, replaced, or the server is gone
            target = await session.get(Server, state["target_id"])
            if target is None:
                raise PermanentFailure(f"the drain's target server {state['target_id']} no longer exists")
            accounts = (
                await session.scalars(
                    select(VpnAccount)
                    .where(VpnAccount.server_id == source.id)
                    .order_by(VpnAccount.id)
                    .limit(batch)
                    .with_for_update()
                )
            ).all()
            for account in accounts:
                await move_account(session, account, target)
            state = {**state, "moved": int(state["moved"]) + len(accounts)}
            finished = len(accounts) < batch
            if finished:
                state["finished_at"] = utcnow().isoformat()
                record(
                    session,
                    actor_type="system",
                    actor_id=None,
                    action="server.drain_finished",
                    entity_type="server",
                    entity_id=source.id,
                    after={STATE_KEY: state},
                )
            _save(source, state)
        if finished:
            return True
        done += 1
    return False
