"""Home page benchmark: the authenticated home page on PostgreSQL with 10,000 users, 64 concurrent connections.

    .venv/bin/python -m bench.home_page [--path /app,/api/me,/app/connect] [--users 10000] [--workers 2,1]
                                        [--duration 20] [--rounds 1] [--breakdown] [--profile] [--show-sql]
                                        [--keep-db]
                                        [--smoke] [--json PATH]

It creates a throwaway database (vpnshop_bench_home_<random>), migrates it with the project's migrations and
seeds a population (bulk INSERTs, then VACUUM ANALYZE): N users, each with a subscription (20 % trial, 60 % active on a
paid plan, a third of those with an older, ended subscription too, 20 % expired), a VPN account on a demo
server and a week of daily usage.

Then, for each uvicorn configuration (`--workers`), one after the other, two servers are started side by side,
each by uvicorn in its own process group:
- the app (`app.main:create_app`, production settings: PostgreSQL, Redis, BOT_TOKEN, no demo mode, warnings
  only, no access log), and
- the bare floor (bench/bare_home.py: raw ASGI + asyncpg + Jinja2 doing the same request limits, initData
  check, SQL and template block);
and each page (`--path`: one or several, comma-separated: /app, /api/me, /app/connect) is checked, warmed up and
measured with wrk (C, light; see bench/home_page.lua) on the app and right after on the bare page, `--rounds`
times: `GET` with `Authorization: tma <initData>` signed for one of many different users (round robin over all
of them by default), from the user's own address (`X-Forwarded-For`, as behind the shop's proxy: the app limits
requests per address), `HX-Request: true`, `HX-Target: content`. Measured back to back, the two runs of a page
share the machine's state of that minute: this VM's speed drifts by tens of percent within an hour, and a ratio
of runs minutes apart measured the drift as much as the code.

Checks (exit status 1 when one fails; a missed goal is reported, not failed):
- the app's SQL for one request of each page (DB_ECHO) is exactly the bare page's;
- sample users of each kind get 200 and their own page (not the error shell), the bare page's HTML equals the
  app's for the same user (/api/me: the same JSON), and a forged initData is refused with 401, on both servers;
- a measured run has no non-2xx response, no socket error and no timeout, or it is invalid.

`--smoke` runs all of this for the three pages at a tiny size (200 users, one worker, 1 s + 1 s of load with 8
connections) in well under a minute, with every check and no goal judged; tests/test_bench_smoke.py runs it in CI.

Every user is marked as seen just before each run, as in a busy app's steady state, so no request rewrites
last_seen_at (the app does at most every 5 minutes per user, and on a new day); the bare page answers 500 where
the app would write, so such a state cannot pass the checks unnoticed. Likewise every user's QR code is drawn and
kept in Redis once before the runs (as after their first visit of the connect page); what drawing one costs is
reported.

Results: a table, and JSON in bench/results/home_page-<timestamp>.json (git-ignored). `--breakdown` adds the
CPU per request of each stage measured in process, `--profile` an extra run per server under py-spy (see
bench/home_profile.py).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import os
import platform
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import create_async_engine

from app.auth.telegram import sign_init_data
from app.demo.seed import PLANS
from app.kit.crypto import configure_cipher, new_key
from app.models import (
    PanelKind,
    Plan,
    PlanPrice,
    Server,
    Subscription,
    SubscriptionStatus,
    UsageDaily,
    User,
    VpnAccount,
)
from app.panels.registry import seal_credentials
from app.provisioning.service import panel_username
from bench import smoke
from bench.panel_sync import DEFAULT_DATABASE_URL, create_database, database_name, drop_database

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).parent / "results"
LUA_SCRIPT = Path(__file__).parent / "home_page.lua"
# A database of its own (the other benchmarks use 6, 11, 13 and 14, the tests 15): the run writes rate-limit counters
# and replaces the QR codes kept there (`qr:*`), which must not be a live app's on the same Redis.
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/12"
PUBLIC_BASE_URL = "https://vpn.example.com"
BOT_TOKEN = "7000000001:AAbench-home-page-test-token-0000000"  # a fixed test token; nothing talks to Telegram
SECRET_KEY = "bench-home-secret-key-" + "s" * 32
TELEGRAM_ID_BASE = 6_000_000_000
PANEL_PREFIX = "bench"  # the installation's panel username prefix (any will do: no panel is asked)
SEED_CHUNK = 5000
USAGE_DAYS = 7
DB_POOL_SIZE, DB_MAX_OVERFLOW = 20, 0  # the app's defaults (Settings.db_pool_size / db_max_overflow)
GOAL_RPS, GOAL_P99_MS, GOAL_BARE_RATIO = 1000, 100.0, 0.5
GIB = 1 << 30
MIB = 1 << 20


# --------------------------------------------------------------------------------------------------------------
# The population: a pure function of the user index


@dataclass(frozen=True)
class Population:
    """User i (0-based) has id i + 1, telegram id TELEGRAM_ID_BASE + i, current subscription and VPN account id
    i + 1; older subscriptions get ids after N."""

    users: int
    now: datetime

    def kind(self, i: int) -> str:
        """20 % on the trial, 60 % active on a paid plan, 20 % expired."""
        slot = i % 10
        return "trial" if slot < 2 else "expired" if slot >= 8 else "active"

    def has_history(self, i: int) -> bool:
        """A third of the active users renewed once: an ended subscription before the current one."""
        return self.kind(i) == "active" and i % 3 == 0

    def language(self, i: int) -> str:
        return "en" if i % 4 == 0 else "ru"

    def first_name(self, i: int) -> str:
        return f"Bench{i:05d}"

    def username(self, i: int) -> str:
        return f"bench_user_{i:05d}"

    def sub_token(self, i: int) -> str:
        return f"benchtok{i:08d}"

    def plan_index(self, i: int) -> int:
        return (i // 10) % len(PLANS)

    def telegram_user(self, i: int) -> dict[str, Any]:
        """What Telegram puts in initData's `user` (names equal to ours, so no request writes them)."""
        return {
            "id": TELEGRAM_ID_BASE + i,
            "first_name": self.first_name(i),
            "username": self.username(i),
            "language_code": self.language(i),
            "allows_write_to_pm": True,
        }

    def usage(self, i: int, day: int) -> tuple[int, int]:
        return ((i * 7 + day * 13) % 50 + 1) * MIB, ((i * 11 + day * 17) % 900 + 50) * MIB

    def counts(self) -> dict[str, int]:
        kinds = Counter(self.kind(i) for i in range(self.users))
        history = sum(1 for i in range(self.users) if self.has_history(i))
        return {
            "users": self.users,
            **{f"{kind}_users": kinds[kind] for kind in ("trial", "active", "expired")},
            "subscriptions": self.users + history,
            "vpn_accounts": self.users,
            "usage_daily": self.users * USAGE_DAYS,
        }


def subscription_rows(pop: Population, i: int, plan_ids: list[int]) -> list[dict[str, Any]]:
    kind, now = pop.kind(i), pop.now
    _code, _names, days, _discount, _prices = PLANS[pop.plan_index(i)]
    base = {"user_id": i + 1, "renewal_failures": 0, "created_at": now - timedelta(days=120), "updated_at": now}
    if kind == "trial":
        starts = now - timedelta(days=i % 6, hours=i % 24)
        current = {"status": SubscriptionStatus.TRIAL, "is_trial": True, "plan_id": None, "auto_renew": False}
        current |= {"starts_at": starts, "ends_at": starts + timedelta(days=7)}
    elif kind == "active":
        starts = now - timedelta(days=i % days, hours=i % 24)
        current = {"status": SubscriptionStatus.ACTIVE, "is_trial": False, "plan_id": plan_ids[pop.plan_index(i)]}
        current |= {"auto_renew": i % 5 != 0, "starts_at": starts, "ends_at": starts + timedelta(days=days)}
    else:
        ends = now - timedelta(days=3 + i % 40, hours=i % 24)
        current = {"status": SubscriptionStatus.EXPIRED, "is_trial": False, "plan_id": plan_ids[pop.plan_index(i)]}
        current |= {"auto_renew": False, "starts_at": ends - timedelta(days=days), "ends_at": ends}
    rows = [base | current | {"id": i + 1}]
    if pop.has_history(i):
        ends = current["starts_at"]
        rows.append(
            base
            | {"id": None, "status": SubscriptionStatus.EXPIRED, "is_trial": False, "plan_id": plan_ids[0]}
            | {"auto_renew": False, "starts_at": ends - timedelta(days=30), "ends_at": ends}
        )
    return rows


def account_row(pop: Population, i: int, server_id: int, ends_at: datetime) -> dict[str, Any]:
    kind, now = pop.kind(i), pop.now
    used = sum(sum(pop.usage(i, day)) for day in range(USAGE_DAYS))
    limited = kind == "trial" or i % 4 == 1
    return {
        "id": i + 1,
        "user_id": i + 1,
        "subscription_id": i + 1,
        "server_id": server_id,
        "panel_username": panel_username(PANEL_PREFIX, i + 1),
        "panel_id": panel_username(PANEL_PREFIX, i + 1),
        "status": "disabled" if kind == "expired" else "active",
        "subscription_url_encrypted": None,
        "sub_token": pop.sub_token(i),
        "device_limit": 3,
        "traffic_limit_bytes": (10 if kind == "trial" else 100) * GIB if limited else None,
        "used_traffic_bytes": used,
        "lifetime_traffic_bytes": used,
        "online_at": min(now, ends_at) - timedelta(minutes=i % 600),
        "sub_updated_at": min(now, ends_at) - timedelta(hours=i % 48),
        "last_synced_at": now - timedelta(minutes=i % 5),
        "provisioned_at": now - timedelta(days=100),
        "created_at": now - timedelta(days=100),
        "updated_at": now,
    }


def usage_rows(pop: Population, i: int, ends_at: datetime) -> list[dict[str, Any]]:
    last_day: date = min(pop.now, ends_at).date()
    rows = []
    for day in range(USAGE_DAYS):
        up, down = pop.usage(i, day)
        rows.append(
            {
                "vpn_account_id": i + 1,
                "user_id": i + 1,
                "day": last_day - timedelta(days=day),
                "upload_bytes": up,
                "download_bytes": down,
                "connections": 1 + (i + day) % 20,
                "unique_ips": 1 + (i + day) % 3,
            }
        )
    return rows


async def seed_database(url: str, pop: Population) -> float:
    """Plans, one demo server, and the population, in chunks of multi-row INSERTs; then VACUUM ANALYZE (a
    long-lived database has statistics and a visibility map). Returns the seconds taken."""
    started = time.perf_counter()
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            plan_ids = []
            for order, (code, names, days, discount, prices) in enumerate(PLANS):
                plan_id = (
                    await connection.execute(
                        insert(Plan)
                        .values(
                            code=code,
                            name=names,
                            duration_days=days,
                            discount_percent=Decimal(discount),
                            sort_order=order,
                            device_limit=3,
                            features={"protocols": ["vless"]},
                        )
                        .returning(Plan.id)
                    )
                ).scalar_one()
                plan_ids.append(plan_id)
                await connection.execute(
                    insert(PlanPrice),
                    [{"plan_id": plan_id, "currency": cur, "amount_minor": amount} for cur, amount in prices.items()],
                )
            server_id = (
                await connection.execute(
                    insert(Server)
                    .values(
                        name="bench-demo",
                        panel_kind=PanelKind.DEMO,
                        api_url="internal://bench-demo",
                        credentials_encrypted=seal_credentials({}),
                        location="nl",
                        capacity=pop.users * 2,
                        health="online",
                    )
                    .returning(Server.id)
                )
            ).scalar_one()
            history_id = pop.users
            for start in range(0, pop.users, SEED_CHUNK):
                indexes = range(start, min(pop.users, start + SEED_CHUNK))
                users, subscriptions, accounts, usage = [], [], [], []
                for i in indexes:
                    users.append(user_row(pop, i))
                    current, *older = subscription_rows(pop, i, plan_ids)
                    for row in older:
                        history_id += 1
                        row["id"] = history_id
                    subscriptions += [current, *older]
                    accounts.append(account_row(pop, i, server_id, current["ends_at"]))
                    usage += usage_rows(pop, i, current["ends_at"])
                await connection.execute(insert(User.__table__), users)
                await connection.execute(insert(Subscription.__table__), subscriptions)
                await connection.execute(insert(VpnAccount.__table__), accounts)
                await connection.execute(insert(UsageDaily.__table__), usage)
            for table in ("users", "subscriptions", "vpn_accounts", "usage_daily"):
                await connection.execute(
                    text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
                )
        await vacuum(url)
    finally:
        await engine.dispose()
    return time.perf_counter() - started


def user_row(pop: Population, i: int) -> dict[str, Any]:
    return {
        "id": i + 1,
        "telegram_id": TELEGRAM_ID_BASE + i,
        "username": pop.username(i),
        "first_name": pop.first_name(i),
        "last_name": None,
        "language": pop.language(i),
        "referral_code": f"bh{i:08d}",
        "is_blocked": False,
        "marketing_opt_out": False,
        "is_demo": False,
        "last_seen_at": pop.now,
        "created_at": pop.now - timedelta(days=120),
        "updated_at": pop.now,
    }


async def vacuum(url: str) -> None:
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(text("VACUUM ANALYZE"))
    finally:
        await engine.dispose()


async def mark_everyone_seen(url: str) -> datetime:
    """Every user seen just now, as in the steady state of a busy app, so that no request of the run rewrites
    last_seen_at (the app refreshes it at most every 5 minutes). Returns the instant, to check afterwards."""
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            seen = (await connection.execute(text("SELECT now()"))).scalar_one()
            await connection.execute(text("UPDATE users SET last_seen_at = :seen"), {"seen": seen})
            await connection.execute(text("VACUUM ANALYZE users"))
            return seen
    finally:
        await engine.dispose()


async def database_facts(url: str, seen: datetime | None = None) -> dict[str, Any]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            facts: dict[str, Any] = {"postgres": (await connection.execute(text("SHOW server_version"))).scalar_one()}
            for table in ("users", "subscriptions", "vpn_accounts", "usage_daily"):
                facts[table] = (await connection.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()
            if seen is not None:
                facts["users_written"] = (
                    await connection.execute(
                        text("SELECT count(*) FROM users WHERE last_seen_at <> :seen OR updated_at > :seen"),
                        {"seen": seen},
                    )
                ).scalar_one()
            return facts
    finally:
        await engine.dispose()


# --------------------------------------------------------------------------------------------------------------
# Requests: signed initData per user


async def keep_qr_codes(pop: Population, redis_url: str) -> tuple[int, float]:
    """The connect page's steady state: every customer has opened it before, so their QR code is kept in Redis
    (app.connect.qr.QrCodes). Codes kept by an earlier run are dropped first, then each user's is drawn and kept,
    the same for both servers (they share the keys). What a first visit costs more is the drawing, reported."""
    from redis.asyncio import Redis

    from app.connect.qr import QrCodes
    from app.connect.service import mirror_link

    redis = Redis.from_url(redis_url)
    try:
        kept = [key async for key in redis.scan_iter(match=QrCodes.KEY_PREFIX + "*", count=1000)]
        if kept:
            await redis.delete(*kept)
        codes, started = QrCodes(redis), time.process_time()
        for i in range(pop.users):
            link = mirror_link(PUBLIC_BASE_URL, pop.sub_token(i))
            await codes.svg(link, title=link)
        return pop.users, time.process_time() - started
    finally:
        await redis.aclose()


def init_data(pop: Population, i: int, auth_date: int, bot_token: str = BOT_TOKEN) -> str:
    """initData as Telegram sends it to a Mini App opened from the bot's menu button."""
    fields = {
        "query_id": f"AAH{i:010d}benchQ",
        "user": json.dumps(pop.telegram_user(i), separators=(",", ":")),
        "auth_date": str(auth_date),
        "signature": "bench" + "A" * 81,  # Telegram's Ed25519 signature field (86 chars); part of the HMAC input
    }
    return sign_init_data(fields, bot_token)


def rotation(pop: Population, count: int) -> list[int]:
    """`count` different users spread over the whole population and its kinds, in an order where consecutive
    requests are for unrelated users: a prime stride through the indexes (every index once when count = N)."""
    stride = 7919 if pop.users % 7919 else 7907
    return [(k * stride) % pop.users for k in range(count)]


def address(i: int) -> str:
    """User i's own client address. The app limits requests per address (600 a minute by default): behind the
    shop's proxy (uvicorn runs with --proxy-headers, as `vpnshop serve`) each customer comes from their own, so
    the load generator says so in X-Forwarded-For instead of being one address refused with 429."""
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


def write_headers_file(pop: Population, users: list[int], directory: Path) -> Path:
    """One line per request for bench/home_page.lua: the Authorization value and the client address."""
    auth_date = int(time.time())
    path = directory / "authorization.txt"
    path.write_text("".join(f"tma {init_data(pop, i, auth_date)}\t{address(i)}\n" for i in users))
    return path


def headers_for(pop: Population, i: int) -> dict[str, str]:
    return {
        "authorization": f"tma {init_data(pop, i, int(time.time()))}",
        "x-forwarded-for": address(i),
        "hx-request": "true",
        "hx-target": "content",
    }


# --------------------------------------------------------------------------------------------------------------
# Servers


@dataclass
class Stack:
    loop: str
    http: str

    @classmethod
    def detect(cls) -> Stack:
        return cls(
            loop="uvloop" if has_module("uvloop") else "asyncio", http="httptools" if has_module("httptools") else "h11"
        )


def has_module(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def base_env() -> dict[str, str]:
    # A clean environment: nothing from the caller's shell (DB_ECHO, DEBUG, …) leaks into a measured server.
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8"}


def app_env(database_url: str, redis_url: str, encryption_key: str, echo: bool = False) -> dict[str, str]:
    return base_env() | {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "BOT_TOKEN": BOT_TOKEN,
        "BOT_USERNAME": "vpnshop_bench_bot",
        "SECRET_KEY": SECRET_KEY,
        "ENCRYPTION_KEY": encryption_key,
        "DEMO_MODE": "false",
        "DEBUG": "false",
        "LOG_LEVEL": "WARNING",
        "LOG_JSON": "true",
        "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
        "DB_POOL_SIZE": str(DB_POOL_SIZE),
        "DB_MAX_OVERFLOW": str(DB_MAX_OVERFLOW),
        "DB_ECHO": "true" if echo else "false",
    }


def bare_env(database_url: str, redis_url: str) -> dict[str, str]:
    return base_env() | {
        "BARE_HOME_DATABASE_URL": database_url,
        "BARE_HOME_REDIS_URL": redis_url,
        "BARE_HOME_BOT_TOKEN": BOT_TOKEN,
        "BARE_HOME_POOL_MIN": str(DB_POOL_SIZE),
        "BARE_HOME_POOL_MAX": str(DB_POOL_SIZE + DB_MAX_OVERFLOW),
        "BARE_HOME_PUBLIC_BASE_URL": PUBLIC_BASE_URL,
    }


SERVERS = {"app": ("app.main:create_app", True), "bare": ("bench.bare_home:app", False)}


def server_command(server: str, port: int, workers: int, stack: Stack) -> list[str]:
    target, factory = SERVERS[server]
    # As `vpnshop serve` runs uvicorn (proxy headers, no access log), with the loop and parser named.
    return [
        sys.executable,
        "-m",
        "uvicorn",
        target,
        *(["--factory"] if factory else []),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--loop",
        stack.loop,
        "--http",
        stack.http,
        "--log-level",
        "warning",
        "--no-access-log",
        "--proxy-headers",
        "--forwarded-allow-ips",
        "*",
    ]


@contextmanager
def serving(command: list[str], env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server in its own process group; stop it (SIGTERM, then SIGKILL of that group) afterwards."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
            # Workers of a multi-process uvicorn are in the same group; make sure none outlives the run.
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)


def wait_until_up(base_url: str, process: subprocess.Popen[bytes], log_path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with code {process.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the server did not answer on {base_url} within {timeout:.0f} s")


# --------------------------------------------------------------------------------------------------------------
# Checks on sample responses


def sample_users(pop: Population) -> list[int]:
    """One user of each kind (and one with an older subscription), from different parts of the population."""
    wanted = {"trial": None, "active": None, "expired": None, "history": None}
    for i in range(pop.users // 2, pop.users):
        key = "history" if pop.has_history(i) else pop.kind(i)
        if wanted.get(key) is None:
            wanted[key] = i
    return [i for i in wanted.values() if i is not None]


def check_samples(base_url: str, path: str, pop: Population, reference: dict[int, str]) -> dict[str, str]:
    """Each sample user gets 200 and a page (or JSON) with their own data, not someone else's and not the error
    shell; a forged initData is refused. The bodies are compared with `reference` (the app's, when checking the
    bare page: the same HTML proves the same work), or stored in it. Returns failures by name (empty: all good)."""
    failures: dict[str, str] = {}
    bodies = {}
    with httpx.Client(base_url=base_url, timeout=10) as client:
        for i in sample_users(pop):
            name = f"user {i} ({pop.kind(i)})"
            response = client.get(path, headers=headers_for(pop, i))
            body = bodies[i] = response.text
            if response.status_code != 200:
                failures[name] = f"status {response.status_code}: {body[:300]}"
                continue
            content_type = response.headers.get("content-type", "")
            problem = check_body(pop, i, path, content_type, body)
            if problem:
                failures[name] = problem
            elif i in reference and not same_body(content_type, reference[i], body):
                failures[f"{name}: same page as the app"] = f"differs:\n--- app\n{reference[i]}\n--- this\n{body}"
            else:
                reference.setdefault(i, body)
        if len(set(bodies.values())) != len(bodies):
            failures["different users, different pages"] = "two sample users got the same body"
        forged = headers_for(pop, sample_users(pop)[0])
        forged["authorization"] = forged["authorization"][:-1] + ("0" if forged["authorization"][-1] != "0" else "1")
        response = client.get(path, headers=forged)
        if response.status_code != 401:
            failures["forged initData refused"] = f"status {response.status_code}, expected 401"
    return failures


def same_body(content_type: str, reference: str, body: str) -> bool:
    """The same HTML, byte for byte; JSON (/api/me) as the same value (FastAPI and pydantic may space it
    differently)."""
    if content_type.startswith("application/json"):
        return json.loads(reference) == json.loads(body)
    return reference == body


def check_body(pop: Population, i: int, path: str, content_type: str, body: str) -> str | None:
    if content_type.startswith("application/json"):
        data = json.loads(body)
        if data.get("telegram_id") != TELEGRAM_ID_BASE + i or data.get("first_name") != pop.first_name(i):
            return f"JSON is not user {i}'s: {body[:300]}"
        subscription = data.get("subscription") or {}
        expected = {"trial": "trial", "active": "active", "expired": "expired"}[pop.kind(i)]
        if subscription.get("status") != expected:
            return f"subscription status {subscription.get('status')!r}, expected {expected!r}"
        if not str(subscription.get("subscription_link", "")).endswith(pop.sub_token(i)):
            return "the subscription link is not the user's"
        return None
    if 'class="card error"' in body:
        return f"the error shell, not the page: {body[:300]}"
    if path == "/app/connect" and pop.kind(i) == "expired":
        # No live subscription, so nothing to connect with: the page must not show the account's link.
        return f"an ended subscription's link on the connect page: {body[:300]}" if pop.sub_token(i) in body else None
    markers = [pop.first_name(i), pop.username(i), pop.sub_token(i)]
    if not any(marker in body for marker in markers):
        return f"none of the user's markers {markers} in the page: {body[:300]}"
    return None


# --------------------------------------------------------------------------------------------------------------
# Measuring


def cpu_ticks(pid: int, *, reaped: bool = False, part: slice = slice(11, 13)) -> int | None:
    """utime + stime of a process (Linux /proc), plus those of its exited children when `reaped`; `part`
    selects utime (11) or stime (12) alone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return sum(int(value) for value in fields[slice(11, 15) if reaped else part])


def processes() -> list[tuple[int, int, str]]:
    """(pid, parent pid, command name) of every process (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                head, tail = (entry / "stat").read_text().rsplit(")", 1)
            except OSError:
                continue
            found.append((int(entry.name), int(tail.split()[1]), head.split("(", 1)[1]))
    return found


def tree(root: int) -> list[int]:
    table = processes()
    pids, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, ppid, _ in table if ppid in frontier]
        pids += frontier
    return pids


def cpu_snapshot(server_pid: int) -> dict[str, float]:
    """CPU seconds so far: the server's process tree, PostgreSQL's processes, and the machine (/proc/stat)."""
    hz = os.sysconf("SC_CLK_TCK")
    server_pids = tree(server_pid)
    server = sum(cpu_ticks(pid) or 0 for pid in server_pids)
    server_sys = sum(cpu_ticks(pid, part=slice(12, 13)) or 0 for pid in server_pids)
    table = processes()
    postgres_pids = {pid for pid, _, name in table if name.startswith("postgres")}
    # Backends of connections closed during the run are gone; the postmaster reaped them, so their CPU is in
    # its children's counters.
    postgres = sum(
        cpu_ticks(pid, reaped=parent not in postgres_pids) or 0 for pid, parent, _ in table if pid in postgres_pids
    )
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    busy = sum(fields[:8]) - idle
    return {"server": server / hz, "server_kernel": server_sys / hz, "postgres": postgres / hz, "busy": busy / hz}


async def db_counters(url: str) -> dict[str, int]:
    """PostgreSQL's counters for the benchmark database: transactions committed and sessions (connections)
    established so far. Backends report them at most once a second, so take them a moment after the load."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            row = (
                await connection.execute(
                    text(
                        "SELECT xact_commit, sessions, tup_returned, tup_fetched FROM pg_stat_database"
                        " WHERE datname = current_database()"
                    )
                )
            ).one()
            return {"xact_commit": row[0], "sessions": row[1], "tup_returned": row[2], "tup_fetched": row[3]}
    finally:
        await engine.dispose()


def run_wrk(url: str, path: str, headers_file: Path, args: argparse.Namespace, seconds: float) -> dict[str, Any]:
    command = [
        "wrk",
        f"--threads={args.threads}",
        f"--connections={args.connections}",
        f"--duration={seconds:g}s",
        f"--timeout={args.timeout:g}s",
        "--latency",
        f"--script={LUA_SCRIPT}",
        url,
        "--",
        path,
        str(headers_file),
        str(args.threads),
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(seconds / 2)
    spread = connections_per_process(url.rsplit(":", 1)[1])
    stdout, stderr = process.communicate()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if process.returncode != 0:
        raise RuntimeError(f"wrk failed ({process.returncode}): {stderr or stdout}")
    match = re.search(r"^BENCH_RESULT (.*)$", stdout, re.MULTILINE)
    if not match:
        raise RuntimeError(f"no BENCH_RESULT line in wrk's output:\n{stdout}\n{stderr}")
    result = json.loads(match.group(1))
    result["wrk_cpu_seconds"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    result["connections_per_worker"] = spread
    result["command"] = " ".join(command)
    return result


def connections_per_process(port: str) -> list[int] | None:
    """How the load generator's keep-alive connections are spread over the server's worker processes, busiest
    first (`ss`, Linux): uvicorn's workers accept from one shared socket, and whoever wins an accept keeps that
    connection for the whole run."""
    if shutil.which("ss") is None:
        return None
    listing = subprocess.run(
        ["ss", "-tnpH", "state", "established", f"( sport = :{port} )"], capture_output=True, text=True, check=False
    ).stdout
    return sorted(Counter(re.findall(r"pid=(\d+)", listing)).values(), reverse=True) or None


@contextmanager
def servers_up(
    workers: int, args: argparse.Namespace, database_url: str, work: Path
) -> Iterator[dict[str, tuple[subprocess.Popen[bytes], list[str], Path]]]:
    """Start every server (--servers) with `workers` workers at once and wait until each answers; stop them all
    afterwards. An idle server costs nothing measurable (the app's once-a-second refresher aside), so the app and
    the bare page can be measured back to back on each page: a ratio of two runs a minute apart, not of two runs
    minutes apart on a machine whose speed drifts."""
    with ExitStack() as stack:
        running = {}
        for server in args.servers:
            env = (
                app_env(database_url, args.redis_url, args.encryption_key)
                if server == "app"
                else bare_env(database_url, args.redis_url)
            )
            command = server_command(server, free_port(), workers, args.stack)
            log_path = work / f"{server}-{workers}.log"
            running[server] = (stack.enter_context(serving(command, env, log_path)), command, log_path)
        for process, command, log_path in running.values():
            wait_until_up(f"http://127.0.0.1:{command[command.index('--port') + 1]}", process, log_path)
        yield running


def measure_page(
    path: str,
    server: str,
    workers: int,
    args: argparse.Namespace,
    database_url: str,
    headers_file: Path,
    process: subprocess.Popen[bytes],
    command: list[str],
    log_path: Path,
) -> dict[str, Any]:
    """Check and measure one page of a running server: one run of the results."""
    port = command[command.index("--port") + 1]
    base_url = f"http://127.0.0.1:{port}"
    label = f"{server} {path}, {workers} worker{'s' if workers > 1 else ''}"
    seen = asyncio.run(mark_everyone_seen(database_url))
    profile = None
    failures = check_samples(base_url, path, args.population, args.reference_bodies.setdefault(path, {}))
    if failures:
        print(f"  {label}: sample check FAILED: {failures}")
        log_tail = log_path.read_text(errors="replace")[-3000:]
        if log_tail.strip():
            print(f"  {label}: the server's log ends with:\n{log_tail}")
        return {
            "path": path,
            "server": server,
            "workers": workers,
            "samples": failures,
            "server_log_tail": log_tail,
            "valid": False,
        }
    run_wrk(base_url, path, headers_file, args, args.warmup)
    time.sleep(args.pause)
    load_average = os.getloadavg()[0]
    counters_before = asyncio.run(db_counters(database_url))
    before = cpu_snapshot(process.pid)
    result = run_wrk(base_url, path, headers_file, args, args.duration)
    after = cpu_snapshot(process.pid)
    time.sleep(1.2)  # backends report their statistics at most once a second
    counters = asyncio.run(db_counters(database_url))
    alive = process.poll() is None
    if args.profile and alive:
        profile = profile_run(server, workers, path, args, process.pid, base_url, headers_file)
    facts = asyncio.run(database_facts(database_url, seen))
    seconds = result["duration_us"] / 1e6
    requests = max(1, result["requests"])
    statuses = {int(code): count for code, count in result["statuses"].items()}
    non_2xx = sum(count for code, count in statuses.items() if not 200 <= code < 300)
    socket_errors = sum(result["errors"][key] for key in ("connect", "read", "write", "timeout"))
    latency = {key: round(value / 1000, 2) for key, value in result["latency_us"].items()}
    cpu = {key: round((after[key] - before[key]) / seconds, 2) for key in after}
    cpu["wrk"] = round(result["wrk_cpu_seconds"] / seconds, 2)
    cpu["other"] = round(max(0.0, cpu["busy"] - cpu["server"] - cpu["postgres"] - cpu["wrk"]), 2)
    rps = max(1.0, result["requests"] / seconds)
    run = {
        "path": path,
        "server": server,
        "workers": workers,
        "command": " ".join(command[1:]).replace(str(port), "<port>"),
        "samples": {},
        "requests": result["requests"],
        "seconds": round(seconds, 2),
        "rps": round(result["requests"] / seconds, 1),
        "latency_ms": latency,
        "p50_ms": latency["p50"],
        "p99_ms": latency["p99"],
        "statuses": {str(code): count for code, count in sorted(statuses.items())},
        "non_2xx": non_2xx,
        "socket_errors": result["errors"],
        "bytes_per_response": round(result["bytes"] / requests),
        "connections_per_worker": result["connections_per_worker"],
        # CPU seconds per second of the measurement (1.0 = one core busy): the server's process tree (and its
        # time in the kernel), every PostgreSQL process, wrk, the whole machine, and the rest (other work on it).
        "cpu_cores": cpu,
        "cpu_ms_per_request": {
            "server": round(1000 * cpu["server"] / rps, 3),
            "server_kernel": round(1000 * cpu["server_kernel"] / rps, 3),  # of which in system calls (sockets)
            "postgres": round(1000 * cpu["postgres"] / rps, 3),
        },
        # PostgreSQL's own counters for the database: committed transactions per request, and connections
        # opened during the measurement (a pool that keeps closing and reopening them shows here).
        "db_commits_per_request": round((counters["xact_commit"] - counters_before["xact_commit"]) / requests, 2),
        "db_connections_opened": counters["sessions"] - counters_before["sessions"] - 1,  # minus this check's own
        "load_average_at_start": round(load_average, 2),
        "users_written_during_run": facts.get("users_written"),
        "server_alive_after": alive,
        "wrk_command": result["command"].replace(str(port), "<port>"),
        "valid": non_2xx == 0 and socket_errors == 0 and result["requests"] > 0 and alive,
    }
    if profile is not None:
        run["profile"] = profile
    if not run["valid"]:
        run["server_log_tail"] = log_path.read_text()[-2000:]
    print(
        f"  {label}: {run['rps']:,.0f} req/s, p50 {latency['p50']:.1f} ms, p99 {latency['p99']:.1f} ms,"
        f" {run['requests']:,} requests, {non_2xx} non-2xx, {socket_errors} socket errors; CPU cores: server"
        f" {cpu['server']}, postgres {cpu['postgres']}, wrk {cpu['wrk']}, other {cpu['other']}"
        + (f"; connections per worker {run['connections_per_worker']}" if workers > 1 else "")
        + (f"; {run['users_written_during_run']} users written" if run["users_written_during_run"] else "")
    )
    if profile is not None and "categories" in profile:
        shares = ", ".join(f"{name} {share:.0%}" for name, share in list(profile["categories"].items())[:8])
        print(f"    where the server's CPU goes (py-spy --gil, {profile['samples']:,} samples): {shares}")
    return run


def profile_run(
    server: str, workers: int, path: str, args: argparse.Namespace, pid: int, base_url: str, headers_file: Path
) -> dict[str, Any]:
    """An extra, unmeasured run under the same load with py-spy attached: where the server's CPU goes."""
    from bench.home_profile import categorize, start_profiler

    page = path.strip("/").replace("/", "-") or "root"
    stacks = args.json.with_name(f"{args.json.stem}-{page}-{server}-{workers}w.stacks.txt")
    stacks.parent.mkdir(parents=True, exist_ok=True)
    profiler = start_profiler(pid, args.profile_seconds, stacks)
    time.sleep(0.5)
    run_wrk(base_url, path, headers_file, args, args.profile_seconds)
    _, errors = profiler.communicate(timeout=60)
    if not stacks.exists():
        return {"error": errors.decode(errors="replace")[-1000:]}
    summary = categorize(stacks)
    return {"stacks": str(stacks.relative_to(ROOT)) if stacks.is_relative_to(ROOT) else str(stacks), **summary}


def breakdown(args: argparse.Namespace, database_url: str) -> dict[str, dict[str, float]]:
    """CPU per request by stage, in process (see bench/home_profile.py)."""
    from app.auth.telegram import TelegramUser
    from bench.home_profile import run_breakdown

    pop: Population = args.population
    users = rotation(pop, pop.users)[: args.breakdown_requests]
    asyncio.run(mark_everyone_seen(database_url))
    telegram = [
        TelegramUser(
            id=TELEGRAM_ID_BASE + i,
            first_name=pop.first_name(i),
            last_name=None,
            username=pop.username(i),
            language_code=pop.language(i),
            is_premium=False,
        )
        for i in users
    ]
    env = app_env(database_url, args.redis_url, args.encryption_key)
    result = run_breakdown(
        # The first page's whole-page figures; the stages are the home page's.
        env,
        bare_env(database_url, args.redis_url),
        args.paths[0],
        [headers_for(pop, i) for i in users],
        telegram,
    )
    print(f"\n  CPU per request in process, {len(users):,} requests one after the other, best of 3 (--breakdown):")
    for name, figures in result.items():
        print(f"    {figures['cpu_ms']:6.3f} ms  {name}")
    return result


ECHO_LINE = re.compile(r"^\d{4}-\d\d-\d\d [\d:,]+ INFO sqlalchemy\.engine\.Engine ", re.MULTILINE)
NOT_QUERIES = ("[", "BEGIN", "COMMIT", "ROLLBACK", "select pg_catalog.version()", "select current_schema()", "show ")
# The app's once-a-second refresher of runtime settings, texts and text experiments (app/runtime_settings/refresher.py)
# runs beside the requests, so its reads can fall into the logged window; they belong to no request.
BACKGROUND = ("\nFROM system_settings \n", "\nFROM message_texts", "\nFROM experiments \n")


def app_sql(args: argparse.Namespace, database_url: str, work: Path) -> dict[str, tuple[int, list[str]]]:
    """The SQL statements the app sends for one request of each page (DB_ECHO=true, one worker): by page, the
    status and the statements, without transaction control, the connection's first-use queries and the
    refresher's reads."""
    port = free_port()
    env = app_env(database_url, args.redis_url, args.encryption_key, echo=True)
    log_path = work / "echo.log"
    user = sample_users(args.population)[1]
    found = {}
    with serving(server_command("app", port, 1, args.stack), env, log_path) as process:
        wait_until_up(f"http://127.0.0.1:{port}", process, log_path)
        for path in args.paths:
            mark = log_path.stat().st_size
            response = httpx.get(f"http://127.0.0.1:{port}{path}", headers=headers_for(args.population, user))
            time.sleep(0.5)
            with log_path.open("rb") as log:
                log.seek(mark)
                entries = ECHO_LINE.split(log.read().decode(errors="replace"))
            statements = [
                entry.rstrip("\n")
                for entry in entries
                if entry.strip() and not entry.startswith(NOT_QUERIES) and not any(mark in entry for mark in BACKGROUND)
            ]
            found[path] = (response.status_code, statements)
    return found


def check_sql(args: argparse.Namespace, database_url: str, work: Path) -> dict[str, str]:
    """The bare page must send PostgreSQL exactly the app's queries (same text, so same plans and rows)."""
    from bench.bare_home import STATEMENTS

    failures = {}
    for path, (status, statements) in app_sql(args, database_url, work).items():
        bare = STATEMENTS.get(path)
        if args.show_sql:
            print(f"\n  GET {path}: {status}; the app's SQL (DB_ECHO=true), then the bare page's:\n")
            print("\n\n".join(statements) + "\n\n  ---\n\n" + "\n\n".join(bare or ["(no bare page)"]) + "\n")
        if bare is None:
            failures[path] = f"bench/bare_home.py has no page {path}"
        elif statements != bare:
            failures[path] = f"the app sent {statements}"
    return failures


# --------------------------------------------------------------------------------------------------------------
# Orchestration and reporting


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in ("uvicorn", "uvloop", "httptools", "fastapi", "starlette", "sqlalchemy", "asyncpg", "jinja2"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    found["wrk"] = (wrk.stdout or wrk.stderr).split("[", 1)[0].removeprefix("wrk ").strip() or None
    return found


def run(args: argparse.Namespace) -> dict[str, Any]:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install -y wrk)")
    pop = args.population = Population(users=args.users, now=datetime.now(UTC))
    args.encryption_key = new_key()
    args.stack = Stack.detect()
    args.reference_bodies = {}  # page -> user -> the app's sample page, which the bare page must equal
    configure_cipher([args.encryption_key], SECRET_KEY)  # seals the server's (empty) credentials
    started = datetime.now(UTC)
    load_average = os.getloadavg()[0]
    print(
        f"home page benchmark: GET {', '.join(args.paths)} as {args.rotate:,} of {pop.users:,} users,"
        f" {args.connections} connections, {args.threads} wrk threads, {args.warmup:g} s warm-up +"
        f" {args.duration:g} s measured; uvicorn --loop {args.stack.loop} --http {args.stack.http}"
    )
    name = database_name("home")
    url = asyncio.run(create_database(args.database_url, name))
    runs: list[dict[str, Any]] = []
    cpu_by_stage = None
    try:
        seed_seconds = asyncio.run(seed_database(url, pop))
        facts = asyncio.run(database_facts(url))
        print(
            f"  seeded {name} in {seed_seconds:.1f} s: {facts['users']:,} users, {facts['subscriptions']:,}"
            f" subscriptions, {facts['vpn_accounts']:,} VPN accounts, {facts['usage_daily']:,} usage rows"
        )
        if "/app/connect" in args.paths:
            drawn, seconds = asyncio.run(keep_qr_codes(pop, args.redis_url))
            print(f"  drew and kept {drawn:,} QR codes in {seconds:.1f} s ({1000 * seconds / drawn:.1f} ms each)")
            args.qr_drawing_ms = round(1000 * seconds / drawn, 2)
        with tempfile.TemporaryDirectory(prefix="bench-home-") as directory:
            work = Path(directory)
            sql_failures = check_sql(args, url, work)
            if args.show_sql:
                raise SystemExit(0 if not sql_failures else 1)
            if sql_failures:
                print(f"  FAILED: {sql_failures}")
            headers_file = write_headers_file(pop, rotation(pop, args.rotate), work)
            for workers in args.workers:
                with servers_up(workers, args, url, work) as running:
                    for round_number in range(1, args.rounds + 1):
                        for path in args.paths:  # the app first: its sample pages are the bare page's reference
                            for server, (process, command, log_path) in running.items():
                                run = measure_page(
                                    path, server, workers, args, url, headers_file, process, command, log_path
                                )
                                runs.append(run | {"round": round_number})
        if args.breakdown:
            cpu_by_stage = breakdown(args, url)
    finally:
        if args.keep_db:
            print(f"  kept the database: {name}")
        else:
            asyncio.run(drop_database(args.database_url, name))
    return summarize(args, started, load_average, seed_seconds, facts, runs, cpu_by_stage, sql_failures)


def summarize(
    args: argparse.Namespace,
    started: datetime,
    load_average: float,
    seed_seconds: float,
    facts: dict[str, Any],
    runs: list[dict[str, Any]],
    cpu_by_stage: dict[str, dict[str, float]] | None,
    sql_failures: dict[str, str],
) -> dict[str, Any]:
    pop: Population = args.population
    expected = pop.counts()
    tables = ("users", "subscriptions", "vpn_accounts", "usage_daily")
    checks = {
        "seeded rows = planned": all(facts[table] == expected[table] for table in tables),
        "the bare page sends the app's SQL": not sql_failures,
        "every sample response was the user's page (and the bare page the app's)": all(
            not run["samples"] for run in runs
        ),
        "every measured run without errors": all(run["valid"] for run in runs),
    }
    best, goals, verdict = {}, {}, {}
    for path in args.paths:
        best[path], goals[path], verdict[path] = judge([run for run in runs if run["path"] == path], args.smoke)
    return {
        "benchmark": "home_page",
        "date": started.isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", "-m", "bench.home_page", *sys.argv[1:]]),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "postgres": facts["postgres"],
            "versions": versions(),
            "load_average_at_start": round(load_average, 2),
        },
        "settings": {
            "paths": args.paths,
            "users": pop.users,
            "users_in_rotation": args.rotate,
            "connections": args.connections,
            "wrk_threads": args.threads,
            "warmup_seconds": args.warmup,
            "duration_seconds": args.duration,
            "workers": args.workers,
            "loop": args.stack.loop,
            "http": args.stack.http,
            "db_pool_per_worker": {
                "app": f"SQLAlchemy QueuePool pool_size {DB_POOL_SIZE} + max_overflow {DB_MAX_OVERFLOW}, idle ping",
                "bare": f"asyncpg.Pool min_size {DB_POOL_SIZE}, max_size {DB_POOL_SIZE + DB_MAX_OVERFLOW}",
            },
        },
        "population": expected | {"seed_seconds": round(seed_seconds, 1)},
        "qr_code_drawing_cpu_ms": getattr(args, "qr_drawing_ms", None),  # what a first visit of the connect page adds
        "runs": runs,
        "best": best,  # by page and server: the worker count of the fastest valid run
        "smoke": args.smoke,
        "goals": goals,
        "goals_met": None if args.smoke else verdict,
        "cpu_ms_per_request_in_process": cpu_by_stage,
        "checks": checks,
        "failures": sql_failures,
        "ok": all(checks.values()),
    }


def judge(runs: list[dict[str, Any]], smoke: bool) -> tuple[dict[str, Any], dict[str, Any], dict[str, bool]]:
    """One page's best runs (worker counts by server), its goals with the measured shares, and the verdict
    (empty in a smoke run: its figures say nothing about speed)."""
    valid = [run for run in runs if run["valid"]]
    best = {
        server: max((run for run in valid if run["server"] == server), key=lambda run: run["rps"], default=None)
        for server in ("app", "bare")
    }
    app, bare = best["app"], best["bare"]
    goals: dict[str, Any] = {"rps": GOAL_RPS, "p99_ms": GOAL_P99_MS, "share_of_bare_rps": GOAL_BARE_RATIO}
    verdict: dict[str, bool] = {}
    if app is not None and not smoke:
        verdict["rps"] = app["rps"] >= GOAL_RPS
        verdict["p99_ms"] = app["p99_ms"] <= GOAL_P99_MS
        if bare is not None:
            # Against the best bare run (the floor of the stack on this machine), whatever its worker count.
            goals["measured_share_of_best_bare"] = round(app["rps"] / bare["rps"], 3)
            verdict["share_of_bare_rps"] = app["rps"] / bare["rps"] >= GOAL_BARE_RATIO
            same = max(
                (r for r in valid if r["server"] == "bare" and r["workers"] == app["workers"]),
                key=lambda run: run["rps"],
                default=None,
            )
            if same is not None:
                goals["measured_share_of_bare_same_workers"] = round(app["rps"] / same["rps"], 3)
            # Each round's app and bare runs were measured back to back: their ratios are the ones drift spares.
            bare_runs = {(run["workers"], run["round"]): run for run in valid if run["server"] == "bare"}
            goals["measured_share_by_round"] = {
                f"{run['workers']} workers, round {run['round']}": round(run["rps"] / pair["rps"], 3)
                for run in valid
                if run["server"] == "app" and (pair := bare_runs.get((run["workers"], run["round"])))
            }
    return {server: (run["workers"] if run else None) for server, run in best.items()}, goals, verdict


def print_summary(result: dict[str, Any]) -> None:
    print(
        f"\n  {'page':<12} {'server':<6} {'workers':>7} {'round':>5} {'req/s':>7} {'p50 ms':>7} {'p90 ms':>7}"
        f" {'p99 ms':>7} {'max ms':>7} {'requests':>9} {'errors':>6}   CPU ms/request: server (kernel), postgres"
        "   cores: server, pg, wrk, other"
    )
    for run in result["runs"]:
        if "latency_ms" not in run:
            print(
                f"  {run['path']:<12} {run['server']:<6} {run['workers']:>7} {run['round']:>5}"
                f"  sample check failed: {run['samples']}"
            )
            continue
        latency, ms, cores = run["latency_ms"], run["cpu_ms_per_request"], run["cpu_cores"]
        errors = run["non_2xx"] + sum(v for k, v in run["socket_errors"].items() if k != "status")
        print(
            f"  {run['path']:<12} {run['server']:<6} {run['workers']:>7} {run['round']:>5} {run['rps']:>7,.0f}"
            f" {latency['p50']:>7.1f} {latency['p90']:>7.1f} {latency['p99']:>7.1f} {latency['max']:>7.1f}"
            f" {run['requests']:>9,} {errors:>6}"
            f"   {ms['server']:>15.2f} ({ms['server_kernel']:.2f}), {ms['postgres']:.2f}"
            f"   {' ' * 7}{cores['server']:.2f}, {cores['postgres']:.2f}, {cores['wrk']:.2f}, {cores['other']:.2f}"
        )
    if result["smoke"]:
        print("\n  smoke run: checks only, no goal judged")
    for path, met in (result["goals_met"] or {}).items():
        goals, best = result["goals"][path], result["best"][path]
        if not met:
            continue
        mark = {True: "met", False: "MISSED"}
        line = (
            f"\n  {path}: best app run: {best['app']} worker(s); best bare run: {best['bare']} worker(s)."
            f" Goals: >= {goals['rps']:,} req/s {mark[met['rps']]}; p99 <= {goals['p99_ms']:g} ms"
            f" {mark[met['p99_ms']]}"
        )
        if "share_of_bare_rps" in met:
            line += (
                f"; >= {goals['share_of_bare_rps']:.0%} of the bare page's req/s {mark[met['share_of_bare_rps']]}"
                f" ({goals['measured_share_of_best_bare']:.0%} of the best bare run"
            )
            if "measured_share_of_bare_same_workers" in goals:
                line += f", {goals['measured_share_of_bare_same_workers']:.0%} of bare with as many workers"
            line += ")"
            by_round = goals["measured_share_by_round"]
            if len(by_round) > 1:
                line += "; back to back: " + ", ".join(f"{share:.0%} ({pair})" for pair, share in by_round.items())
        print(line)
    for name, passed in result["checks"].items():
        print(f"  [{'ok' if passed else 'FAIL'}] {name}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.home_page", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--path",
        default="/app,/api/me,/app/connect",
        help="the page(s) to request, comma-separated (default: all three that bench/bare_home.py has)",
    )
    parser.add_argument("--users", type=int, default=10_000, help="users in the database (default 10000)")
    parser.add_argument("--rotate", type=int, help="how many different users the requests rotate over (default all)")
    parser.add_argument("--workers", default="2,1", help="uvicorn worker counts to measure, in order (default 2,1)")
    parser.add_argument("--servers", default="app,bare", help="servers to measure for each count (default app,bare)")
    parser.add_argument("--connections", type=int, default=64, help="concurrent connections (default 64)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of unmeasured load first (default 5)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds measured (default 20)")
    parser.add_argument(
        "--rounds", type=int, default=1, help="how many times each page is measured on each server (default 1)"
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="wrk's request timeout in seconds (default 10)")
    parser.add_argument("--pause", type=float, default=1.0, help="seconds between warm-up and measurement (default 1)")
    parser.add_argument(
        "--database-url",
        default=DEFAULT_DATABASE_URL,
        help="a PostgreSQL database to connect to for CREATE/DROP DATABASE of the throwaway one"
        " (default $TEST_POSTGRES_URL or postgresql+asyncpg://postgres@127.0.0.1:5432/postgres)",
    )
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL, help=f"the app's REDIS_URL ({DEFAULT_REDIS_URL})")
    parser.add_argument("--keep-db", action="store_true", help="keep the database afterwards (dropped by default)")
    parser.add_argument(
        "--breakdown", action="store_true", help="afterwards, measure CPU per request by stage, in process"
    )
    parser.add_argument("--breakdown-requests", type=int, default=2000, help="requests per stage (default 2000)")
    parser.add_argument(
        "--profile", action="store_true", help="after each measurement, an extra run under py-spy (needs py-spy)"
    )
    parser.add_argument("--profile-seconds", type=float, default=10.0, help="length of that run (default 10)")
    parser.add_argument(
        "--show-sql",
        action="store_true",
        help="print the SQL of one request of --path, the app's and the bare page's, and stop",
    )
    parser.add_argument("--json", type=Path, help="results file (default bench/results/home_page-<timestamp>.json)")
    args = smoke.parse(
        parser,
        argv,
        {
            "path": "/app,/api/me,/app/connect",
            "users": 200,
            "workers": "1",
            "connections": 8,
            "threads": 1,
            "warmup": 1.0,
            "duration": 1.0,
            "pause": 0.2,
        },
    )
    args.paths = [value for value in args.path.split(",") if value]
    args.workers = [int(value) for value in args.workers.split(",") if value]
    args.servers = [value for value in args.servers.split(",") if value]
    if args.users < 1 or args.connections < 1 or args.threads < 1 or not args.workers or min(args.workers) < 1:
        parser.error("--users, --connections, --threads and --workers must be positive")
    if not args.paths:
        parser.error("--path: at least one page")
    if not args.servers or set(args.servers) - set(SERVERS):
        parser.error(f"--servers: expected some of {', '.join(SERVERS)}")
    args.rotate = min(args.rotate or args.users, args.users)
    args.json = args.json or RESULTS_DIR / f"home_page-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    print_summary(result)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"  results: {args.json}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
