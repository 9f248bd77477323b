"""Reminder scan benchmark: the expiry-reminder job over N subscriptions on PostgreSQL.

    .venv/bin/python -m bench.reminder_scan [--subscriptions 1000000] [--spread year,month] [--database-url URL]
                                            [--smoke] [--json PATH]

For each spread it creates a throwaway database, seeds N users and subscriptions (and saved cards) with
server-side INSERT … SELECT generate_series, runs VACUUM ANALYZE, and times the production job
(`tasks.subscriptions.send_expiry_reminders`, the app's engine and outbox) twice at the same frozen instant:
the first run queues every reminder due, the second finds nothing new. Spreads of the end dates:

- year: uniform from 30 days ago to 335 days ahead (a shop selling monthly to yearly plans; the ended ones are
  expired), so about 0.8 % are due;
- month: every subscription ends within the next 30 days (the worst case: all monthly, all live), so 10 % are due.

The checks compare the job's work with an independent count (stage = CEIL of the days left, computed by
PostgreSQL): messages queued per stage, rows marked with the right stage and end date, the auto-renew promise,
nothing queued by the second run, and the batch query's plan on ix_subscriptions_status_ends_at. Results go to
bench/results/reminder_scan.json (git-ignored); the exit status is 1 when a check fails. `--smoke`: 20,000
subscriptions, the year spread, every check, the goal not judged (bench/smoke.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.config import load_settings
from app.kit.clock import FrozenClock, set_clock
from app.kit.crypto import new_key
from app.resources import open_resources
from app.subscriptions.reminders import BATCH
from bench import smoke
from bench.panel_sync import DEFAULT_DATABASE_URL, create_database, database_name, drop_database
from tasks.subscriptions import send_expiry_reminders

RESULTS = Path(__file__).parent / "results" / "reminder_scan.json"
GOAL_SECONDS = 5.0
SECRET_KEY = "bench-secret-key-" + "x" * 32
DAY = 86400
# (days from now of the earliest end date, of the latest)
SPREADS = {"year": (-30, 335), "month": (0, 30)}

# Deterministic pseudo-random fraction in [0, 1) of row i (a multiplicative hash), so a run is reproducible.
FRACTION = "(((i::bigint * 2654435761) % 1000003)::float8 / 1000003)"


async def seed(url: str, subscriptions: int, spread: str, now: datetime) -> float:
    """Users, one plan, subscriptions and saved cards, all built by PostgreSQL itself; returns the seconds."""
    started = time.perf_counter()
    low, high = SPREADS[spread]
    created = now - timedelta(days=60)
    params = {"n": subscriptions, "now": now, "created": created, "low": low * DAY, "span": (high - low) * DAY}
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO plans (id, code, name, duration_days, discount_percent, is_active, sort_order,"
                    " features, traffic_strategy, created_at, updated_at)"
                    ' VALUES (1, \'month\', \'{"ru": "Месяц", "en": "Month"}\', 30, 0, true, 0, \'[]\','
                    " 'no_reset', :created, :created)"
                ),
                params,
            )
            await connection.execute(
                text(
                    "INSERT INTO users (id, telegram_id, language, referral_code, is_blocked, marketing_opt_out,"
                    " is_demo, created_at, updated_at)"
                    " SELECT i, 6000000000 + i, CASE WHEN i % 4 = 0 THEN 'en' ELSE 'ru' END, 'bench' || i,"
                    " false, false, false, :created, :created FROM generate_series(1, :n) AS i"
                ),
                params,
            )
            # Ended ones are expired (the expiry job ended them); a third of those ending within 7 days are trials
            # (no plan, no auto-renew); 80 % of the paid ones renew automatically.
            await connection.execute(
                text(
                    "INSERT INTO subscriptions (id, user_id, plan_id, status, is_trial, starts_at, ends_at, auto_renew,"
                    " renewal_failures, created_at, updated_at)"
                    " SELECT i, i, CASE WHEN trial THEN NULL ELSE 1 END,"
                    " CASE WHEN ends_at <= :now THEN 'expired' WHEN trial THEN 'trial' ELSE 'active' END,"
                    " trial, LEAST(ends_at, :now) - interval '30 days', ends_at, NOT trial AND i % 5 <> 0, 0,"
                    " :created, :created"
                    " FROM (SELECT i, CAST(:now AS timestamptz) + make_interval("
                    f"         secs => CAST(:low AS float8) + CAST(:span AS float8) * {FRACTION}) AS ends_at"
                    "       FROM generate_series(1, :n) AS i) AS planned,"
                    " LATERAL (SELECT ends_at > :now AND ends_at <= :now + interval '7 days' AND i % 3 = 0 AS trial)"
                    " AS kind"
                ),
                params,
            )
            # 40 % of the users saved a YooKassa card (which the shop charges itself).
            await connection.execute(
                text(
                    "INSERT INTO saved_payment_methods (user_id, provider, method_type, title, secret_encrypted,"
                    " fingerprint, is_active, created_at)"
                    " SELECT i, 'yookassa', 'bank_card', 'Visa •••• 4242', 'sealed', 'fp' || i, true, :created"
                    " FROM generate_series(1, :n) AS i WHERE i % 5 < 2"
                ),
                params,
            )
            for table in ("plans", "users", "subscriptions", "saved_payment_methods"):
                await connection.execute(
                    text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
                )
        # Fresh tables have no statistics; a long-lived database has them (autovacuum), so plan like it would.
        async with engine.connect() as connection:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            await connection.execute(text("VACUUM ANALYZE"))
    finally:
        await engine.dispose()
    return time.perf_counter() - started


async def expected(url: str, now: datetime) -> dict[str, Any]:
    """What the job should queue, counted independently of its range arithmetic."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                text(
                    "SELECT CEIL(EXTRACT(EPOCH FROM ends_at - :now) / 86400)::int AS stage, status,"
                    " count(*) AS n,"
                    " count(*) FILTER (WHERE auto_renew AND plan_id IS NOT NULL AND EXISTS ("
                    "   SELECT 1 FROM saved_payment_methods m WHERE m.user_id = s.user_id AND m.is_active)) AS renewing"
                    " FROM subscriptions s WHERE status IN ('active', 'trial')"
                    " AND ends_at > :now AND ends_at <= :now + interval '3 days' GROUP BY 1, 2"
                ),
                {"now": now},
            )
            stages = {3: 0, 2: 0, 1: 0}
            renewing = 0
            for stage, status, count, renews in rows:
                if status == "active" or stage == 1:
                    stages[stage] += count
                if status == "active":
                    renewing += renews
            counts = (await connection.execute(text("SELECT status, count(*) FROM subscriptions GROUP BY 1"))).all()
        return {"stages": stages, "renewing": renewing, "statuses": {status: n for status, n in counts}}
    finally:
        await engine.dispose()


async def facts(url: str, now: datetime) -> dict[str, Any]:
    """What the job wrote, read back."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            one = connection.scalar
            plan = "\n".join(
                row[0]
                for row in await connection.execute(
                    text(
                        # The shape of the job's batch query (app.subscriptions.reminders._mark_batch).
                        "EXPLAIN SELECT id FROM subscriptions WHERE status = 'active'"
                        " AND ends_at > :now AND ends_at <= :now + interval '1 day'"
                        " AND (last_reminder_for IS NULL OR last_reminder_days IS NULL"
                        "      OR NOT (last_reminder_for = ends_at AND last_reminder_days <= 1))"
                        " ORDER BY ends_at, id LIMIT 5000"
                    ),
                    {"now": now},
                )
            )
            return {
                "postgres": await one(text("SHOW server_version")),
                "messages": await one(text("SELECT count(*) FROM outbox WHERE topic = 'notify.user'")),
                "distinct_keys": await one(text("SELECT count(DISTINCT dedupe_key) FROM outbox")),
                "promised_renewal": await one(
                    text("SELECT count(*) FROM outbox WHERE (payload -> 'data' ->> 'auto_renew')::boolean")
                ),
                "marked": await one(text("SELECT count(*) FROM subscriptions WHERE last_reminder_for = ends_at")),
                "marked_wrong_stage": await one(
                    text(
                        "SELECT count(*) FROM subscriptions WHERE last_reminder_for IS NOT NULL AND"
                        " last_reminder_days <> CEIL(EXTRACT(EPOCH FROM ends_at - :now) / 86400)::int"
                    ),
                    {"now": now},
                ),
                "stage_1_plan": plan,
            }
    finally:
        await engine.dispose()


async def measure(url: str, now: datetime) -> list[dict[str, Any]]:
    """Two runs of the job at the same frozen instant, with the app's own resources (engine, pool, providers)."""
    settings = load_settings(
        _env_file=None,
        secret_key=SECRET_KEY,
        encryption_key=[new_key()],
        database_url=url,
        redis_url="",
        log_json=False,
        # YooKassa on (never called), with autopayments (without them it saves and charges no card): the reminders
        # ask which saved cards the shop can charge.
        yookassa_shop_id="bench",
        yookassa_secret_key="bench",
        yookassa_recurring_enabled=True,
    )
    resources = open_resources(settings)
    set_clock(FrozenClock(now))
    runs = []
    try:
        async with resources.engine.connect() as connection:  # a warm pool, as in a running worker
            await connection.execute(text("SELECT 1"))
        for _ in range(2):
            cpu, started = time.process_time(), time.perf_counter()
            queued = await send_expiry_reminders({"resources": resources, "settings": settings})
            runs.append(
                {
                    "seconds": round(time.perf_counter() - started, 3),
                    "cpu_seconds": round(time.process_time() - cpu, 3),
                    "queued": queued,
                }
            )
    finally:
        set_clock(None)
        await resources.aclose()
    return runs


def scenario(args: argparse.Namespace, spread: str) -> dict[str, Any]:
    now = datetime.now(UTC).replace(microsecond=0)
    name = database_name()
    print(f"reminder scan, {spread} spread: {args.subscriptions:,} subscriptions")
    url = asyncio.run(create_database(args.database_url, name))
    try:
        seed_seconds = asyncio.run(seed(url, args.subscriptions, spread, now))
        print(f"  seeded {name} in {seed_seconds:.1f} s")
        planned = asyncio.run(expected(url, now))
        load = os.getloadavg()
        runs = asyncio.run(measure(url, now))
        written = asyncio.run(facts(url, now))
    finally:
        asyncio.run(drop_database(args.database_url, name))
    due = sum(planned["stages"].values())
    first, second = runs
    checks = {
        "first run queued the due reminders of each stage": first["queued"]
        == {f"days_{stage}": count for stage, count in planned["stages"].items()},
        "one outbox message per reminder, unique keys": written["messages"] == written["distinct_keys"] == due,
        "every reminded row marked for its end date": written["marked"] == due,
        "every mark at its stage": written["marked_wrong_stage"] == 0,
        "auto-renew promised exactly where a card renews": written["promised_renewal"] == planned["renewing"],
        "second run queued nothing": sum(second["queued"].values()) == 0,
        "the scan uses ix_subscriptions_status_ends_at": "ix_subscriptions_status_ends_at" in written["stage_1_plan"],
    }
    return {
        "spread": spread,
        "spread_days": SPREADS[spread],
        "subscriptions": args.subscriptions,
        "statuses": planned["statuses"],
        "due": planned["stages"],
        "promised_renewal": planned["renewing"],
        "runs": runs,
        # A smoke run says nothing about speed.
        "goal_met": None if args.smoke else all(run["seconds"] <= GOAL_SECONDS for run in runs),
        "checks": checks,
        "ok": all(checks.values()),
        "seed_seconds": round(seed_seconds, 1),
        "load_average_at_start": [round(value, 2) for value in load],
        "postgres": written["postgres"],
        "stage_1_plan": written["stage_1_plan"],
    }


def print_scenario(result: dict[str, Any]) -> None:
    verdict = {True: "met", False: "MISSED", None: "not judged in a smoke run"}[result["goal_met"]]
    due = result["due"]
    print(
        f"  due: {sum(due.values()):,} (3 days {due[3]:,}, 2 days {due[2]:,}, 1 day {due[1]:,});"
        f" statuses {result['statuses']}"
    )
    for label, run in zip(("first run", "second run"), result["runs"], strict=True):
        print(
            f"  {label}: {run['seconds']:.2f} s (CPU of this process {run['cpu_seconds']:.2f} s),"
            f" queued {sum(run['queued'].values()):,}"
        )
    print(f"  goal <= {GOAL_SECONDS:.0f} s per run: {verdict}")
    for name, passed in result["checks"].items():
        print(f"  [{'ok' if passed else 'FAIL'}] {name}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.reminder_scan", description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscriptions", type=int, default=1_000_000, help="subscriptions (default 1000000)")
    parser.add_argument(
        "--spread", default="year,month", help="comma-separated spreads of end dates: year, month (default both)"
    )
    parser.add_argument(
        "--database-url",
        default=DEFAULT_DATABASE_URL,
        help="a PostgreSQL database to connect to for CREATE/DROP DATABASE of the throwaway ones"
        " (default $TEST_POSTGRES_URL or postgresql+asyncpg://postgres@127.0.0.1:5432/postgres)",
    )
    parser.add_argument("--json", type=Path, default=RESULTS, help=f"where to write the results (default {RESULTS})")
    # Smoke: the year spread only. The month spread's check of the batch query's plan depends on the size: at
    # 20,000 (and 160,000) subscriptions PostgreSQL plans a bitmap scan and a sort there, cheaper when small.
    args = smoke.parse(parser, argv, {"subscriptions": 20_000, "spread": "year"})
    args.spreads = [spread.strip() for spread in args.spread.split(",") if spread.strip()]
    if args.subscriptions < 1 or not args.spreads or not set(args.spreads) <= set(SPREADS):
        parser.error(f"--subscriptions must be positive and --spread one or more of {', '.join(SPREADS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    scenarios = []
    for spread in args.spreads:
        result = scenario(args, spread)
        print_scenario(result)
        scenarios.append(result)
    report = {
        "benchmark": "reminder_scan",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", "-m", "bench.reminder_scan", *sys.argv[1:]]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "batch": BATCH,
        "smoke": args.smoke,
        "goal_seconds": GOAL_SECONDS,
        "scenarios": scenarios,
        "ok": all(result["ok"] for result in scenarios),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"  results: {args.json}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
