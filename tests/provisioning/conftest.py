"""Provisioning end to end: our database (SQLite and PostgreSQL), the outbox, the real PanelRegistry and the panel
adapters, against Marzban and Remnawave emulators on loopback ports.

`shop` is the shop side: it creates servers, users and subscriptions, calls the provisioning service inside
transactions as the payment and subscription code will, and dispatches the outbox. `panel_env` (and the
`open_env` factory) is the panel side: one emulator with the handful of knobs these tests need, behind one small
interface so most scenarios run against both panel kinds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.types import Message, Receive, Scope, Send

from app.config import Settings
from app.db import create_sessionmaker, transaction
from app.kit.clock import FrozenClock, utcnow
from app.kit.crypto import cipher
from app.kit.http import breaker_for, reset_breakers
from app.models import (
    Node,
    OutboxMessage,
    OutboxStatus,
    PanelKind,
    Server,
    Subscription,
    SubscriptionStatus,
    UsageDaily,
    User,
    VpnAccount,
)
from app.outbox import service as outbox
from app.panels.registry import PanelRegistry, seal_credentials
from app.panels.sync import SyncReport, check_server_health, sync_server_accounts
from app.provisioning import handlers as _handlers  # noqa: F401 - registers the panel topics with the outbox
from app.provisioning import service as provisioning
from tests.emulators.marzban import MarzbanEmulator
from tests.emulators.remnawave import EmuDevice, RemnawaveEmulator
from tests.panels.marzban_fixture import serve_emulator

# --- the panel side ------------------------------------------------------------------------------------------------


class Tap:
    """An emulator behind a tap: hooks see each request first (e.g. to arm a fault for exactly one route), and
    `log` keeps (route, status) of every answer sent, in order."""

    def __init__(self, app: Any, route_of: Callable[[Scope], str]) -> None:
        self.app = app
        self.route_of = route_of
        self.hooks: list[Callable[[Scope], None]] = []
        self.log: list[tuple[str, int]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for hook in list(self.hooks):
            hook(scope)
        route = self.route_of(scope)

        async def logged_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.log.append((route, message["status"]))
            await send(message)

        # Remnawave's "dead host" closes the socket through `send.__self__`, so keep the original reachable.
        logged_send.__self__ = getattr(send, "__self__", None)  # type: ignore[attr-defined]
        await self.app(scope, receive, logged_send)


class PanelEnv:
    """One emulated panel as the tests see it: its knobs and what it really holds (read from the emulator, not
    through our adapter). The counters count requests the panel carried out."""

    kind: PanelKind
    name: str
    credentials: dict[str, Any]
    create_route: str
    revoke_route: str

    def __init__(self, tap: Tap, base_url: str) -> None:
        self.tap = tap
        self.base_url = base_url

    def down(self) -> None:
        self._set_down(True)

    def up(self) -> None:
        """Bring the panel back, and let the circuit breaker's cool-down pass (it runs on the real monotonic
        clock, which the tests do not wait for)."""
        self._set_down(False)
        breaker = breaker_for(urlsplit(self.base_url).netloc)
        if breaker.opened_at is not None:
            breaker.opened_at -= breaker.cooldown

    def has(self, username: str) -> bool:
        return self.user(username) is not None

    def writes(self) -> list[str]:
        """Routes of the account writes the panel answered with success, in order (logins left out)."""
        return [
            route
            for route, status in self.tap.log
            if 200 <= status < 300 and route.split()[0] in {"POST", "PUT", "PATCH", "DELETE"} and "token" not in route
        ]

    def advance(self, seconds: float) -> None:
        """Move the panel's clock along with ours (a panel reading our clock needs nothing)."""

    def review(self) -> None:
        """Run the panel's own periodic status job, if it has one."""

    # What each panel implements.

    def _set_down(self, down: bool) -> None:
        raise NotImplementedError

    def user(self, username: str) -> Any:
        """The emulator's own record of the account, or None."""
        raise NotImplementedError

    def expire_of(self, username: str) -> int | None:
        raise NotImplementedError

    def status_of(self, username: str) -> str:
        raise NotImplementedError

    def limits_of(self, username: str) -> tuple[int | None, int | None]:
        """(traffic limit in bytes, device limit); None is unlimited, or a limit the panel cannot hold."""
        raise NotImplementedError

    def note_of(self, username: str) -> str | None:
        """Where we write our ownership mark: Marzban `note`, Remnawave `description`."""
        raise NotImplementedError

    def traffic_of(self, username: str) -> tuple[int, str]:
        """(used traffic in bytes, reset strategy in our terms: "no_reset" | "month")."""
        raise NotImplementedError

    def panel_id_of(self, username: str) -> str:
        raise NotImplementedError

    def creates(self) -> int:
        raise NotImplementedError

    def deletes(self) -> int:
        raise NotImplementedError

    def revokes(self) -> int:
        raise NotImplementedError

    def set_expiry(self, username: str, when: datetime) -> None:
        raise NotImplementedError

    def disable(self, username: str) -> None:
        raise NotImplementedError

    def remove(self, username: str) -> None:
        raise NotImplementedError

    def add_orphan(self, username: str) -> None:
        raise NotImplementedError

    def record_usage(self, username: str, used: int) -> None:
        raise NotImplementedError

    def add_device(self, username: str, hwid: str) -> None:
        raise NotImplementedError

    def devices_of(self, username: str) -> list[str]:
        raise NotImplementedError

    def link_user(self, url: str) -> str | None:
        """Whose account a subscription URL serves right now; None when the link is dead."""
        raise NotImplementedError

    def add_node(self, name: str, *, online: bool) -> None:
        raise NotImplementedError

    def remove_node(self, name: str) -> None:
        raise NotImplementedError

    def arm_lost_create(self) -> None:
        """The next create is carried out but its answer never reaches us."""
        raise NotImplementedError

    def arm_malformed_update(self, body: bytes) -> None:
        """The next account update is answered 200 with `body` and not carried out."""
        raise NotImplementedError


class MarzbanEnv(PanelEnv):
    kind = PanelKind.MARZBAN
    name = "marzban"
    credentials = {"username": "admin", "password": "admin"}  # noqa: RUF012

    CREATE = create_route = "POST /api/user"
    UPDATE = "PUT /api/user/{username}"
    DELETE = "DELETE /api/user/{username}"
    REVOKE = revoke_route = "POST /api/user/{username}/revoke_sub"

    def __init__(self, emulator: MarzbanEmulator, tap: Tap, base_url: str) -> None:
        super().__init__(tap, base_url)
        self.emulator = emulator
        self.state = emulator.state
        self.state.sub_url_prefix = base_url

    def _set_down(self, down: bool) -> None:
        if down:
            self.state.down("503")
        else:
            self.state.up()

    def user(self, username: str) -> Any:
        return self.state.users.get(username)

    def expire_of(self, username: str) -> int | None:
        return self.state.users.get(username).expire

    def status_of(self, username: str) -> str:
        return self.state.users.get(username).status

    def limits_of(self, username: str) -> tuple[int | None, int | None]:
        return self.state.users.get(username).data_limit, None  # Marzban has no device limits

    def panel_id_of(self, username: str) -> str:
        return username  # Marzban has no other id

    def note_of(self, username: str) -> str | None:
        return self.state.users.get(username).note

    def traffic_of(self, username: str) -> tuple[int, str]:
        user = self.state.users.get(username)
        return user.used_traffic, user.data_limit_reset_strategy

    def creates(self) -> int:
        return self.state.handled[self.CREATE]

    def deletes(self) -> int:
        return self.state.handled[self.DELETE]

    def revokes(self) -> int:
        return self.state.handled[self.REVOKE]

    def set_expiry(self, username: str, when: datetime) -> None:
        self.state.users.get(username).expire = int(when.timestamp())

    def disable(self, username: str) -> None:
        self.state.users.get(username).status = "disabled"

    def remove(self, username: str) -> None:
        self.state.users.remove(username)

    def add_orphan(self, username: str) -> None:
        self.state.add_user(username, expire=int((utcnow() + timedelta(days=10)).timestamp()), note="made by hand")

    def record_usage(self, username: str, used: int) -> None:
        self.state.record_usage(username, used)

    def link_user(self, url: str) -> str | None:
        user = self.state.user_for_subscription(url.rsplit("/", 1)[1])
        return None if user is None else user.username

    def add_node(self, name: str, *, online: bool) -> None:
        self.state.add_node(name, status="connected" if online else "error", message=None if online else "down")

    def remove_node(self, name: str) -> None:
        self.state.nodes = [node for node in self.state.nodes if node["name"] != name]

    def advance(self, seconds: float) -> None:
        self.state.advance(seconds)

    def review(self) -> None:
        self.state.review_users()

    def arm_lost_create(self) -> None:
        self.state.malform_next(route=self.CREATE, handle=True)

    def arm_malformed_update(self, body: bytes) -> None:
        self.state.malform_next(route=self.UPDATE, body=body, handle=False)


class RemnawaveEnv(PanelEnv):
    kind = PanelKind.REMNAWAVE
    name = "remnawave"

    def __init__(self, emulator: RemnawaveEmulator, tap: Tap, base_url: str) -> None:
        super().__init__(tap, base_url)
        self.emulator = emulator
        self.credentials = {"token": emulator.token}
        self._key = "/api/users/{" + emulator.key_name + "}"
        self.create_route = "POST /api/users"
        self.revoke_route = f"POST {self._key}/actions/revoke"

    def _set_down(self, down: bool) -> None:
        self.emulator.faults.down = down  # a dead host: every connection is cut without an answer

    def review(self) -> None:
        self.emulator.review()

    def user(self, username: str) -> Any:
        user_id = self.emulator.by_username.get(username)
        return None if user_id is None else self.emulator.users[user_id]

    def expire_of(self, username: str) -> int | None:
        return int(self.user(username).expire_at.timestamp())

    def status_of(self, username: str) -> str:
        return self.emulator.status_of(self.user(username)).lower()

    def limits_of(self, username: str) -> tuple[int | None, int | None]:
        user = self.user(username)
        return user.traffic_limit_bytes or None, user.hwid_device_limit or None

    def panel_id_of(self, username: str) -> str:
        user = self.user(username)
        return user.uuid if self.emulator.version == "2" else str(user.id)

    def note_of(self, username: str) -> str | None:
        return self.user(username).description

    def traffic_of(self, username: str) -> tuple[int, str]:
        user = self.user(username)
        return user.used_traffic_bytes, user.traffic_limit_strategy.lower()

    def creates(self) -> int:
        return self.emulator.served["POST /api/users"]

    def deletes(self) -> int:
        return self.emulator.served[f"DELETE {self._key}"]

    def revokes(self) -> int:
        return self.emulator.served[f"POST {self._key}/actions/revoke"]

    def set_expiry(self, username: str, when: datetime) -> None:
        self.user(username).expire_at = when

    def disable(self, username: str) -> None:
        self.user(username).disabled = True

    def remove(self, username: str) -> None:
        self.emulator._remove_user(self.user(username))

    def add_orphan(self, username: str) -> None:
        emulator = self.emulator
        emulator._insert_user(
            username, expire_at=emulator.clock() + timedelta(days=10), squads=[emulator.default_squad_uuid]
        )

    def record_usage(self, username: str, used: int) -> None:
        self.emulator.add_traffic(username, used)

    def add_device(self, username: str, hwid: str) -> None:
        self.user(username).devices[hwid] = EmuDevice(hwid, platform="Android")

    def devices_of(self, username: str) -> list[str]:
        return sorted(self.user(username).devices)

    def link_user(self, url: str) -> str | None:
        user_id = self.emulator.by_short_uuid.get(url.rsplit("/", 1)[1])
        return None if user_id is None else self.emulator.users[user_id].username

    def add_node(self, name: str, *, online: bool) -> None:
        self.emulator.add_node(name, f"{name.lower()}.example.com", connected=online)

    def remove_node(self, name: str) -> None:
        self.emulator.nodes = [node for node in self.emulator.nodes if node["name"] != name]

    def arm_lost_create(self) -> None:
        # Faults match paths by prefix, and GET /api/users/by-username/… shares the create's: arm the fault only
        # when the create itself arrives. The panel then creates the user and answers 500.
        def arm(scope: Scope) -> None:
            if scope["method"] == "POST" and scope["path"] == "/api/users":
                self.tap.hooks.remove(arm)
                self.emulator.faults.fail_next(1, 500, path="/api/users", after_handling=True)

        self.tap.hooks.append(arm)


class EnvFactory:
    """Opens emulators on pooled loopback servers; each is unplugged when the test ends."""

    def __init__(self, clock: FrozenClock, stack: ExitStack) -> None:
        self.clock = clock
        self.stack = stack
        self.opened: list[PanelEnv] = []

    def __call__(self, name: str, version: str | None = None) -> PanelEnv:
        env: PanelEnv
        if name == "marzban":
            emulator = MarzbanEmulator(version or "0.7")
            emulator.state.clock_offset = self.clock().timestamp() - datetime.now(UTC).timestamp()
            tap = Tap(emulator, emulator.route_key)
            env = MarzbanEnv(emulator, tap, self.stack.enter_context(serve_emulator(tap)))  # type: ignore[arg-type]
        elif name == "remnawave":
            # The panel reads the same frozen clock as the shop, so "expired" means the same thing on both sides.
            remnawave = RemnawaveEmulator(version or "3", clock=self.clock)  # type: ignore[arg-type]
            tap = Tap(remnawave, lambda scope: f"{scope['method']} {remnawave._route_template(scope)}")
            env = RemnawaveEnv(remnawave, tap, self.stack.enter_context(serve_emulator(tap)))  # type: ignore[arg-type]
            remnawave.self_served(env.base_url)  # subscription links a client (or autodiagnostics) can fetch
        else:
            raise ValueError(name)
        self.opened.append(env)
        return env


# --- the shop side -------------------------------------------------------------------------------------------------


@dataclass
class Shop:
    sessionmaker: async_sessionmaker[AsyncSession]
    settings: Settings
    clock: FrozenClock
    panels: PanelRegistry
    envs: EnvFactory
    ctx: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        resources = SimpleNamespace(sessionmaker=self.sessionmaker, panels=self.panels, settings=self.settings)
        self.ctx = {"resources": resources}

    def travel(self, **delta: float) -> None:
        """Move our clock and every panel's clock forward together."""
        before = self.clock()
        self.clock.advance(**delta)
        for env in self.envs.opened:
            env.advance((self.clock() - before).total_seconds())

    # setup

    async def add_server(self, env: PanelEnv, name: str, *, location: str = "nl", **fields: Any) -> Server:
        async with transaction(self.sessionmaker) as session:
            server = Server(
                name=name,
                panel_kind=env.kind,
                api_url=env.base_url,
                credentials_encrypted=seal_credentials(env.credentials),
                location=location,
                **fields,
            )
            session.add(server)
        return server

    async def add_subscription(self, telegram_id: int, *, days: float = 30) -> Subscription:
        now = utcnow()
        async with transaction(self.sessionmaker) as session:
            user = User(telegram_id=telegram_id, referral_code=f"ref{telegram_id}")
            session.add(user)
            await session.flush()
            subscription = Subscription(
                user_id=user.id, status=SubscriptionStatus.ACTIVE, starts_at=now, ends_at=now + timedelta(days=days)
            )
            session.add(subscription)
        return subscription

    # the provisioning service, each call in its own transaction

    async def ensure(self, subscription_id: int, **options: Any) -> VpnAccount:
        async with transaction(self.sessionmaker) as session:
            subscription = await session.get_one(Subscription, subscription_id)
            return await provisioning.ensure_account(session, subscription, **options)

    async def extend(self, subscription_id: int, ends_at: datetime) -> None:
        async with transaction(self.sessionmaker) as session:
            subscription = await session.get_one(Subscription, subscription_id)
            await provisioning.extend_to(session, subscription, ends_at)

    async def end(self, subscription_id: int) -> None:
        """What the expiry job does at the end date: the subscription ends and the panel must follow."""
        async with transaction(self.sessionmaker) as session:
            subscription = await session.get_one(Subscription, subscription_id)
            subscription.status = SubscriptionStatus.EXPIRED
            await provisioning.sync_subscription(session, subscription)

    async def set_limits(self, account_id: int, *, device_limit: int | None, traffic_limit_bytes: int | None) -> None:
        async with transaction(self.sessionmaker) as session:
            account = await session.get_one(VpnAccount, account_id)
            await provisioning.set_limits(
                session, account, device_limit=device_limit, traffic_limit_bytes=traffic_limit_bytes
            )

    async def revoke(self, account_id: int) -> None:
        async with transaction(self.sessionmaker) as session:
            await provisioning.revoke_and_reissue(session, await session.get_one(VpnAccount, account_id))

    async def reset_traffic(self, account_id: int) -> None:
        async with transaction(self.sessionmaker) as session:
            await provisioning.reset_traffic(session, await session.get_one(VpnAccount, account_id))

    async def delete(self, account_id: int) -> None:
        async with transaction(self.sessionmaker) as session:
            await provisioning.delete_account(session, await session.get_one(VpnAccount, account_id))

    async def move(self, account_id: int, server_id: int) -> None:
        async with transaction(self.sessionmaker) as session:
            account = await session.get_one(VpnAccount, account_id)
            await provisioning.move_account(session, account, await session.get_one(Server, server_id))

    async def dispatch(self) -> dict[str, int]:
        return await outbox.dispatch(self.ctx)

    # jobs

    async def reconcile(self, server_id: int) -> SyncReport:
        server = await self.server(server_id)
        return await sync_server_accounts(self.sessionmaker, server, self.panels.for_server(server))

    async def check_health(self, server_id: int) -> bool:
        server = await self.server(server_id)
        return await check_server_health(self.sessionmaker, server, self.panels.for_server(server))

    # reading our side

    async def _get(self, model: Any, ident: int) -> Any:
        async with self.sessionmaker() as session:
            return await session.get(model, ident)

    async def account(self, account_id: int) -> VpnAccount:
        account = await self._get(VpnAccount, account_id)
        assert account is not None, f"VPN account {account_id} is gone"
        return account

    async def account_or_none(self, account_id: int) -> VpnAccount | None:
        return await self._get(VpnAccount, account_id)

    async def subscription(self, subscription_id: int) -> Subscription:
        return await self._get(Subscription, subscription_id)

    async def server(self, server_id: int) -> Server:
        return await self._get(Server, server_id)

    async def messages(self) -> list[OutboxMessage]:
        async with self.sessionmaker() as session:
            return list((await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))).all())

    async def pending(self) -> list[OutboxMessage]:
        return [message for message in await self.messages() if message.status == OutboxStatus.PENDING]

    async def nodes(self, server_id: int) -> dict[str, Node]:
        async with self.sessionmaker() as session:
            rows = await session.scalars(select(Node).where(Node.server_id == server_id))
            return {node.name: node for node in rows}

    async def usage(self, account_id: int) -> dict[date, int]:
        async with self.sessionmaker() as session:
            rows = await session.scalars(select(UsageDaily).where(UsageDaily.vpn_account_id == account_id))
            return {row.day: row.download_bytes + row.upload_bytes for row in rows}


def subscription_url(account: VpnAccount) -> str:
    assert account.subscription_url_encrypted, "no subscription URL stored"
    return cipher().decrypt(account.subscription_url_encrypted)


def unix(moment: datetime) -> int:
    return int(moment.timestamp())


def outcome(done: int = 0, retry: int = 0, dead: int = 0) -> dict[str, int]:
    return {"done": done, "retry": retry, "dead": dead}


# --- fixtures ------------------------------------------------------------------------------------------------------


@pytest.fixture
def clock(freeze: Callable[[datetime], FrozenClock]) -> FrozenClock:
    return freeze(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture(autouse=True)
def fresh_breakers() -> Iterator[None]:
    """No test inherits another's open circuits (the pooled emulator ports are reused)."""
    reset_breakers()
    yield
    reset_breakers()


@pytest.fixture
def open_env(clock: FrozenClock) -> Iterator[EnvFactory]:
    with ExitStack() as stack:
        yield EnvFactory(clock, stack)


@pytest.fixture(params=["marzban", "remnawave"])
def panel_env(request: pytest.FixtureRequest, open_env: EnvFactory) -> PanelEnv:
    """A Marzban 0.7 or a Remnawave 3.x panel."""
    return open_env(request.param)


@pytest.fixture
async def shop(
    engine: AsyncEngine, db: AsyncSession, settings: Settings, clock: FrozenClock, open_env: EnvFactory
) -> AsyncIterator[Shop]:
    """The shop on a clean database (`db` empties it afterwards), with the real panel registry."""
    sessionmaker = create_sessionmaker(engine)
    panels = PanelRegistry(sessionmaker, settings)
    yield Shop(sessionmaker, settings, clock, panels, open_env)
    await panels.aclose()
