"""Panel sync benchmark: one `sync_server_accounts` pass over N Marzban accounts into PostgreSQL.

    .venv/bin/python -m bench.panel_sync [--accounts 50000] [--page-size 1000] [--database-url URL] [--smoke]

It plants a known state, syncs it once over real HTTP and checks the outcome:
- our side: N users, subscriptions and VPN accounts on one Marzban server row, in a throwaway database;
- the panel (the Marzban emulator): the same accounts with matching expiries and limits, except 1 % that drift
  (expiry, traffic limit or enabled state differ), 0.5 % that are missing, plus 0.2 % orphans we do not know;
  every account has traffic, so each synced account gets a usage_daily row. Every panel account of ours carries
  our ownership mark in its note, so none is a name clash.

Three processes, so that each number belongs to what it claims to measure:
- this one (the orchestrator) creates, migrates and seeds the database, checks the result and drops it;
- the emulator, served by uvicorn in its own process: in a thread of the measured process it would share the GIL
  (and in the same event loop, the CPU) with the code under test, billing the panel's JSON rendering to our sync.
  A real panel runs on its own machine; here it gets its own core;
- the sync, in a fresh interpreter, so that its peak RSS is the sync's own and not the seeding's. Peak memory is
  `resource.getrusage().ru_maxrss`: the kernel's high-water mark of resident memory, which counts everything
  (C buffers of asyncpg, httpx and the JSON parser included) and costs nothing while running; on Linux it is
  reset (/proc/self/clear_refs) just before the sync starts. tracemalloc sees only Python allocations and slows
  allocation-heavy code several times, so it is opt-in (`--tracemalloc`). Flatness is shown by sampling RSS
  (/proc/self/statm) after every stored page.

Results go to bench/results/panel_sync.json (git-ignored); the exit status is 1 when a check fails. `--smoke`:
2,000 accounts in pages of 200, every check, the goal not judged (bench/smoke.py).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import logging
import multiprocessing
import os
import platform
import pstats
import resource
import statistics
import sys
import time
import traceback
import tracemalloc
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from app.kit.crypto import configure_cipher, new_key
from app.models import PanelKind, Server, Subscription, SubscriptionStatus, UsageDaily, User, VpnAccount
from app.models.ops import OutboxMessage
from app.panels.base import PanelAccount, VpnPanel
from app.panels.ownership import with_mark
from app.panels.registry import seal_credentials
from app.provisioning.service import SYNC_TOPIC, panel_username
from bench import smoke

DEFAULT_DATABASE_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
RESULTS = Path(__file__).parent / "results" / "panel_sync.json"
GOAL_SECONDS = 60.0
SEED_CHUNK = 5000
ADMIN = {"username": "admin", "password": "admin"}  # the emulator's default sudo admin
SECRET_KEY = "bench-secret-key-" + "x" * 32
USERNAME_PREFIX = "vs"  # the installation's panel username prefix

DAY = 86400
MIB = 1 << 20
GIB = 1 << 30
DRIFTS = ("expiry", "limit", "status")


# --------------------------------------------------------------------------------------------------------------
# The planted state: a pure function of the account index, computed independently by the seeder and the emulator


@dataclass(frozen=True)
class Plan:
    """Account i (0-based) is user, subscription and VPN account i + 1 (so its panel username is vs{i+1:06d})."""

    accounts: int
    now: int  # unix seconds when planned; every expiry derives from it
    missing_every: int = 200  # 0.5 %: we have the account, the panel does not
    drift_every: int = 100  # 1 %: the panel disagrees on expiry, traffic limit or enabled state
    ended_every: int = 20  # 5 %: the subscription ended and the panel account is disabled (agreeing, no drift)
    orphan_every: int = 500  # 0.2 %: a panel account we do not know
    limited_every: int = 4  # 25 %: a 100 GiB traffic limit, the same on both sides

    def username(self, i: int) -> str:
        return panel_username(USERNAME_PREFIX, i + 1)

    def owner_key(self, i: int) -> str:
        """Our ownership mark for account i, written in its panel note (a panel account without it is someone
        else's, and the sync leaves it alone as a clash)."""
        return f"bench{i:010d}"

    def fate(self, i: int) -> str:
        """Account i on the panel: "missing", one of DRIFTS, "ended" or "ok" (the first that applies, so the
        counts never overlap)."""
        if i % self.missing_every == self.missing_every - 1:
            return "missing"
        if i % self.drift_every == self.drift_every // 2 - 1:
            return DRIFTS[(i // self.drift_every) % len(DRIFTS)]
        if i % self.ended_every == self.ended_every // 2:
            return "ended"
        return "ok"

    def orphan_after(self, i: int) -> str | None:
        """The orphan listed right after account i, if any (orphans are spread over the whole listing)."""
        return f"orphan{i:07d}" if i % self.orphan_every == self.orphan_every - 1 else None

    def ends_at(self, i: int) -> int:
        if self.fate(i) == "ended":
            return self.now - 10 * DAY - i % DAY
        return self.now + 30 * DAY + i % DAY

    def limit(self, i: int) -> int | None:
        return 100 * GIB if i % self.limited_every == 0 else None

    def usage(self, i: int) -> int:
        return (i % 997 + 1) * MIB

    def panel_user(self, i: int) -> dict[str, Any]:
        """The emulator's add_user() fields for account i (not called for missing ones)."""
        fate = self.fate(i)
        expire, limit, status = self.ends_at(i), self.limit(i), "active"
        if fate == "ended" or fate == "status":
            status = "disabled"
        elif fate == "expiry":
            expire -= DAY
        elif fate == "limit":
            limit = (limit or 0) + GIB
        return {"expire": expire, "data_limit": limit, "status": status, "note": with_mark("bench", self.owner_key(i))}

    def expected(self) -> dict[str, Any]:
        fates = Counter(self.fate(i) for i in range(self.accounts))
        listed = [i for i in range(self.accounts) if self.fate(i) != "missing"]
        return {
            "fates": dict(sorted(fates.items())),
            "missing": fates["missing"],
            "drifted": sum(fates[kind] for kind in DRIFTS),
            "orphans": sum(1 for i in range(self.accounts) if self.orphan_after(i)),
            "updated": len(listed),
            "usage_rows": len(listed),
            "usage_bytes": sum(self.usage(i) for i in listed),
            "queued_account_ids": sorted(i + 1 for i in range(self.accounts) if self.fate(i) in ("missing", *DRIFTS)),
        }


# --------------------------------------------------------------------------------------------------------------
# The emulator process


def run_emulator(plan: Plan, port: int) -> None:
    """Seed a Marzban 0.7 emulator with the plan and serve it until terminated (target of a spawned process)."""
    import uvicorn

    from tests.emulators.marzban import MarzbanEmulator

    emulator = MarzbanEmulator("0.7")
    state = emulator.state
    for i in range(plan.accounts):
        if plan.fate(i) != "missing":
            username = plan.username(i)
            state.add_user(username, **plan.panel_user(i))
            state.record_usage(username, plan.usage(i))
        if (orphan := plan.orphan_after(i)) is not None:
            state.add_user(orphan, expire=plan.now + 30 * DAY)
    uvicorn.run(emulator, host="127.0.0.1", port=port, log_level="warning", lifespan="off", access_log=False)


def wait_for_emulator(base_url: str, process: multiprocessing.process.BaseProcess, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.is_alive():
            raise RuntimeError(f"the emulator exited with code {process.exitcode}")
        try:
            httpx.get(f"{base_url}/api/system", timeout=1)  # 401 without a token: up and seeded
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"the emulator did not answer on {base_url} within {timeout:.0f} s")


def process_cpu_seconds(pid: int) -> float | None:
    """utime + stime of another process (Linux /proc), to see how busy the emulator was."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------------------------------------------
# The measured process


def rss_bytes() -> int | None:
    """Current resident set size (Linux /proc/self/statm; None elsewhere)."""
    try:
        resident = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return resident * os.sysconf("SC_PAGE_SIZE")


def reset_peak_rss() -> bool:
    """Reset the kernel's high-water mark of this process's RSS (Linux >= 4.0), so that the peak read after the
    sync is the sync's, not start-up's (imports briefly peak higher than the sync does at small page sizes)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class MeteredPanel:
    """The real panel, timing each page fetch and sampling RSS each time the sync asks for the next page (by
    then it has stored the previous one). Everything else is passed through.

    Page one pays one-off costs (mapper configuration, statement compilation, connection set-up), so the peak
    RSS is also reset after it: `warm_up_peak` is the peak up to then, and the peak read at the end is the
    steady state's, which must not depend on how many accounts there are."""

    def __init__(self, panel: VpnPanel) -> None:
        self._panel = panel
        self.pages: list[dict[str, Any]] = []
        self.warm_up_peak: int | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._panel, name)

    async def iter_accounts(self, page_size: int) -> AsyncIterator[list[PanelAccount]]:
        pages = self._panel.iter_accounts(page_size)
        while True:
            asked = time.perf_counter()
            try:
                page = await anext(pages)
            except StopAsyncIteration:
                return
            fetched = time.perf_counter()
            yield page
            stored = time.perf_counter()
            sample = {"accounts": len(page), "fetch_s": fetched - asked, "store_s": stored - fetched}
            self.pages.append(sample | {"rss": rss_bytes()})
            if self.warm_up_peak is None:
                self.warm_up_peak = peak_rss_bytes()
                reset_peak_rss()


async def measure_sync(options: dict[str, Any]) -> dict[str, Any]:
    from app.config import load_settings
    from app.db import create_engine, create_sessionmaker
    from app.panels.registry import PanelRegistry
    from app.panels.sync import sync_server_accounts

    # The production engine and panel client (pool, idle ping, retries, circuit breaker), built from settings.
    settings = load_settings(
        _env_file=None,
        secret_key=SECRET_KEY,
        encryption_key=[options["encryption_key"]],
        database_url=options["database_url"],
        redis_url="",
        log_json=False,
    )
    configure_cipher(settings.encryption_key, settings.secret_key)
    engine = create_engine(settings)
    sessionmaker = create_sessionmaker(engine)
    registry = PanelRegistry(sessionmaker, settings)
    async with sessionmaker() as session:
        server = await session.get(Server, options["server_id"])
    assert server is not None
    panel = MeteredPanel(registry.for_server(server))

    profiler = cProfile.Profile() if options["profile"] else None
    if options["tracemalloc"]:
        tracemalloc.start()
    load_average = os.getloadavg()[0]  # other work on the machine (a shared CI box) shows up here
    peak_reset = reset_peak_rss()
    rss_before, cpu_before = rss_bytes(), cpu_seconds()
    started = time.perf_counter()
    if profiler:
        profiler.enable()
    report = await sync_server_accounts(sessionmaker, server, panel, page_size=options["page_size"])  # type: ignore[arg-type]
    if profiler:
        profiler.disable()
    elapsed = time.perf_counter() - started
    cpu = cpu_seconds() - cpu_before
    rss_after = rss_bytes()
    traced_peak = tracemalloc.get_traced_memory()[1] if options["tracemalloc"] else None
    tracemalloc.stop()
    await registry.aclose()
    await engine.dispose()
    if profiler:
        profiler.dump_stats(options["profile"])
    return {
        "seconds": elapsed,
        "load_average": round(load_average, 2),
        "cpu_seconds": cpu,
        "report": report.as_dict(),
        "pages": panel.pages,
        "rss_before": rss_before,
        "rss_after": rss_after,
        "peak_rss": max(peak_rss_bytes(), panel.warm_up_peak or 0),
        "steady_peak_rss": peak_rss_bytes() if peak_reset and panel.warm_up_peak is not None else None,
        "peak_rss_since": "sync start" if peak_reset else "process start",
        "tracemalloc_peak": traced_peak,
    }


def run_sync(options: dict[str, Any], channel: Any) -> None:
    """Target of the spawned sync process: measure, then send the result (or the traceback) back."""
    logging.basicConfig(level=logging.WARNING, format="  [sync] %(levelname)s %(name)s: %(message)s")
    try:
        channel.send(asyncio.run(measure_sync(options)))
    except BaseException:
        channel.send({"error": traceback.format_exc()})
        raise


# --------------------------------------------------------------------------------------------------------------
# The database: create, seed, check, drop


def database_name(label: str = "") -> str:
    """A fresh name for a run's throwaway database: `<prefix>_[<label>_]<random>`. Each run gets its own, so two
    runs at once (two test suites on one server, say) never share a database or drop each other's. The prefix is
    `$BENCH_DATABASE_PREFIX`, by default vpnshop_bench."""
    prefix = os.environ.get("BENCH_DATABASE_PREFIX") or "vpnshop_bench"
    return "_".join(part for part in (prefix, label, uuid.uuid4().hex[:10]) if part)


def throwaway_url(admin_url: str, name: str) -> str:
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


async def create_database(admin_url: str, name: str) -> str:
    from app.migrate import upgrade

    engine = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await engine.dispose()
    url = throwaway_url(admin_url, name)
    await upgrade(url)
    return url


async def drop_database(admin_url: str, name: str) -> None:
    engine = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await engine.dispose()


async def seed_database(url: str, plan: Plan, api_url: str) -> tuple[int, float]:
    """Insert the server and the plan's users, subscriptions and accounts in chunks (multi-row INSERTs); returns
    the server id and the seconds taken."""
    started = time.perf_counter()
    engine = create_async_engine(url)
    created = datetime.fromtimestamp(plan.now - 60 * DAY, UTC)
    try:
        async with engine.begin() as connection:
            server_id = (
                await connection.execute(
                    insert(Server)
                    .values(
                        name="bench-marzban",
                        panel_kind=PanelKind.MARZBAN,
                        api_url=api_url,
                        credentials_encrypted=seal_credentials(ADMIN),
                        location="bench",
                        capacity=plan.accounts * 2,
                    )
                    .returning(Server.id)
                )
            ).scalar_one()
            for start in range(0, plan.accounts, SEED_CHUNK):
                indexes = range(start, min(plan.accounts, start + SEED_CHUNK))
                await connection.execute(insert(User.__table__), [_user_row(i, created) for i in indexes])
                await connection.execute(
                    insert(Subscription.__table__), [_subscription_row(plan, i, created) for i in indexes]
                )
                await connection.execute(
                    insert(VpnAccount.__table__), [_account_row(plan, i, server_id, created) for i in indexes]
                )
            for table in ("users", "subscriptions", "vpn_accounts"):
                await connection.execute(
                    text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
                )
        # Fresh tables have no statistics; a long-lived database has them (autovacuum), so plan like it would.
        async with engine.connect() as connection:
            await connection.execute(text("ANALYZE"))
            await connection.commit()
    finally:
        await engine.dispose()
    return server_id, time.perf_counter() - started


def _user_row(i: int, created: datetime) -> dict[str, Any]:
    return {
        "id": i + 1,
        "telegram_id": 5_000_000_000 + i,
        "referral_code": f"bench{i:08d}",
        "language": "ru",
        "created_at": created,
        "updated_at": created,
    }


def _subscription_row(plan: Plan, i: int, created: datetime) -> dict[str, Any]:
    ended = plan.fate(i) == "ended"
    return {
        "id": i + 1,
        "user_id": i + 1,
        "status": SubscriptionStatus.EXPIRED if ended else SubscriptionStatus.ACTIVE,
        "starts_at": created,
        "ends_at": datetime.fromtimestamp(plan.ends_at(i), UTC),
        "created_at": created,
        "updated_at": created,
    }


def _account_row(plan: Plan, i: int, server_id: int, created: datetime) -> dict[str, Any]:
    username = plan.username(i)
    return {
        "id": i + 1,
        "user_id": i + 1,
        "subscription_id": i + 1,
        "server_id": server_id,
        "panel_username": username,
        "panel_id": username,
        "owner_key": plan.owner_key(i),
        "status": "active",
        "sub_token": f"bench-{i:08d}",
        "traffic_limit_bytes": plan.limit(i),
        "used_traffic_bytes": 0,
        "lifetime_traffic_bytes": 0,
        "provisioned_at": created,
        "created_at": created,
        "updated_at": created,
    }


async def database_facts(url: str) -> dict[str, Any]:
    """What the sync wrote, read back after it finished."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            usage_rows, usage_bytes = (
                await connection.execute(select(func.count(), func.coalesce(func.sum(UsageDaily.download_bytes), 0)))
            ).one()
            queued = (
                await connection.execute(
                    select(OutboxMessage.payload["account_id"].as_integer()).where(OutboxMessage.topic == SYNC_TOPIC)
                )
            ).scalars()
            synced, lifetime = (
                await connection.execute(
                    select(func.count(), func.coalesce(func.sum(VpnAccount.lifetime_traffic_bytes), 0)).where(
                        VpnAccount.last_synced_at.is_not(None)
                    )
                )
            ).one()
            postgres = (await connection.execute(text("SHOW server_version"))).scalar_one()
            return {
                "usage_rows": usage_rows,
                "usage_bytes": int(usage_bytes),
                "queued_account_ids": sorted(queued),
                "accounts_synced": synced,
                "lifetime_bytes": int(lifetime),
                "postgres": postgres,
            }
    finally:
        await engine.dispose()


def checks(expected: dict[str, Any], report: dict[str, Any], facts: dict[str, Any]) -> dict[str, bool]:
    queued = facts["queued_account_ids"]
    return {
        "orphans reported = planted": report["orphans"] == expected["orphans"],
        "no name clashes (every planted account carries our mark)": report["clashes"] == 0,
        "drift queued = planted": report["drift_fixed"] == expected["drifted"],
        "missing queued = planted": report["missing_created"] == expected["missing"],
        "accounts updated = listed": report["updated"] == expected["updated"] == facts["accounts_synced"],
        "usage rows = accounts with usage": facts["usage_rows"] == expected["usage_rows"],
        "usage bytes = planted traffic": facts["usage_bytes"] == expected["usage_bytes"] == facts["lifetime_bytes"],
        "outbox holds exactly the drifted and missing accounts": queued == expected["queued_account_ids"],
    }


# --------------------------------------------------------------------------------------------------------------
# Orchestration and reporting


def run(args: argparse.Namespace) -> dict[str, Any]:
    from tests.emulators.harness import free_port

    plan = Plan(accounts=args.accounts, now=int(time.time()))
    encryption_key = new_key()
    configure_cipher([encryption_key], SECRET_KEY)  # seals the server's credentials
    spawn = multiprocessing.get_context("spawn")
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    name = database_name()

    print(f"panel sync benchmark: {plan.accounts:,} accounts, pages of {args.page_size}")
    emulator = spawn.Process(target=run_emulator, args=(plan, port), name="marzban-emulator", daemon=True)
    emulator.start()  # seeds itself while we seed the database
    created = False
    try:
        url = asyncio.run(create_database(args.database_url, name))
        created = True
        server_id, seed_seconds = asyncio.run(seed_database(url, plan, base_url))
        print(f"  seeded PostgreSQL database {name} in {seed_seconds:.1f} s")
        wait_for_emulator(base_url, emulator)
        print(f"  emulator (Marzban 0.7, pid {emulator.pid}) serving on {base_url}")
        expected = plan.expected()

        options = {
            "database_url": url,
            "server_id": server_id,
            "page_size": args.page_size,
            "encryption_key": encryption_key,
            "profile": str(args.profile) if args.profile else None,
            "tracemalloc": args.tracemalloc,
        }
        receiver, sender = spawn.Pipe(duplex=False)
        worker = spawn.Process(target=run_sync, args=(options, sender), name="sync", daemon=True)
        emulator_cpu_before = process_cpu_seconds(emulator.pid)
        worker.start()
        sender.close()
        try:
            measured = receiver.recv()
        except EOFError:
            measured = {"error": "the sync process died without a result"}
        worker.join()
        emulator_cpu = process_cpu_seconds(emulator.pid)
        if "error" in measured:
            raise RuntimeError("the sync failed:\n" + measured["error"])
        facts = asyncio.run(database_facts(url))
    finally:
        emulator.terminate()
        emulator.join(timeout=10)
        if emulator.is_alive():
            emulator.kill()
        if created:
            asyncio.run(drop_database(args.database_url, name))
    if emulator_cpu is not None and emulator_cpu_before is not None:
        measured["emulator_cpu_seconds"] = emulator_cpu - emulator_cpu_before
    return summarize(args, plan, expected, measured, facts, seed_seconds)


def summarize(
    args: argparse.Namespace,
    plan: Plan,
    expected: dict[str, Any],
    measured: dict[str, Any],
    facts: dict[str, Any],
    seed_seconds: float,
) -> dict[str, Any]:
    report, pages = measured["report"], measured["pages"]
    rss = [page["rss"] for page in pages if page["rss"] is not None]
    fetch = sum(page["fetch_s"] for page in pages)
    store = sum(page["store_s"] for page in pages)
    seconds = measured["seconds"]
    result_checks = checks(expected, report, facts)
    return {
        "benchmark": "panel_sync",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", "-m", "bench.panel_sync", *sys.argv[1:]]),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "postgres": facts["postgres"],
            "load_average_at_start": measured["load_average"],
        },
        "accounts": plan.accounts,
        "page_size": args.page_size,
        "seconds": round(seconds, 3),
        "accounts_per_second": round(plan.accounts / seconds),
        "smoke": args.smoke,
        "goal_seconds": GOAL_SECONDS,
        "goal_met": None if args.smoke else seconds <= GOAL_SECONDS,  # a smoke run says nothing about speed
        "phases_seconds": {
            "panel_fetch": round(fetch, 3),  # HTTP + JSON + parsing into PanelAccount, summed over pages
            "page_store": round(store, 3),  # our query, bulk UPDATE, usage upsert, drift queueing
            "after_pages": round(seconds - fetch - store, 3),  # queueing the missing accounts
            "per_page": [round(page["fetch_s"] + page["store_s"], 3) for page in pages],  # flat = linear time
        },
        "cpu_seconds": {
            "sync_process": round(measured["cpu_seconds"], 3),
            "emulator_process": round(measured.get("emulator_cpu_seconds") or 0, 3),
        },
        "memory": {
            "method": (
                f"peak: getrusage ru_maxrss of the sync process since {measured['peak_rss_since']};"
                " samples: /proc/self/statm after each stored page"
            ),
            "rss_before_sync_mib": mib(measured["rss_before"]),
            "peak_rss_mib": mib(measured["peak_rss"]),
            "peak_rss_after_page_1_mib": mib(measured["steady_peak_rss"]),
            "rss_first_page_mib": mib(rss[0]) if rss else None,
            "rss_max_page_mib": mib(max(rss)) if rss else None,
            "rss_last_page_mib": mib(rss[-1]) if rss else None,
            "rss_growth_first_to_last_page_mib": mib(rss[-1] - rss[0]) if rss else None,
            "rss_steady_growth_mib": mib(steady_growth(rss)),
            "rss_after_sync_mib": mib(measured["rss_after"]),
            "tracemalloc_peak_mib": mib(measured["tracemalloc_peak"]),
            "rss_per_page_mib": [mib(value) for value in rss],
        },
        "report": {key: value for key, value in report.items() if key != "orphan_names"},
        "planted": {key: value for key, value in expected.items() if key != "queued_account_ids"},
        "written": {
            "usage_daily_rows": facts["usage_rows"],
            "outbox_drift": report["drift_fixed"],
            "outbox_missing": report["missing_created"],
            "outbox_total": len(facts["queued_account_ids"]),
        },
        "checks": result_checks,
        "ok": all(result_checks.values()),
        "seed_seconds": round(seed_seconds, 1),
        "plan": asdict(plan),
    }


def steady_growth(rss: list[int]) -> float | None:
    """RSS growth once warmed up: the median of the last quarter of the pages minus that of the quarter after
    page one (which allocates the connections, statement caches and response buffers). Noise-resistant, and
    about zero when memory does not depend on how many accounts were synced."""
    if len(rss) < 3:
        return None
    quarter = max(1, (len(rss) - 1) // 4)
    return statistics.median(rss[-quarter:]) - statistics.median(rss[1 : 1 + quarter])


def mib(value: int | float | None) -> float | None:
    return None if value is None else round(value / MIB, 1)


def print_summary(result: dict[str, Any]) -> None:
    memory, phases, cpu = result["memory"], result["phases_seconds"], result["cpu_seconds"]
    written, planted = result["written"], result["planted"]
    verdict = {True: "met", False: "MISSED", None: "not judged in a smoke run"}[result["goal_met"]]
    print(
        f"\n  synced {result['accounts']:,} accounts in {result['seconds']:.2f} s"
        f" = {result['accounts_per_second']:,} accounts/s (goal <= {result['goal_seconds']:.0f} s: {verdict})"
    )
    print(
        f"  time: panel fetch {phases['panel_fetch']:.2f} s, page store {phases['page_store']:.2f} s,"
        f" missing scan {phases['after_pages']:.2f} s; CPU: sync {cpu['sync_process']:.2f} s,"
        f" emulator {cpu['emulator_process']:.2f} s"
    )
    traced = memory["tracemalloc_peak_mib"]
    print(
        f"  memory: peak RSS {memory['peak_rss_mib']} MiB, {memory['peak_rss_after_page_1_mib']} MiB after page 1"
        f" (before sync {memory['rss_before_sync_mib']} MiB);"
        f" RSS after page 1 / max / last of {len(memory['rss_per_page_mib'])}: {memory['rss_first_page_mib']} /"
        f" {memory['rss_max_page_mib']} / {memory['rss_last_page_mib']} MiB; steady-state growth"
        f" {memory['rss_steady_growth_mib']} MiB" + (f"; tracemalloc peak {traced} MiB" if traced is not None else "")
    )
    print(
        f"  written: {written['usage_daily_rows']:,} usage_daily rows, outbox {written['outbox_drift']} drift"
        f" + {written['outbox_missing']} missing; {result['report']['orphans']} orphans reported"
        f" (planted: {planted['drifted']} drift, {planted['missing']} missing, {planted['orphans']} orphans)"
    )
    for name, passed in result["checks"].items():
        print(f"  [{'ok' if passed else 'FAIL'}] {name}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.panel_sync", description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=50_000, help="accounts on our side (default 50000)")
    parser.add_argument("--page-size", type=int, default=1000, help="panel page size passed to the sync")
    parser.add_argument(
        "--database-url",
        default=DEFAULT_DATABASE_URL,
        help="a PostgreSQL database to connect to for CREATE/DROP DATABASE of the throwaway one"
        " (default $TEST_POSTGRES_URL or postgresql+asyncpg://postgres@127.0.0.1:5432/postgres)",
    )
    parser.add_argument("--json", type=Path, default=RESULTS, help=f"where to write the results (default {RESULTS})")
    parser.add_argument("--profile", type=Path, help="write cProfile stats of the sync to this file (slows it)")
    parser.add_argument(
        "--tracemalloc", action="store_true", help="also report tracemalloc's peak (slows the sync several times)"
    )
    # Enough accounts for every planted case (orphans, drift of each kind, missing, ended) and ten pages.
    args = smoke.parse(parser, argv, {"accounts": 2000, "page_size": 200})
    if args.accounts < 1 or args.page_size < 1:
        parser.error("--accounts and --page-size must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    print_summary(result)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"  results: {args.json}")
    if args.profile:
        print(f"  profile: {args.profile} (top 15 by own time below)\n")
        pstats.Stats(str(args.profile)).sort_stats("tottime").print_stats(15)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
