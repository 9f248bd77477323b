"""The floor of the home page benchmark: the real pages' work on a bare stack.

A raw ASGI app (no FastAPI, no Starlette, no middleware, no SQLAlchemy on the request path) served by the same
uvicorn as the real app. Per request it does what the app does for three pages, and nothing else:

1. verifies `Authorization: tma <initData>` with `app.auth.telegram.verify_init_data` (the app's own, pure
   function: same HMAC, same parsing, same freshness check);
2. reads the user by telegram_id (`upsert_from_telegram`), refuses a blocked one, counts the request against
   the per-address and the per-customer limits in one round trip (`app.throttle.limit_per_user`, which these
   pages' `limit_per_ip` leaves the address's hit to), with the app's own Redis limiter
   (`app.kit.ratelimit.RedisRateLimiter`: the same Lua script, keys and limits) — app/auth/dependencies.py
   `_viewer`; a request without credentials is counted against its address alone (`count_the_address`);
3. then, by page:
   - `/app` (app/cabinet/pages.py `home`): the latest subscription joined with its plan and VPN account
     (`app.cabinet.service.overview`), the same view model (`Overview`, a plain dataclass, over plain objects
     instead of ORM instances), `cabinet/home.html`;
   - `/api/me` (app/cabinet/api.py `me`): the same query and view model, answered with the app's own response
     model (`_me`) as JSON;
   - `/app/connect` (app/connect/pages.py `connect_page`; `/app/config` only redirects there): the live
     subscription with its account and server (`app.connect.service.connection_for`), the link, its QR code
     (the app's `QrCodes`: kept in Redis by the link, drawn when missing) and the client apps, `connect/index.html`;
   pages are rendered with the app's own `Templates` helper and the context keys of `Templates.response`: for
   `HX-Request: true` + `HX-Target: content` the block `content` plus base.html's out-of-band frame, the whole
   page otherwise.

The queries run on one pooled asyncpg connection with the exact SQL text SQLAlchemy sends for the app (built
once at import from the same models, see STATEMENTS), so PostgreSQL parses, plans and returns the same for both
servers. bench/home_page.py checks that the app sends exactly these statements and that both servers return the
same HTML (the same JSON) for the same users, in every run including `--smoke`, so a change of the app's pages
shows up as a failed check instead of an unfair comparison.

Not mirrored, because the benchmark's state never makes the app do them (and a copy would be one more thing to
keep in step): creating an unknown user, rewriting changed names or a stale last_seen_at (bench/home_page.py
marks everyone seen before each run and counts the users written), and the trial query for a user without a
subscription (every benchmark user has one). The bare page answers 500 where the app would write, so a
benchmark state that made the app write could not pass the sample checks unnoticed.

What it leaves out is what the comparison is about: FastAPI's routing, dependency injection and responses,
Starlette's request objects, the app's middleware (security headers, metrics), SQLAlchemy's session, ORM
instances and pool (the app sends no BEGIN/COMMIT for a page that only reads, and pings only idle connections).

Configured by environment variables (bench/home_page.py sets them): BARE_HOME_DATABASE_URL (postgresql://…),
BARE_HOME_REDIS_URL, BARE_HOME_BOT_TOKEN, BARE_HOME_POOL_MIN / BARE_HOME_POOL_MAX (the app's DB_POOL_SIZE and
DB_POOL_SIZE + DB_MAX_OVERFLOW); the time zone, trial days, initData age and request limits are the app's
defaults (`app.config.Settings`), which bench/home_page.py leaves the app.

    .venv/bin/python -m uvicorn bench.bare_home:app --loop uvloop --http httptools --workers 2 --port 8001
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from datetime import UTC, datetime
from types import FunctionType, SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from redis.asyncio import Redis
from sqlalchemy import BigInteger, Select, bindparam, false, select
from sqlalchemy.dialects.postgresql import asyncpg as postgresql_asyncpg

from app.auth.telegram import verify_init_data
from app.cabinet.api import _me
from app.cabinet.service import Overview
from app.config import Settings
from app.connect.clients import PLATFORM_GUIDES, clients_for, detect_platform
from app.connect.qr import QrCodes
from app.connect.service import Connection
from app.kit.errors import AppError
from app.kit.i18n import Translator
from app.kit.ratelimit import RedisRateLimiter
from app.kit.templating import Templates
from app.models import LIVE_STATUSES, Plan, Server, Subscription, SubscriptionStatus, User, VpnAccount
from app.stats.activity import is_new_day
from app.throttle import WINDOW_SECONDS
from app.users.service import SEEN_RESOLUTION

log = logging.getLogger("bench.bare_home")


class Query:
    """One of the app's statements as SQLAlchemy's asyncpg dialect sends it, compiled once at import (no request
    of the bare page goes near SQLAlchemy), and the (table, attribute) of each selected column in order."""

    def __init__(self, statement: Select[Any]) -> None:
        compiled = statement.compile(dialect=postgresql_asyncpg.dialect(), compile_kwargs={"render_postcompile": True})
        self.sql = str(compiled)
        self.columns = []
        for column in statement.selected_columns:
            table = getattr(column, "table", None)
            self.columns.append((table.name if table is not None else None, column.key))
        # The parameters in the order sent: the user's id where it goes, the statement's own values (a LIMIT, the
        # statuses of an IN list) elsewhere.
        self.parameters = [(name, compiled.params[name]) for name in compiled.positiontup or []]

    def arguments(self, user_id: int) -> list[Any]:
        return [user_id if name == "user_id" else value for name, value in self.parameters]

    def entity(self, table: str, values: tuple[Any, ...]) -> SimpleNamespace | None:
        """A plain object for one selected entity, None when an outer join found nothing (as the ORM does)."""
        row = {key: value for (name, key), value in zip(self.columns, values, strict=True) if name == table}
        return None if row["id"] is None else PLAIN[table](**row)

    def value(self, key: str, values: tuple[Any, ...]) -> Any:
        """A selected column that belongs to no entity (a label)."""
        return values[self.columns.index((None, key))]


def plain_class(model: type) -> type:
    """A class for plain objects with the model's own methods and properties (`Plan.title`, which the template
    calls) but none of the ORM's instrumentation."""
    members = {
        name: value
        for name, value in vars(model).items()
        if isinstance(value, FunctionType | property) and not name.startswith("__")
    }
    return type(f"Plain{model.__name__}", (SimpleNamespace,), members)


PLAIN = {model.__tablename__: plain_class(model) for model in (User, Subscription, Plan, VpnAccount, Server)}
USER_ID = bindparam("user_id", 0, type_=BigInteger)

# The app's statements, written as the app writes them. The columns come from the models, so a new column does
# not break the comparison; a changed query does (bench/home_page.py compares the text with what the app sends),
# and must be followed here.
# app/users/service.py `upsert_from_telegram`: the user by Telegram id.
USER = Query(select(User).where(User.telegram_id == bindparam("telegram_id", 0, type_=BigInteger)))
# app/cabinet/service.py `overview`: the latest subscription with its plan and VPN account. `false` where the app
# has an EXISTS over saved payment methods: the benchmark's app has no payment provider that can renew, and then
# SQLAlchemy renders the app's has_method() as this constant too.
OVERVIEW = Query(
    select(Subscription, Plan, VpnAccount, false().label("has_renewal_method"))
    .outerjoin(Plan, Plan.id == Subscription.plan_id)
    .outerjoin(VpnAccount, VpnAccount.subscription_id == Subscription.id)
    .where(Subscription.user_id == USER_ID)
    .order_by(Subscription.ends_at.desc(), Subscription.id.desc())
    .limit(1)
)
# app/connect/service.py `connection_for`: the live subscription with its account and server.
CONNECTION = Query(
    select(Subscription, VpnAccount, Server)
    .join(VpnAccount, VpnAccount.subscription_id == Subscription.id)
    .join(Server, Server.id == VpnAccount.server_id)
    .where(Subscription.user_id == USER_ID, Subscription.status.in_(LIVE_STATUSES))
    .order_by(Subscription.ends_at.desc())
    .limit(1)
)
USER_SQL, OVERVIEW_SQL = USER.sql, OVERVIEW.sql
# The statements each page sends for a benchmark user, in order (bench/home_page.py checks them against the app's).
STATEMENTS = {
    "/app": [USER.sql, OVERVIEW.sql],
    "/api/me": [USER.sql, OVERVIEW.sql],
    "/app/connect": [USER.sql, CONNECTION.sql],
}
DEFAULTS = {name: field.default for name, field in Settings.model_fields.items()}


class Config:
    def __init__(self) -> None:
        env = os.environ
        self.database_url = env["BARE_HOME_DATABASE_URL"].replace("postgresql+asyncpg://", "postgresql://")
        self.redis_url = env["BARE_HOME_REDIS_URL"]
        self.bot_token = env["BARE_HOME_BOT_TOKEN"]
        self.pool_min = int(env.get("BARE_HOME_POOL_MIN", "10"))
        self.pool_max = int(env.get("BARE_HOME_POOL_MAX", "20"))
        self.zone = ZoneInfo(DEFAULTS["timezone"])
        self.trial_days = DEFAULTS["trial_days"]
        self.max_age = DEFAULTS["init_data_max_age_seconds"]
        self.per_ip = DEFAULTS["rate_limit_per_ip_per_minute"]
        self.per_user = DEFAULTS["rate_limit_per_user_per_minute"]
        self.public_base_url = env["BARE_HOME_PUBLIC_BASE_URL"]


async def _init_connection(connection: asyncpg.Connection) -> None:
    # SQLAlchemy's asyncpg dialect decodes json/jsonb on every connection the same way.
    for name in ("json", "jsonb"):
        await connection.set_type_codec(name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


class Refused(Exception):
    def __init__(self, status: int, body: bytes) -> None:
        self.status, self.body = status, body


class BareHome:
    def __init__(self) -> None:
        self.config: Config | None = None
        self.pool: asyncpg.Pool | None = None
        self.limiter: RedisRateLimiter | None = None
        self.redis: Redis | None = None
        self.qr_codes: QrCodes | None = None
        self.templates: Templates | None = None
        self.settings: SimpleNamespace | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
        elif scope["type"] == "http":
            try:
                await self.handle(scope, send)
            except Refused as exc:
                await respond(send, exc.status, exc.body, b"text/plain")
            except AppError as exc:
                await respond(send, exc.status_code, f"{exc.code}: {exc.message}".encode(), b"text/plain")
            except Exception:
                log.exception("bare home page failed")
                await respond(send, 500, b"internal error", b"text/plain")

    async def lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    config = self.config = Config()
                    self.templates = Templates()  # as app/main.py, outside debug (no auto-reload)
                    for name in ("cabinet/home.html", "connect/index.html"):  # fail at start-up, not on a request
                        self.templates.env.get_template(name)
                    # What the templates read of the settings (base.html: demo_mode).
                    self.settings = SimpleNamespace(demo_mode=False)
                    self.limiter = RedisRateLimiter(config.redis_url)
                    self.redis = Redis.from_url(config.redis_url, socket_timeout=5, socket_connect_timeout=2)
                    self.qr_codes = QrCodes(self.redis)  # as app/resources.py
                    self.pool = await asyncpg.create_pool(
                        config.database_url,
                        min_size=config.pool_min,
                        max_size=config.pool_max,
                        init=_init_connection,
                    )
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.pool is not None:
                    await self.pool.close()
                if self.limiter is not None:
                    await self.limiter.aclose()
                if self.redis is not None:
                    await self.redis.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def limit(self, *limits: tuple[str, int]) -> None:
        assert self.limiter is not None
        decision = await self.limiter.hit_all(limits, WINDOW_SECONDS)
        if not decision.allowed:
            raise Refused(429, b"rate_limited")

    async def handle(self, scope: dict[str, Any], send: Any) -> None:
        path = scope["path"]
        if path == "/healthz":
            await respond(send, 200, b'{"status":"ok"}', b"application/json")
            return
        if path not in STATEMENTS:
            raise Refused(404, b"not_found")
        config, pool = self.config, self.pool
        assert config is not None and pool is not None
        # uvicorn --proxy-headers has put the forwarded address here, as for the app.
        per_address = (f"req:ip:{scope['client'][0] if scope.get('client') else 'unknown'}", config.per_ip)
        headers = dict(scope["headers"])
        scheme, _, credentials = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
        if scheme.lower() != "tma" or not credentials:
            await self.limit(per_address)
            raise Refused(401, b"not_authenticated")
        now = datetime.now(UTC)
        try:
            data = verify_init_data(credentials, config.bot_token, max_age_seconds=config.max_age, now=now)
        except AppError:
            await self.limit(per_address)
            raise
        tg = data.user
        async with pool.acquire() as connection:
            record = await connection.fetchrow(USER.sql, tg.id)
            if record is None:
                raise Refused(500, b"bare page: an unknown user (the app would create one)")
            user = USER.entity("users", tuple(record.values()))
            assert user is not None
            seen = user.last_seen_at
            if (user.username, user.first_name, user.last_name) != (tg.username, tg.first_name, tg.last_name) or (
                seen is None or is_new_day(seen, now) or now - seen > SEEN_RESOLUTION
            ):
                raise Refused(500, b"bare page: the app would write this user (names or last_seen_at)")
            if user.is_blocked:
                await self.limit(per_address)  # as the app's `_viewer`: counted against its address alone
                raise Refused(403, b"user_blocked")
            await self.limit(per_address, (f"req:user:{user.id}", config.per_user))
            query = CONNECTION if path == "/app/connect" else OVERVIEW
            row = await connection.fetchrow(query.sql, *query.arguments(user.id))
        values = tuple(row.values()) if row is not None else None
        if path == "/app/connect":
            await self.connect_page(send, headers, user, values)
            return
        if values is None:
            raise Refused(500, b"bare page: no subscription (the app would ask whether the trial is available)")
        subscription, plan, account = (
            OVERVIEW.entity(table, values) for table in ("subscriptions", "plans", "vpn_accounts")
        )
        subscription.status = SubscriptionStatus(subscription.status)  # type: ignore[union-attr]
        ov = Overview(user, subscription, plan, account, False, now, bool(OVERVIEW.value("has_renewal_method", values)))  # type: ignore[arg-type]
        if path == "/api/me":
            # app/cabinet/api.py `me`: the app's own response model, serialized as FastAPI does for a route.
            await respond(send, 200, _me(ov, config.public_base_url).model_dump_json().encode(), b"application/json")
            return
        await self.render(send, headers, "cabinet/home.html", user, {"ov": ov, "trial_days": config.trial_days})

    async def connect_page(
        self,
        send: Any,
        headers: dict[bytes, bytes],
        user: SimpleNamespace,
        values: tuple[Any, ...] | None,
    ) -> None:
        """app/connect/pages.py `_page`: the link, its QR code, the platforms and client apps."""
        config, qr_codes = self.config, self.qr_codes
        assert config is not None and qr_codes is not None
        context: dict[str, Any] = {"connection": None}
        if values is not None:
            connection = Connection(
                *(CONNECTION.entity(table, values) for table in ("subscriptions", "vpn_accounts", "servers"))
            )  # type: ignore[arg-type]
            connection.subscription.status = SubscriptionStatus(connection.subscription.status)
            link = connection.link(config.public_base_url)
            platform = detect_platform(headers.get(b"user-agent", b"").decode("latin-1") or None)
            context = {
                "connection": connection,
                "link": link,
                "qr": await qr_codes.svg(link, title=link),
                "platform_guides": PLATFORM_GUIDES,
                "current_platform": platform,
                "first_choice": next((client for client in clients_for(platform) if client.link), None),
                "bridge": f"{config.public_base_url}/connect/{connection.account.sub_token}/",
            }
        await self.render(send, headers, "connect/index.html", user, context)

    async def render(
        self, send: Any, headers: dict[bytes, bytes], name: str, user: SimpleNamespace, page: dict[str, Any]
    ) -> None:
        config, templates = self.config, self.templates
        assert config is not None and templates is not None
        language = user.language
        context = {
            # Templates.base_context, then the route's context
            "request": None,
            "settings": self.settings,
            "zone": config.zone,
            "viewer": SimpleNamespace(user=user, via="telegram", session=None),
            "csrf_token": "",
            "language": language,
            "_": Translator(language, config.zone),
            "csp_nonce": secrets.token_urlsafe(16),
            **page,
        }
        # As Templates.response: an HTMX request gets the block named by HX-Target (with base.html's frame, out
        # of band, for the content block), others the whole page.
        template = templates.env.get_template(name)
        target = headers.get(b"hx-target", b"").decode("latin-1")
        if headers.get(b"hx-request") == b"true" and target in template.blocks:
            body = templates.render_block(name, target, context)
            if target == "content":
                body += templates.render_frame(template, context)
        else:
            body = template.render(context)
        await respond(send, 200, body.encode(), b"text/html; charset=utf-8")


async def respond(send: Any, status: int, body: bytes, content_type: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


app = BareHome()
