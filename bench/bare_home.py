"""The floor of the home page benchmark: the real page's work on a bare stack.

A raw ASGI app (no FastAPI, no Starlette, no SQLAlchemy, no middleware) served by the same uvicorn as the real
app. Per request it does what `GET /app` does (app/cabinet/pages.py `home`), and nothing else:

1. verifies `Authorization: tma <initData>` with `app.auth.telegram.verify_init_data` (the app's own, pure
   function: same HMAC, same parsing, same freshness check);
2. runs the real route's two queries on one pooled asyncpg connection, with the SQL text SQLAlchemy sends
   (from `python -m bench.home_page --show-sql`): the user by telegram_id (`upsert_from_telegram`), and the
   latest subscription joined with its plan and VPN account (`app.cabinet.service.overview`). The user's
   conditional write (names changed, or last_seen_at older than 5 minutes) is mirrored too; in the benchmark
   it never fires, for either server. Every benchmark user has a subscription, so the real page's third query
   (`trial_available`, only for users without one) does not run there, and is not mirrored here;
3. builds the same view model (`app.cabinet.service.Overview`, a plain dataclass, over plain objects instead of
   ORM instances) and renders the same template block with the same environment and context keys as
   `app.kit.templating.Templates.response`: `cabinet/home.html`, block `content` for `HX-Request: true` +
   `HX-Target: content`, the whole page otherwise. bench/home_page.py checks that both servers return the same
   HTML for the same users.

What it leaves out is what the comparison is about: FastAPI's routing, dependency injection and responses,
Starlette's request objects, the app's middleware (security headers, metrics), SQLAlchemy's session, ORM
instances, transaction (BEGIN/COMMIT) and pool pre-ping.

Configured by environment variables (bench/home_page.py sets them): BARE_HOME_DATABASE_URL (postgresql://…),
BARE_HOME_BOT_TOKEN, BARE_HOME_POOL_MIN / BARE_HOME_POOL_MAX (the app's DB_POOL_SIZE and
DB_POOL_SIZE + DB_MAX_OVERFLOW), BARE_HOME_TIMEZONE, BARE_HOME_DEFAULT_LANGUAGE, BARE_HOME_TRIAL_DAYS,
BARE_HOME_INIT_DATA_MAX_AGE.

    .venv/bin/python -m uvicorn bench.bare_home:app --loop uvloop --http httptools --workers 2 --port 8001
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from jinja2 import Environment

from app.auth.telegram import verify_init_data
from app.cabinet.service import Overview
from app.kit.errors import AppError
from app.kit.i18n import Translator
from app.kit.templating import create_environment
from app.models import SubscriptionStatus

log = logging.getLogger("bench.bare_home")

TEMPLATE = "cabinet/home.html"
SEEN_RESOLUTION = timedelta(minutes=5)  # as app.users.service.SEEN_RESOLUTION

# The SQL text SQLAlchemy sends for the real page (compare with `bench.home_page --show-sql`), so PostgreSQL
# parses, plans and returns exactly the same for both servers.
USER_SQL = (
    "SELECT users.telegram_id, users.username, users.first_name, users.last_name, users.language, users.timezone,"
    " users.referral_code, users.referrer_id, users.is_blocked, users.block_reason, users.marketing_opt_out,"
    " users.unreachable_since, users.is_demo, users.last_seen_at, users.id, users.updated_at, users.created_at"
    " \nFROM users \nWHERE users.telegram_id = $1::BIGINT"
)
OVERVIEW_SQL = (
    "SELECT subscriptions.user_id, subscriptions.plan_id, subscriptions.status, subscriptions.is_trial,"
    " subscriptions.starts_at, subscriptions.ends_at, subscriptions.auto_renew, subscriptions.renewal_failures,"
    " subscriptions.next_renewal_attempt_at, subscriptions.cancelled_at, subscriptions.id,"
    " subscriptions.updated_at, subscriptions.created_at, plans.code, plans.name, plans.duration_days,"
    " plans.discount_percent, plans.traffic_limit_bytes, plans.device_limit, plans.is_active, plans.sort_order,"
    " plans.features, plans.id AS id_1, plans.updated_at AS updated_at_1, plans.created_at AS created_at_1,"
    " vpn_accounts.user_id AS user_id_1, vpn_accounts.subscription_id, vpn_accounts.server_id,"
    " vpn_accounts.panel_username, vpn_accounts.panel_id, vpn_accounts.status AS status_1,"
    " vpn_accounts.subscription_url_encrypted, vpn_accounts.sub_token, vpn_accounts.device_limit AS device_limit_1,"
    " vpn_accounts.traffic_limit_bytes AS traffic_limit_bytes_1, vpn_accounts.used_traffic_bytes,"
    " vpn_accounts.lifetime_traffic_bytes, vpn_accounts.online_at, vpn_accounts.sub_updated_at,"
    " vpn_accounts.last_synced_at, vpn_accounts.provisioned_at, vpn_accounts.id AS id_2,"
    " vpn_accounts.updated_at AS updated_at_2, vpn_accounts.created_at AS created_at_2 \nFROM subscriptions"
    " LEFT OUTER JOIN plans ON plans.id = subscriptions.plan_id"
    " LEFT OUTER JOIN vpn_accounts ON vpn_accounts.subscription_id = subscriptions.id"
    " \nWHERE subscriptions.user_id = $1::BIGINT ORDER BY subscriptions.ends_at DESC, subscriptions.id DESC"
    " \n LIMIT $2::INTEGER"
)
SEEN_SQL = (
    "UPDATE users SET last_seen_at=$1::TIMESTAMP WITH TIME ZONE, updated_at=$2::TIMESTAMP WITH TIME ZONE"
    " WHERE users.id = $3::BIGINT"
)
NAMES_SQL = (
    "UPDATE users SET username=$1::VARCHAR, first_name=$2::VARCHAR, last_name=$3::VARCHAR,"
    " updated_at=$4::TIMESTAMP WITH TIME ZONE WHERE users.id = $5::BIGINT"
)


def selected(sql: str, table: str) -> list[str]:
    """The columns of `table` in a SELECT list, in order: the attribute names of the entity built from them."""
    return re.findall(rf"\b{table}\.(\w+)", sql.split("FROM", 1)[0])


USER_FIELDS = selected(USER_SQL, "users")
SUBSCRIPTION_FIELDS = selected(OVERVIEW_SQL, "subscriptions")
PLAN_FIELDS = selected(OVERVIEW_SQL, "plans")
ACCOUNT_FIELDS = selected(OVERVIEW_SQL, "vpn_accounts")
_PLAN_AT = len(SUBSCRIPTION_FIELDS)
_ACCOUNT_AT = _PLAN_AT + len(PLAN_FIELDS)


class Config:
    def __init__(self) -> None:
        env = os.environ
        self.database_url = env["BARE_HOME_DATABASE_URL"].replace("postgresql+asyncpg://", "postgresql://")
        self.bot_token = env["BARE_HOME_BOT_TOKEN"]
        self.pool_min = int(env.get("BARE_HOME_POOL_MIN", "10"))
        self.pool_max = int(env.get("BARE_HOME_POOL_MAX", "20"))
        self.zone = ZoneInfo(env.get("BARE_HOME_TIMEZONE", "Europe/Moscow"))
        self.default_language = env.get("BARE_HOME_DEFAULT_LANGUAGE", "ru")
        self.trial_days = int(env.get("BARE_HOME_TRIAL_DAYS", "7"))
        self.max_age = int(env.get("BARE_HOME_INIT_DATA_MAX_AGE", "86400"))


def entity(fields: list[str], values: tuple[Any, ...]) -> SimpleNamespace | None:
    """A plain object for one joined entity, None when the outer join found nothing (as the ORM does)."""
    row = dict(zip(fields, values, strict=True))
    return None if row["id"] is None else SimpleNamespace(**row)


async def _init_connection(connection: asyncpg.Connection) -> None:
    # SQLAlchemy's asyncpg dialect decodes json/jsonb on every connection the same way.
    for name in ("json", "jsonb"):
        await connection.set_type_codec(name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


class BareHome:
    def __init__(self) -> None:
        self.config: Config | None = None
        self.pool: asyncpg.Pool | None = None
        self.env: Environment | None = None
        self.settings: SimpleNamespace | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
        elif scope["type"] == "http":
            try:
                await self.handle(scope, send)
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
                    self.env = create_environment()
                    self.env.get_template(TEMPLATE)  # fail at start-up, not on the first request
                    # What the templates read of the settings (base.html: demo_mode; home.html: trial_days).
                    self.settings = SimpleNamespace(demo_mode=False, trial_days=config.trial_days)
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
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def handle(self, scope: dict[str, Any], send: Any) -> None:
        if scope["path"] == "/healthz":
            await respond(send, 200, b'{"status":"ok"}', b"application/json")
            return
        config, pool, env = self.config, self.pool, self.env
        assert config is not None and pool is not None and env is not None
        headers = dict(scope["headers"])
        scheme, _, credentials = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
        if scheme.lower() != "tma" or not credentials:
            await respond(send, 401, b"not_authenticated", b"text/plain")
            return
        now = datetime.now(UTC)
        data = verify_init_data(credentials, config.bot_token, max_age_seconds=config.max_age, now=now)
        tg = data.user
        async with pool.acquire() as connection:
            record = await connection.fetchrow(USER_SQL, tg.id)
            if record is None:  # the real page creates the user; every user of the benchmark exists
                await respond(send, 404, b"unknown user", b"text/plain")
                return
            user = SimpleNamespace(**dict(zip(USER_FIELDS, record.values(), strict=True)))
            if (user.username, user.first_name, user.last_name) != (tg.username, tg.first_name, tg.last_name):
                user.username, user.first_name, user.last_name = tg.username, tg.first_name, tg.last_name
                await connection.execute(NAMES_SQL, user.username, user.first_name, user.last_name, now, user.id)
            if user.last_seen_at is None or now - user.last_seen_at > SEEN_RESOLUTION:
                user.last_seen_at = now
                await connection.execute(SEEN_SQL, now, now, user.id)
            if user.is_blocked:
                await respond(send, 403, b"user_blocked", b"text/plain")
                return
            row = await connection.fetchrow(OVERVIEW_SQL, user.id, 1)
        subscription = plan = account = None
        if row is not None:
            values = tuple(row.values())
            subscription = entity(SUBSCRIPTION_FIELDS, values[:_PLAN_AT])
            plan = entity(PLAN_FIELDS, values[_PLAN_AT:_ACCOUNT_AT])
            account = entity(ACCOUNT_FIELDS, values[_ACCOUNT_AT:])
            subscription.status = SubscriptionStatus(subscription.status)  # type: ignore[union-attr]
        # Without a subscription the real page asks whether the trial is still available (a third query);
        # no benchmark user is in that case.
        ov = Overview(user, subscription, plan, account, False, now)  # type: ignore[arg-type]
        language = user.language or config.default_language
        context = {
            # Templates.base_context, then the route's context
            "request": None,
            "settings": self.settings,
            "zone": config.zone,
            "viewer": SimpleNamespace(user=user, via="telegram", session=None),
            "csrf_token": "",
            "language": language,
            "_": Translator(language),
            "csp_nonce": secrets.token_urlsafe(16),
            "ov": ov,
        }
        # As Templates.response: an HTMX request gets the block named by HX-Target, others the whole page.
        template = env.get_template(TEMPLATE)
        target = headers.get(b"hx-target", b"").decode("latin-1")
        if headers.get(b"hx-request") == b"true" and target in template.blocks:
            body = "".join(template.blocks[target](template.new_context(context)))
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
