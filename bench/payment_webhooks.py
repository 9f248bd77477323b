"""Benchmark: verified payment-webhook completions per second over HTTP on PostgreSQL, each event delivered ten
times (issue 5). Goals: ≥ 300 completions/s, zero double credits, zero lost.

    .venv/bin/python -m bench.payment_webhooks [--payments 3000] [--copies 10] [--concurrency 64] [--workers 2]
                                               [--smoke] [--json PATH]

It creates a throwaway database (vpnshop_bench_webhooks_<random>), migrates it, and seeds users with pending
demo-provider checkouts whose invoices are paid (the demo provider's own table), then builds each payment's signed
notification. The app runs under uvicorn (`--workers`, as `vpnshop serve`) with Redis for jobs and no worker, so
the run measures webhook handling alone (verification, the state machine with its row lock, activation and the
outbox rows) and not the panel calls that follow. The deliveries (payments × copies) are shuffled and posted by
`--concurrency` clients. A completion is one delivery verified, applied or recognised as a duplicate, and
answered 200; the figure compared with the goal is completions per second (payments credited per second, a
tenth of it with ten copies, is reported beside it). Afterwards every payment
must be succeeded exactly once, every subscription must hold exactly the plan's 30 days, and there must be one
event row and one "payment succeeded" notification per payment. Results go to bench/results/payment_webhooks.json
(git-ignored, the server's log beside it); the exit status is 1 when a check fails. `--smoke`: 100 payments, 3
copies each, 16 clients, one worker, every check, the goal not judged (bench/smoke.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from app.kit.crypto import configure_cipher, new_key
from app.models import (
    DemoInvoice,
    DemoInvoiceStatus,
    OutboxMessage,
    PanelKind,
    Payment,
    PaymentEvent,
    PaymentStatus,
    Plan,
    PlanPrice,
    Server,
    Subscription,
    User,
)
from app.notifications.service import USER_TOPIC
from app.panels.registry import seal_credentials
from app.payments.providers.demo import notification, signing_key
from bench import smoke
from bench.home_page import SECRET_KEY, Stack, app_env, free_port, server_command, serving, wait_until_up
from bench.panel_sync import DEFAULT_DATABASE_URL, create_database, database_name, drop_database

RESULTS = Path(__file__).parent / "results" / "payment_webhooks.json"
GOAL_COMPLETIONS_PER_SECOND = 300
PRICE_MINOR, PLAN_DAYS = 19900, 30


async def seed(url: str, payments: int) -> list[tuple[bytes, dict[str, str]]]:
    """Users with one pending, paid-at-the-provider demo checkout each; returns each payment's notification."""
    engine = create_async_engine(url)
    key = signing_key(SECRET_KEY)
    now = datetime.now(UTC)
    deliveries = []
    async with engine.begin() as connection:
        plan_id = (
            await connection.execute(
                insert(Plan)
                .values(
                    code="month",
                    name={"en": "month"},
                    duration_days=PLAN_DAYS,
                    discount_percent=0,
                    is_active=True,
                    sort_order=0,
                    features={},
                    created_at=now,
                    updated_at=now,
                )
                .returning(Plan.id)
            )
        ).scalar_one()
        await connection.execute(insert(PlanPrice).values(plan_id=plan_id, currency="RUB", amount_minor=PRICE_MINOR))
        # A demo-panel server with room for every account (placement refuses a full server).
        await connection.execute(
            insert(Server).values(
                name="bench-demo",
                panel_kind=PanelKind.DEMO,
                api_url="internal://bench-demo",
                credentials_encrypted=seal_credentials({}),
                location="nl",
                capacity=max(1000, payments),
            )
        )
    users, rows, invoices = [], [], []
    for i in range(payments):
        users.append(
            {
                "id": i + 1,
                "telegram_id": 7_000_000_000 + i,
                "referral_code": f"b{i}",
                "language": "ru",
                "is_blocked": False,
                "marketing_opt_out": False,
                "is_demo": False,
                "created_at": now,
                "updated_at": now,
            }
        )
        order_id, external_id = str(uuid.uuid4()), f"demo_bench_{i}"
        rows.append(
            {
                "public_id": order_id,
                "user_id": i + 1,
                "plan_id": plan_id,
                "provider": "demo",
                "amount_minor": PRICE_MINOR,
                "currency": "RUB",
                "status": PaymentStatus.PENDING,
                "external_id": external_id,
                "idempotency_key": uuid.uuid4().hex,
                "days": PLAN_DAYS,
                "bonus_days": 0,
                "is_renewal": False,
                "details": {},
                "expires_at": now + timedelta(hours=1),
                "created_at": now,
                "updated_at": now,
            }
        )
        invoice = DemoInvoice(
            external_id=external_id,
            order_id=order_id,
            amount_minor=PRICE_MINOR,
            currency="RUB",
            description="bench",
            return_url="https://vpn.example.com",
            status=DemoInvoiceStatus.PAID,
            save_card=False,
            deliveries=0,
            expires_at=now + timedelta(hours=1),
            paid_at=now,
        )
        deliveries.append(notification(invoice, key))
        invoices.append(
            {
                column: getattr(invoice, column)
                for column in (
                    "external_id",
                    "order_id",
                    "amount_minor",
                    "currency",
                    "description",
                    "return_url",
                    "status",
                    "save_card",
                    "deliveries",
                    "expires_at",
                    "paid_at",
                )
            }
            | {"created_at": now, "updated_at": now}
        )
    async with engine.begin() as connection:
        for table, values in ((User, users), (Payment, rows), (DemoInvoice, invoices)):
            for start in range(0, len(values), 5000):
                await connection.execute(insert(table), values[start : start + 5000])
        await connection.execute(text("SELECT setval('users_id_seq', (SELECT max(id) FROM users))"))
    await engine.dispose()
    return deliveries


async def deliver(base_url: str, deliveries: list[tuple[bytes, dict[str, str]]], concurrency: int) -> dict[str, Any]:
    """Post every delivery with `concurrency` clients. aiohttp rather than httpx: the client shares the machine's
    two cores with the app and PostgreSQL, and httpx costs several times more CPU per request."""
    queue: asyncio.Queue[tuple[bytes, dict[str, str]]] = asyncio.Queue()
    for item in deliveries:
        queue.put_nowait(item)
    statuses: dict[int, int] = {}
    outcomes: dict[str, int] = {}
    errors: list[str] = []  # the first few non-200 answers, for the record
    url = f"{base_url}/api/payments/webhook/demo"

    async def client(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            body, headers = queue.get_nowait()
            async with session.post(url, data=body, headers=headers) as response:
                statuses[response.status] = statuses.get(response.status, 0) + 1
                if response.status == 200:
                    for outcome in (await response.json())["outcomes"]:
                        outcomes[outcome] = outcomes.get(outcome, 0) + 1
                elif len(errors) < 5:
                    errors.append(f"{response.status} {(await response.text())[:300]}")

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "statuses": statuses, "outcomes": outcomes, "errors": errors}


async def verify(url: str, payments: int) -> dict[str, int]:
    engine = create_async_engine(url)
    async with engine.connect() as connection:

        async def one(statement: Any) -> int:
            return (await connection.execute(statement)).scalar_one()

        days = func.round(func.extract("epoch", Subscription.ends_at - Subscription.starts_at) / 86400)
        facts = {
            "succeeded": await one(select(func.count()).where(Payment.status == PaymentStatus.SUCCEEDED)),
            "not_succeeded": await one(select(func.count()).where(Payment.status != PaymentStatus.SUCCEEDED)),
            "subscriptions": await one(select(func.count()).select_from(Subscription)),
            "users_with_two_subscriptions": await one(
                select(func.count()).select_from(
                    select(Subscription.user_id).group_by(Subscription.user_id).having(func.count() > 1).subquery()
                )
            ),
            "subscriptions_not_30_days": await one(select(func.count()).where(days != PLAN_DAYS)),
            "events": await one(select(func.count()).select_from(PaymentEvent)),
            "notifications": await one(select(func.count()).where(OutboxMessage.topic == USER_TOPIC)),
        }
    await engine.dispose()
    facts["double_credits"] = (
        facts["users_with_two_subscriptions"]
        + facts["subscriptions_not_30_days"]
        + max(0, facts["notifications"] - payments)
    )
    facts["lost"] = facts["not_succeeded"] + (payments - facts["subscriptions"])
    return facts


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--payments", type=int, default=3000)
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--database", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--json", type=Path, default=RESULTS, help=f"where to write the results (default {RESULTS})")
    return smoke.parse(parser, argv, {"payments": 100, "copies": 3, "concurrency": 16, "workers": 1})


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    encryption_key = new_key()
    configure_cipher([encryption_key], SECRET_KEY)
    name = database_name("webhooks")
    url = asyncio.run(create_database(args.database, name))
    log_path = args.json.with_name(f"{args.json.stem}.server.log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        notifications = asyncio.run(seed(url, args.payments))
        deliveries = [item for item in notifications for _ in range(args.copies)]
        random.Random(5).shuffle(deliveries)
        port = free_port()
        env = app_env(url, args.redis, encryption_key) | {
            "DEMO_PAYMENTS_ENABLED": "true",
            "DB_POOL_SIZE": str(max(10, args.concurrency // args.workers)),
        }
        base_url = f"http://127.0.0.1:{port}"
        with serving(server_command("app", port, args.workers, Stack.detect()), env, log_path) as process:
            wait_until_up(base_url, process, log_path)
            run = asyncio.run(deliver(base_url, deliveries, args.concurrency))
        facts = asyncio.run(verify(url, args.payments))
    finally:
        asyncio.run(drop_database(args.database, name))
    completions_per_second = run["statuses"].get(200, 0) / run["seconds"]
    checks = {
        "every delivery answered 200": run["statuses"] == {200: len(deliveries)},
        "every payment succeeded once, with one subscription": facts["lost"] == 0,
        "no double credit (one subscription of the plan's days, one notification per payment)": (
            facts["double_credits"] == 0
        ),
        "one event row per payment": facts["events"] == args.payments,
        "each payment applied once, every other copy a duplicate": run["outcomes"]
        == {"applied": args.payments, "duplicate": args.payments * (args.copies - 1)},
    }
    result = {
        "benchmark": "payment_webhooks",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "smoke": args.smoke,
        "payments": args.payments,
        "copies": args.copies,
        "deliveries": len(deliveries),
        "concurrency": args.concurrency,
        "workers": args.workers,
        "seconds": round(run["seconds"], 2),
        "completions_per_second": round(completions_per_second, 1),
        "payments_credited_per_second": round(facts["succeeded"] / run["seconds"], 1),
        "statuses": run["statuses"],
        "outcomes": run["outcomes"],
        "errors": run["errors"],
        "facts": facts,
        "goal_completions_per_second": GOAL_COMPLETIONS_PER_SECOND,
        # A smoke run says nothing about speed.
        "goals_met": None if args.smoke else completions_per_second >= GOAL_COMPLETIONS_PER_SECOND,
        "checks": checks,
        "ok": all(checks.values()),
    }
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    for check, passed in checks.items():
        print(f"  [{'ok' if passed else 'FAIL'}] {check}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
