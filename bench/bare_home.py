"""The floor of the home page benchmark: the real page's work on a bare stack.

A raw ASGI app (no FastAPI, no Starlette, no middleware, no SQLAlchemy on the request path) served by the same
uvicorn as the real app. Per request it does what `GET /app` does (app/cabinet/pages.py `home` behind
app/auth/dependencies.py `_page_viewer`), and nothing else:

1. counts the request against the per-address limit (`app.throttle.limit_per_ip`), with the app's own Redis
   limiter (`app.kit.ratelimit.RedisRateLimiter`: the same Lua script, keys and limits);
2. verifies `Authorization: tma <initData>` with `app.auth.telegram.verify_init_data` (the app's own, pure
   function: same HMAC, same parsing, same freshness check);
3. reads the user by telegram_id (`upsert_from_telegram`), refuses a blocked one, counts the request against
   the per-customer limit (`app.throttle.limit_per_user`);
4. reads the latest subscription joined with its plan and VPN account (`app.cabinet.service.overview`);
5. builds the same view model (`app.cabinet.service.Overview`, a plain dataclass, over plain objects instead of
   ORM instances) and renders the same template block with the app's own `Templates` helper and the context
   keys of `Templates.response`: `cabinet/home.html`, block `content` plus base.html's out-of-band frame for
   `HX-Request: true` + `HX-Target: content`, the whole page otherwise.

Both queries run on one pooled asyncpg connection with the exact SQL text SQLAlchemy sends for the app (built
once at import from the same models, see USER_SQL and OVERVIEW_SQL), so PostgreSQL parses, plans and returns the
same for both servers. bench/home_page.py checks that the app sends exactly these statements and that both
servers return the same HTML for the same users, in every run including `--smoke`, so a change of the app's
page shows up as a failed check instead of an unfair comparison.

Not mirrored, because the benchmark's state never makes the app do them (and a copy would be one more thing to
keep in step): creating an unknown user, rewriting changed names or a stale last_seen_at (bench/home_page.py
marks everyone seen before each run and counts the users written), and the trial query for a user without a
subscription (every benchmark user has one). The bare page answers 500 where the app would write, so a
benchmark state that made the app write could not pass the sample checks unnoticed.

What it leaves out is what the comparison is about: FastAPI's routing, dependency injection and responses,
Starlette's request objects, the app's middleware (security headers, metrics), SQLAlchemy's session, ORM
instances, transaction (BEGIN/COMMIT) and pool pre-ping.

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
from sqlalchemy import Select, bindparam, false, select
from sqlalchemy.dialects.postgresql import asyncpg as postgresql_asyncpg

from app.auth.telegram import verify_init_data
from app.cabinet.service import Overview
from app.config import Settings
from app.kit.errors import AppError
from app.kit.i18n import Translator
from app.kit.ratelimit import RedisRateLimiter
from app.kit.templating import Templates
from app.models import Plan, Subscription, SubscriptionStatus, User, VpnAccount
from app.stats.activity import is_new_day
from app.throttle import WINDOW_SECONDS
from app.users.service import SEEN_RESOLUTION

log = logging.getLogger("bench.bare_home")

TEMPLATE = "cabinet/home.html"


def _compiled(statement: Select[Any]) -> tuple[str, list[tuple[str | None, str]]]:
    """The SQL text SQLAlchemy's asyncpg dialect sends for `statement`, and the (table, attribute) of each
    selected column, in order. Built once at import: no request of the bare page goes near SQLAlchemy."""
    sql = str(statement.compile(dialect=postgresql_asyncpg.dialect()))
    columns = []
    for column in statement.selected_columns:
        table = getattr(column, "table", None)
        columns.append((table.name if table is not None else None, column.key))
    return sql, columns


# The real page's statements, written as app/users/service.py `upsert_from_telegram` and
# app/cabinet/service.py `overview` write them. The columns come from the models, so a new column does not
# break the comparison; a changed query does (bench/home_page.py compares the text with what the app sends),
# and must be followed here.
USER_SQL, USER_COLUMNS = _compiled(select(User).where(User.telegram_id == bindparam("telegram_id")))
OVERVIEW_SQL, OVERVIEW_COLUMNS = _compiled(
    # `false` where the app has an EXISTS over saved payment methods: the benchmark's app has no payment
    # provider that can renew, and then SQLAlchemy renders the app's has_method() as this constant too.
    select(Subscription, Plan, VpnAccount, false().label("has_renewal_method"))
    .outerjoin(Plan, Plan.id == Subscription.plan_id)
    .outerjoin(VpnAccount, VpnAccount.subscription_id == Subscription.id)
    .where(Subscription.user_id == bindparam("user_id"))
    .order_by(Subscription.ends_at.desc(), Subscription.id.desc())
    .limit(1)
)
USER_FIELDS = [key for _table, key in USER_COLUMNS]


def _span(table: str) -> slice:
    """Where one joined entity's columns are in an overview row."""
    at = [index for index, (name, _key) in enumerate(OVERVIEW_COLUMNS) if name == table]
    return slice(at[0], at[-1] + 1)


ENTITIES = {name: _span(table) for name, table in (("subscription", "subscriptions"), ("plan", "plans"))}
ENTITIES["account"] = _span("vpn_accounts")
FIELDS = {name: [key for _table, key in OVERVIEW_COLUMNS[span]] for name, span in ENTITIES.items()}
RENEWAL_AT = [key for _table, key in OVERVIEW_COLUMNS].index("has_renewal_method")
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


def plain_class(model: type) -> type:
    """A class for plain objects with the model's own methods and properties (`Plan.title`, which the template
    calls) but none of the ORM's instrumentation."""
    members = {
        name: value
        for name, value in vars(model).items()
        if isinstance(value, FunctionType | property) and not name.startswith("__")
    }
    return type(f"Plain{model.__name__}", (SimpleNamespace,), members)


PLAIN = {name: plain_class(model) for name, model in (("subscription", Subscription), ("plan", Plan))}
PLAIN |= {"account": plain_class(VpnAccount), "user": plain_class(User)}


def entity(name: str, values: tuple[Any, ...]) -> SimpleNamespace | None:
    """A plain object for one joined entity, None when the outer join found nothing (as the ORM does)."""
    row = dict(zip(FIELDS[name], values[ENTITIES[name]], strict=True))
    return None if row["id"] is None else PLAIN[name](**row)


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
                    self.templates.env.get_template(TEMPLATE)  # fail at start-up, not on the first request
                    # What the templates read of the settings (base.html: demo_mode).
                    self.settings = SimpleNamespace(demo_mode=False)
                    self.limiter = RedisRateLimiter(config.redis_url)
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
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def limit(self, key: str, per_minute: int) -> None:
        assert self.limiter is not None
        decision = await self.limiter.hit(key, per_minute, WINDOW_SECONDS)
        if not decision.allowed:
            raise Refused(429, b"rate_limited")

    async def handle(self, scope: dict[str, Any], send: Any) -> None:
        if scope["path"] == "/healthz":
            await respond(send, 200, b'{"status":"ok"}', b"application/json")
            return
        config, pool, templates = self.config, self.pool, self.templates
        assert config is not None and pool is not None and templates is not None
        # uvicorn --proxy-headers has put the forwarded address here, as for the app.
        await self.limit(f"req:ip:{scope['client'][0] if scope.get('client') else 'unknown'}", config.per_ip)
        headers = dict(scope["headers"])
        scheme, _, credentials = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
        if scheme.lower() != "tma" or not credentials:
            raise Refused(401, b"not_authenticated")
        now = datetime.now(UTC)
        data = verify_init_data(credentials, config.bot_token, max_age_seconds=config.max_age, now=now)
        tg = data.user
        async with pool.acquire() as connection:
            record = await connection.fetchrow(USER_SQL, tg.id)
            if record is None:
                raise Refused(500, b"bare page: an unknown user (the app would create one)")
            user = PLAIN["user"](**dict(zip(USER_FIELDS, record.values(), strict=True)))
            seen = user.last_seen_at
            if (user.username, user.first_name, user.last_name) != (tg.username, tg.first_name, tg.last_name) or (
                seen is None or is_new_day(seen, now) or now - seen > SEEN_RESOLUTION
            ):
                raise Refused(500, b"bare page: the app would write this user (names or last_seen_at)")
            if user.is_blocked:
                raise Refused(403, b"user_blocked")
            await self.limit(f"req:user:{user.id}", config.per_user)
            row = await connection.fetchrow(OVERVIEW_SQL, user.id, 1)
        if row is None:
            raise Refused(500, b"bare page: no subscription (the app would ask whether the trial is available)")
        values = tuple(row.values())
        subscription, plan, account = (entity(name, values) for name in ("subscription", "plan", "account"))
        subscription.status = SubscriptionStatus(subscription.status)  # type: ignore[union-attr]
        ov = Overview(user, subscription, plan, account, False, now, bool(values[RENEWAL_AT]))  # type: ignore[arg-type]
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
            "ov": ov,
            "trial_days": config.trial_days,
        }
        # As Templates.response: an HTMX request gets the block named by HX-Target (with base.html's frame, out
        # of band, for the content block), others the whole page.
        template = templates.env.get_template(TEMPLATE)
        target = headers.get(b"hx-target", b"").decode("latin-1")
        if headers.get(b"hx-request") == b"true" and target in template.blocks:
            body = templates.render_block(TEMPLATE, target, context)
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
