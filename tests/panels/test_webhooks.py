"""Panel webhooks over the real app: Remnawave HMAC signatures and Marzban shared secrets, events applied to our
records with an audit trail, and every refusal leaving the database untouched."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.inbound import MAX_WEBHOOK_BODY_BYTES
from app.kit.clock import utcnow
from app.models import AuditLog, Node, OutboxMessage, PanelKind, Server, VpnAccount
from app.notifications.service import STAFF_TOPIC
from app.provisioning.service import DELETED_ON_PANEL
from tests.factories import add_account, add_server, add_subscriber

SECRET = "Wh5ecretWh5ecretWh5ecretWh5ecret42"  # Remnawave: ≥32 chars of [a-zA-Z0-9]
MARZBAN_SECRET = "marzban-shared-secret"
USERNAME = "vs000001"


@dataclass
class Env:
    remnawave: Server
    marzban: Server
    account: VpnAccount  # on the Remnawave server
    marzban_account: VpnAccount


async def _server(db: AsyncSession, name: str, kind: PanelKind, secret: str | None) -> Server:
    settings = {"webhook_secret": secret} if secret else {}
    return await add_server(db, name, kind, api_url=f"https://{name}.example", settings=settings)


async def _account(db: AsyncSession, server: Server, telegram_id: int, username: str) -> VpnAccount:
    _, subscription = await add_subscriber(db, telegram_id)
    return await add_account(db, server, subscription, panel_username=username)


@pytest.fixture
async def env(db: AsyncSession) -> Env:
    remnawave = await _server(db, "rw", PanelKind.REMNAWAVE, SECRET)
    marzban = await _server(db, "mz", PanelKind.MARZBAN, MARZBAN_SECRET)
    env = Env(
        remnawave,
        marzban,
        await _account(db, remnawave, 1001, USERNAME),
        await _account(db, marzban, 1002, USERNAME),
    )
    await db.commit()
    return env


# --- helpers ----------------------------------------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def remnawave_body(event: str, data: dict[str, Any], *, at: datetime | None = None) -> bytes:
    """As Remnawave serializes it: compact, keys in its order, non-ASCII left as is (reference §2.7)."""
    payload = {"scope": event.split(".")[0], "event": event, "timestamp": _iso(at or utcnow()), "data": data}
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def user_data(username: str = USERNAME, status: str = "ACTIVE", **traffic: Any) -> dict[str, Any]:
    return {
        "uuid": "9e3b1c4e-2f5a-4d7b-8c1e-3a6f0b2d4e51",
        "username": username,
        "status": status,
        "description": "заказ 42",  # non-ASCII: the signature must be checked on the raw bytes
        "userTraffic": {"usedTrafficBytes": 0, "onlineAt": None, "firstConnectedAt": None, **traffic},
    }


def node_data(**fields: Any) -> dict[str, Any]:
    return {
        "uuid": "c0ffee00-0000-4000-8000-000000000001",
        "name": "Amsterdam-1",
        "address": "203.0.113.7",
        "port": 2222,
        "isConnected": True,
        "isDisabled": False,
        **fields,
    }


def sign(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def post_remnawave(
    client: httpx.AsyncClient,
    server: Server,
    body: bytes,
    *,
    signature: str | None = None,
    timestamp: str | None = None,
) -> httpx.Response:
    headers = {"content-type": "application/json", "user-agent": "Remnawave"}
    if signature is not None:
        headers["x-remnawave-signature"] = signature
    if timestamp is not None:
        headers["x-remnawave-timestamp"] = timestamp
    return await client.post(f"/api/panels/webhook/{server.id}", content=body, headers=headers)


async def send_signed(client: httpx.AsyncClient, server: Server, body: bytes) -> httpx.Response:
    timestamp = json.loads(body)["timestamp"]
    return await post_remnawave(client, server, body, signature=sign(body), timestamp=timestamp)


async def fresh(db: AsyncSession) -> None:
    """End the session's snapshot and forget loaded rows (they stay readable, detached), to read what the app
    committed."""
    await db.rollback()
    db.expunge_all()


async def reload(db: AsyncSession, account: VpnAccount) -> VpnAccount:
    await fresh(db)
    fresh_account = await db.get(VpnAccount, account.id)
    assert fresh_account is not None
    return fresh_account


async def audit_rows(db: AsyncSession) -> list[AuditLog]:
    await fresh(db)
    return list((await db.scalars(select(AuditLog).order_by(AuditLog.id))).all())


# --- Remnawave --------------------------------------------------------------------------------------------------


async def test_signed_remnawave_event_updates_the_account_and_audits(
    client: httpx.AsyncClient, db: AsyncSession, env: Env
) -> None:
    response = await send_signed(client, env.remnawave, remnawave_body("user.expired", user_data(status="EXPIRED")))

    assert response.status_code == 200, response.text
    assert response.json() == {"received": 1, "changed": 1, "ignored": False}
    assert (await reload(db, env.account)).status == "expired"
    # The Marzban server's account of the same name is another panel's: untouched.
    assert (await reload(db, env.marzban_account)).status == "active"
    [row] = await audit_rows(db)
    assert (row.actor_type, row.actor_id, row.action) == ("panel", str(env.remnawave.id), "panel.user.expired")
    assert (row.entity_type, row.entity_id) == ("vpn_account", str(env.account.id))
    assert (row.before, row.after) == ({"status": "active"}, {"status": "expired"})


async def test_repeated_event_changes_nothing_the_second_time(
    client: httpx.AsyncClient, db: AsyncSession, env: Env
) -> None:
    body = remnawave_body("user.limited", user_data(status="LIMITED"))
    assert (await send_signed(client, env.remnawave, body)).json()["changed"] == 1
    again = await send_signed(client, env.remnawave, body)
    assert again.json() == {"received": 1, "changed": 0, "ignored": False}
    assert (await reload(db, env.account)).status == "limited"
    assert len(await audit_rows(db)) == 1


async def test_disable_enable_and_first_connection(client: httpx.AsyncClient, db: AsyncSession, env: Env) -> None:
    await send_signed(client, env.remnawave, remnawave_body("user.disabled", user_data(status="DISABLED")))
    assert (await reload(db, env.account)).status == "disabled"
    await send_signed(client, env.remnawave, remnawave_body("user.enabled", user_data()))
    assert (await reload(db, env.account)).status == "active"

    connected = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    body = remnawave_body("user.first_connected", user_data(firstConnectedAt=_iso(connected)))
    assert (await send_signed(client, env.remnawave, body)).status_code == 200
    assert (await reload(db, env.account)).online_at == connected
    actions = [row.action for row in await audit_rows(db)]
    assert actions == ["panel.user.disabled", "panel.user.enabled", "panel.user.first_connected"]


async def test_node_events_create_the_node_and_track_its_state(
    client: httpx.AsyncClient, db: AsyncSession, env: Env
) -> None:
    lost_at = utcnow() - timedelta(minutes=2)
    lost = remnawave_body("node.connection_lost", node_data(isConnected=False, lastStatusChange=_iso(lost_at)))
    assert (await send_signed(client, env.remnawave, lost)).json()["changed"] == 1
    await fresh(db)
    node = await db.scalar(select(Node).where(Node.server_id == env.remnawave.id))
    assert node is not None
    assert (node.external_id, node.name, node.address, node.port) == (
        "c0ffee00-0000-4000-8000-000000000001",
        "Amsterdam-1",
        "203.0.113.7",
        2222,
    )
    node_id = node.id
    assert node.is_online is False
    assert node.status_changed_at is not None and abs(node.status_changed_at - lost_at) < timedelta(milliseconds=1)

    restored = remnawave_body("node.connection_restored", node_data(lastStatusChange=_iso(utcnow())))
    assert (await send_signed(client, env.remnawave, restored)).json()["changed"] == 1
    # A late retry of the older "lost" event must not take the node offline again.
    assert (await send_signed(client, env.remnawave, lost)).json()["changed"] == 0
    await fresh(db)
    node = await db.get(Node, node_id)
    assert node is not None and node.is_online is True
    rows = await audit_rows(db)
    assert [(r.action, r.entity_type, r.after) for r in rows] == [
        ("panel.node.connection_lost", "node", {"is_online": False, "is_enabled": True}),
        ("panel.node.connection_restored", "node", {"is_online": True}),
    ]
    assert {r.actor_type for r in rows} == {"panel"}


async def test_unknown_event_and_unknown_user_are_acknowledged_and_ignored(
    client: httpx.AsyncClient, db: AsyncSession, env: Env
) -> None:
    body = remnawave_body("service.panel_started", {"panelVersion": "2.7.4"})
    response = await send_signed(client, env.remnawave, body)
    assert response.status_code == 200
    assert response.json()["ignored"] is True

    stranger = remnawave_body("user.expired", user_data(username="made_by_hand", status="EXPIRED"))
    assert (await send_signed(client, env.remnawave, stranger)).json()["ignored"] is True
    assert await audit_rows(db) == []


@pytest.mark.parametrize(
    "case",
    ["wrong signature", "missing signature", "body altered", "other secret", "stale timestamp", "future timestamp"],
)
async def test_refused_remnawave_requests_change_nothing(
    client: httpx.AsyncClient, db: AsyncSession, env: Env, case: str
) -> None:
    body = remnawave_body("user.expired", user_data(status="EXPIRED"))
    signature: str | None = sign(body)
    timestamp: str | None = json.loads(body)["timestamp"]
    if case == "wrong signature":
        signature = "0" * 64
    elif case == "missing signature":
        signature = None
    elif case == "body altered":
        body = body.replace(USERNAME.encode(), b"vs000002")
    elif case == "other secret":
        signature = sign(body, "another-secret-another-secret-another")
    else:
        moment = utcnow() + (timedelta(minutes=-6) if case == "stale timestamp" else timedelta(minutes=6))
        body = remnawave_body("user.expired", user_data(status="EXPIRED"), at=moment)
        signature, timestamp = sign(body), _iso(moment)

    response = await post_remnawave(client, env.remnawave, body, signature=signature, timestamp=timestamp)

    assert response.status_code == 401, response.text
    assert (await reload(db, env.account)).status == "active"
    assert await audit_rows(db) == []


async def test_a_replayed_body_with_a_fresh_header_is_refused(
    client: httpx.AsyncClient, db: AsyncSession, env: Env
) -> None:
    # The header is not signed; the timestamp inside the signed body is, and gives the replay away.
    old = remnawave_body("user.expired", user_data(status="EXPIRED"), at=utcnow() - timedelta(hours=1))
    response = await post_remnawave(client, env.remnawave, old, signature=sign(old), timestamp=_iso(utcnow()))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "stale_event"
    assert (await reload(db, env.account)).status == "active"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"event": "user.expired",', "not valid JSON"),
        (b"\xff\xfe\x00", "not valid JSON"),
        (b"[]", "the body must be a JSON object"),
        (b'{"scope":"user","data":{}}', "'event' must be a non-empty string"),
        (b'{"event":"user.expired","data":{"status":"EXPIRED"}}', "user.expired: data: 'username' must be"),
        (b'{"event":"user.modified","data":{"username":"vs000001","status":"GONE"}}', "data.status must be one of"),
        (b'{"event":"node.connection_lost","data":["x"]}', "node.connection_lost: data must be a JSON object"),
    ],
)
async def test_malformed_remnawave_bodies_are_400_with_the_reason(
    client: httpx.AsyncClient, db: AsyncSession, env: Env, body: bytes, message: str
) -> None:
    response = await post_remnawave(client, env.remnawave, body, signature=sign(body))
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]["message"]
    assert (await reload(db, env.account)).status == "active"
    assert await audit_rows(db) == []


# --- Marzban ----------------------------------------------------------------------------------------------------


def marzban_item(action: str, username: str = USERNAME, **user: Any) -> dict[str, Any]:
    return {
        "action": action,
        "username": username,
        "user": {"username": username, "status": "active", "online_at": None, "sub_updated_at": None, **user},
        "by": {"username": "admin", "is_sudo": True},
        "enqueued_at": 1767000000.5,
        "send_at": 1767000030.5,
        "tries": 0,
    }


async def post_marzban(client: httpx.AsyncClient, server: Server, payload: Any, secret: str | None) -> httpx.Response:
    headers = {"x-webhook-secret": secret} if secret is not None else {}
    return await client.post(f"/api/panels/webhook/{server.id}", json=payload, headers=headers)


async def test_marzban_batch_is_applied_in_order(client: httpx.AsyncClient, db: AsyncSession, env: Env) -> None:
    online = "2026-01-05T10:00:00.123456"  # Marzban: naive UTC
    fetched = "2026-01-05T09:30:00"
    batch = [
        marzban_item("user_limited", status="limited", online_at=online, sub_updated_at=fetched),
        marzban_item("reached_days_left", status="limited"),
        marzban_item("user_expired", username="someone_else", status="expired"),
    ]
    response = await post_marzban(client, env.marzban, batch, MARZBAN_SECRET)

    assert response.status_code == 200, response.text
    assert response.json() == {"received": 3, "changed": 1, "ignored": False}
    account = await reload(db, env.marzban_account)
    assert account.status == "limited"
    assert account.online_at == datetime(2026, 1, 5, 10, 0, 0, 123456, tzinfo=UTC)
    assert account.sub_updated_at == datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
    assert (await reload(db, env.account)).status == "active"  # same name, other server
    [row] = await audit_rows(db)
    assert (row.actor_type, row.actor_id, row.action) == ("panel", str(env.marzban.id), "panel.user_limited")
    assert row.after == {
        "status": "limited",
        "online_at": "2026-01-05T10:00:00.123456+00:00",
        "sub_updated_at": "2026-01-05T09:30:00+00:00",
    }


async def test_marzban_snapshot_events_follow_the_user_status(
    client: httpx.AsyncClient, db: AsyncSession, env: Env
) -> None:
    batch = [marzban_item("user_disabled", status="disabled"), marzban_item("user_updated", status="on_hold")]
    assert (await post_marzban(client, env.marzban, batch, MARZBAN_SECRET)).json()["changed"] == 2
    assert (await reload(db, env.marzban_account)).status == "on_hold"


@pytest.mark.parametrize("secret", ["wrong", None, MARZBAN_SECRET + "x", "ключ"])
async def test_marzban_wrong_secret_is_401(
    client: httpx.AsyncClient, db: AsyncSession, env: Env, secret: str | None
) -> None:
    headers = {"x-webhook-secret": secret.encode()} if secret else {}
    response = await client.post(
        f"/api/panels/webhook/{env.marzban.id}", json=[marzban_item("user_expired")], headers=headers
    )
    assert response.status_code == 401
    assert (await reload(db, env.marzban_account)).status == "active"
    assert await audit_rows(db) == []


async def test_marzban_bad_item_refuses_the_whole_batch(client: httpx.AsyncClient, db: AsyncSession, env: Env) -> None:
    batch = [marzban_item("user_expired"), {"username": USERNAME}]
    response = await post_marzban(client, env.marzban, batch, MARZBAN_SECRET)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "item 1: 'action' must be a non-empty string"
    assert (await reload(db, env.marzban_account)).status == "active"

    single = await post_marzban(client, env.marzban, marzban_item("user_expired"), MARZBAN_SECRET)
    assert single.status_code == 400
    assert "JSON array" in single.json()["error"]["message"]


async def test_marzban_unknown_actions_are_ignored(client: httpx.AsyncClient, env: Env) -> None:
    response = await post_marzban(client, env.marzban, [marzban_item("reached_usage_percent")], MARZBAN_SECRET)
    assert response.status_code == 200
    assert response.json() == {"received": 1, "changed": 0, "ignored": True}


# --- which servers answer ---------------------------------------------------------------------------------------


async def test_unknown_unconfigured_and_demo_servers_are_404(
    client: httpx.AsyncClient, db: AsyncSession, env: Env
) -> None:
    bare = await _server(db, "bare", PanelKind.REMNAWAVE, None)
    demo = await _server(db, "demo", PanelKind.DEMO, SECRET)
    await db.commit()
    body = remnawave_body("user.expired", user_data(status="EXPIRED"))
    for server_id in (env.remnawave.id + 1000, bare.id, demo.id):
        response = await client.post(
            f"/api/panels/webhook/{server_id}", content=body, headers={"x-remnawave-signature": sign(body)}
        )
        assert response.status_code == 404, (server_id, response.text)
    assert await db.scalar(select(func.count()).select_from(AuditLog)) == 0


# --- deleted on the panel by hand -------------------------------------------------------------------------------


async def staff_alerts(db: AsyncSession) -> list[dict[str, Any]]:
    await fresh(db)
    rows = await db.scalars(select(OutboxMessage).where(OutboxMessage.topic == STAFF_TOPIC))
    return [row.payload for row in rows]


async def test_remnawave_user_deleted_marks_the_account_and_tells_staff(
    client: httpx.AsyncClient, db: AsyncSession, env: Env
) -> None:
    account_id = env.account.id
    body = remnawave_body("user.deleted", user_data())
    assert (await send_signed(client, env.remnawave, body)).json() == {"received": 1, "changed": 1, "ignored": False}
    again = remnawave_body("user.deleted", user_data(), at=utcnow() + timedelta(seconds=1))
    assert (await send_signed(client, env.remnawave, again)).json()["changed"] == 0

    account = await reload(db, env.account)
    assert (account.status, account.panel_id) == (DELETED_ON_PANEL, None)
    user_id = account.user_id
    [alert] = await staff_alerts(db)
    assert alert["kind"] == "panel_account_deleted"
    assert alert["data"] == {"server": "rw", "name": USERNAME, "account": account_id, "user": user_id}
    [row] = await audit_rows(db)
    assert (row.action, row.after) == ("panel.user.deleted", {"status": DELETED_ON_PANEL})


async def test_marzban_user_deleted_marks_the_account(client: httpx.AsyncClient, db: AsyncSession, env: Env) -> None:
    item = {"action": "user_deleted", "username": USERNAME, "by": {"username": "admin"}}
    assert (await post_marzban(client, env.marzban, [item], MARZBAN_SECRET)).json()["changed"] == 1
    assert (await reload(db, env.marzban_account)).status == DELETED_ON_PANEL
    assert (await reload(db, env.account)).status == "active"  # same name, other server


async def test_a_deleted_same_name_account_that_is_not_ours_is_ignored(
    client: httpx.AsyncClient, db: AsyncSession, env: Env
) -> None:
    ours = "0b8f7d62-3c1a-4e51-9d7b-2f5a8c1e3a6f"
    await db.execute(update(VpnAccount).where(VpnAccount.id == env.account.id).values(panel_id=ours))
    await db.commit()
    body = remnawave_body("user.deleted", user_data())  # another uuid under our name
    assert (await send_signed(client, env.remnawave, body)).json() == {"received": 1, "changed": 0, "ignored": True}
    assert (await reload(db, env.account)).status == "active"
    assert await staff_alerts(db) == []


async def test_events_of_a_same_name_account_with_another_panel_id_are_ignored(
    client: httpx.AsyncClient, db: AsyncSession, env: Env
) -> None:
    ours = "0b8f7d62-3c1a-4e51-9d7b-2f5a8c1e3a6f"
    await db.execute(update(VpnAccount).where(VpnAccount.id == env.account.id).values(panel_id=ours))
    await db.commit()
    body = remnawave_body("user.expired", user_data(status="EXPIRED"))  # user_data's uuid is not ours
    assert (await send_signed(client, env.remnawave, body)).json() == {"received": 1, "changed": 0, "ignored": True}
    assert (await reload(db, env.account)).status == "active"


async def test_a_body_over_the_cap_is_refused_unread_and_changes_nothing(
    client: httpx.AsyncClient, db: AsyncSession, env: Env
) -> None:
    event = json.loads(remnawave_body("user.expired", user_data(status="EXPIRED")))
    event["data"]["description"] = "x" * MAX_WEBHOOK_BODY_BYTES  # signed, valid JSON, and too large
    body = json.dumps(event).encode()

    response = await send_signed(client, env.remnawave, body)

    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"
    assert (await reload(db, env.account)).status == "active" and await audit_rows(db) == []
