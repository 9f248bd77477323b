"""Where the home page's time goes, for `bench.home_page --breakdown` and `--profile`.

- `cpu_breakdown`: CPU per request of the whole page and of each of its stages, measured in this process, one
  request after the other (no concurrency, no HTTP): the app's page called as an ASGI app, its stages called
  directly (initData check, the ORM session's work, the template), and the same for the bare page. CPU time
  (`time.process_time`) rather than wall time, so waiting for PostgreSQL does not count; the difference between
  the whole page and its stages is what the framework layers cost.
- `start_profiler` / `categorize`: py-spy (a sampling profiler; `pip install py-spy` into the virtualenv, it is
  not a dependency of the project) attached to a server under the benchmark's load, and its stacks summed by
  what the innermost recognised frame belongs to.
"""

from __future__ import annotations

import asyncio
import collections
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

# First match wins, walking a stack from its innermost frame outwards: a sample in `hmac` called from
# app/auth/telegram.py is the initData check, one in `re` called from SQLAlchemy is SQLAlchemy.
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("initData check", ("app/auth/telegram.py",)),
    (
        "Jinja2 rendering (templates, i18n, formatting)",
        ("jinja2/", "markupsafe/", ".html", "app/kit/i18n.py", "app/kit/formatting.py", "app/kit/templating.py"),
    ),
    ("asyncpg", ("asyncpg/",)),
    ("SQLAlchemy (session, ORM, Core, greenlet)", ("sqlalchemy/", "greenlet")),
    ("app middleware and metrics", ("app/middleware.py", "prometheus_client/")),
    ("threadpool (sync dependencies)", ("anyio/", "threading.py", "queue.py", "starlette/concurrency.py")),
    ("pydantic", ("pydantic",)),
    ("FastAPI (routing, dependencies)", ("fastapi/",)),
    ("Starlette (requests, responses)", ("starlette/",)),
    ("app code (routes, services)", ("app/", "bench/")),
    ("uvicorn, httptools, event loop", ("uvicorn/", "httptools", "asyncio/", "uvloop")),
]
_FILE = re.compile(r"\(([^()]*?)(?::\d+)?\)$")


# --------------------------------------------------------------------------------------------------------------
# py-spy under load


def py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def start_profiler(pid: int, seconds: float, output: Path) -> subprocess.Popen[bytes]:
    """Sample the server (all its worker processes) for `seconds`, only while a thread holds the GIL (CPU
    spent in Python and in the C code it calls), as collapsed stacks: one "frame;frame;… count" per line, which
    flame graph tools and speedscope.app read."""
    executable = py_spy()
    if executable is None:
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy (a benchmark tool, not a dependency)")
    command = [executable, "record", "--pid", str(pid), "--subprocesses", "--gil", "--rate", "250"]
    command += ["--duration", str(round(seconds)), "--format", "raw", "--output", str(output)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def categorize(stacks: Path) -> dict[str, Any]:
    """Shares of the samples by category, and the top functions by own samples."""
    by_category: collections.Counter[str] = collections.Counter()
    by_function: collections.Counter[str] = collections.Counter()
    total = 0
    for line in stacks.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")[1:]  # the first is the process
        if not frames or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        by_category[category(frames)] += samples
        by_function[frames[-1]] += samples
    return {
        "samples": total,
        "categories": {name: round(count / total, 3) for name, count in by_category.most_common()} if total else {},
        "top_functions": {name: round(count / total, 3) for name, count in by_function.most_common(15)}
        if total
        else {},
    }


def category(frames: list[str]) -> str:
    for frame in reversed(frames):
        match = _FILE.search(frame)
        filename = match.group(1) if match else frame
        for name, markers in CATEGORIES:
            if any(marker in filename for marker in markers):
                return name
    return "other (interpreter, stdlib)"


# --------------------------------------------------------------------------------------------------------------
# CPU per request, in process


async def cpu_per_call(calls: list[Callable[[], Awaitable[Any]]], warmup: int = 200) -> dict[str, float]:
    """Milliseconds of CPU and of wall time per call, over `calls` run one after the other after a warm-up."""
    for call in calls[:warmup]:
        await call()
    cpu, wall = time.process_time(), time.perf_counter()
    for call in calls:
        await call()
    count = len(calls)
    return {
        "cpu_ms": round(1000 * (time.process_time() - cpu) / count, 3),
        "wall_ms": round(1000 * (time.perf_counter() - wall) / count, 3),
    }


def asgi_get(app: Any, path: str, headers: dict[str, str]) -> Callable[[], Awaitable[None]]:
    """One GET through an ASGI app, as uvicorn calls it (without the HTTP parsing and the socket). The client
    address is X-Forwarded-For's, as uvicorn's --proxy-headers makes it (the app limits requests per address)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), *((k.encode(), v.encode()) for k, v in headers.items())],
        "client": (headers.get("x-forwarded-for", "127.0.0.1"), 40000),
        "server": ("127.0.0.1", 8000),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def call() -> None:
        status: list[int] = []

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])

        await app(dict(scope, state={}), receive, send)
        if status != [200]:
            raise RuntimeError(f"GET {path} answered {status} in process")

    return call


async def run_lifespan(app: Any) -> Callable[[], Awaitable[None]]:
    """Start an ASGI app's lifespan; returns the coroutine function that shuts it down."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    started, stopped = asyncio.Event(), asyncio.Event()
    failure: list[str] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"].endswith(".failed"):
            failure.append(message.get("message", ""))
        if message["type"].startswith("lifespan.startup"):
            started.set()
        else:
            stopped.set()

    task = asyncio.ensure_future(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, send))
    await inbox.put({"type": "lifespan.startup"})
    await started.wait()
    if failure:
        raise RuntimeError(f"lifespan start-up failed: {failure[0]}")

    async def shutdown() -> None:
        await inbox.put({"type": "lifespan.shutdown"})
        await asyncio.wait([task], timeout=10)

    return shutdown


async def cpu_breakdown(
    app_env: dict[str, str],
    bare_env: dict[str, str],
    path: str,
    requests: list[dict[str, str]],
    telegram: list[Any],
    rounds: int = 3,
) -> dict[str, dict[str, float]]:
    """CPU per request of each server's whole page in process, and of the app page's stages; the best of
    `rounds` interleaved rounds (the least disturbed by whatever else runs on the machine).

    `requests` are the headers of the requests (one per user), `telegram` the matching TelegramUser values."""
    from app.auth.telegram import verify_init_data
    from app.cabinet.service import overview
    from app.config import load_settings
    from app.kit.clock import utcnow
    from app.kit.i18n import Translator
    from app.main import create_app
    from app.users.service import upsert_from_telegram
    from bench.bare_home import OVERVIEW_SQL, USER_SQL, BareHome

    saved = dict(os.environ)
    os.environ.update(app_env | bare_env)
    try:
        settings = load_settings(_env_file=None)
        app, bare = create_app(settings), BareHome()
        stop_app, stop_bare = await run_lifespan(app), await run_lifespan(bare)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    sessionmaker, templates, pool = app.state.resources.sessionmaker, app.state.templates, bare.pool
    assert pool is not None
    views: list[Any] = []

    async def check(raw: str) -> None:
        verify_init_data(raw, settings.bot_token, max_age_seconds=settings.init_data_max_age_seconds, now=utcnow())

    async def orm(tg: Any) -> None:
        async with sessionmaker() as session:
            user = await upsert_from_telegram(session, tg, default_language=settings.default_language)
            views.append(await overview(session, user, trial_days=settings.trial_days))
            await session.commit()

    async def render(ov: Any) -> None:
        language = ov.user.language
        context = {"settings": settings, "zone": settings.zone, "language": language, "ov": ov, "csp_nonce": "x"}
        context |= {"request": None, "viewer": None, "csrf_token": "", "_": Translator(language, settings.zone)}
        templates.render_block("cabinet/home.html", "content", context)

    async def queries(tg: Any) -> None:
        async with pool.acquire() as connection:
            user = await connection.fetchrow(USER_SQL, tg.id)
            await connection.fetchrow(OVERVIEW_SQL, user["id"], 1)

    raws = [headers["authorization"].removeprefix("tma ") for headers in requests]
    stages: dict[str, Callable[[], list[Callable[[], Awaitable[Any]]]]] = {
        "app: whole page (ASGI, in process)": lambda: [asgi_get(app, path, headers) for headers in requests],
        "app stage: initData check": lambda: [lambda raw=raw: check(raw) for raw in raws],
        "app stage: ORM session (checkout, user, overview, commit)": lambda: [lambda tg=tg: orm(tg) for tg in telegram],
        "app stage: render cabinet/home.html block content": lambda: [lambda ov=ov: render(ov) for ov in views[-500:]],
        "bare: whole page (ASGI, in process)": lambda: [asgi_get(bare, path, headers) for headers in requests],
        "bare stage: asyncpg (acquire, the two queries, release)": lambda: [
            lambda tg=tg: queries(tg) for tg in telegram
        ],
    }
    results: dict[str, dict[str, float]] = {}
    try:
        for _ in range(rounds):
            for name, calls in stages.items():
                figures = await cpu_per_call(calls())
                if name not in results or figures["cpu_ms"] < results[name]["cpu_ms"]:
                    results[name] = figures
    finally:
        await stop_bare()
        await stop_app()
    parts = sum(value["cpu_ms"] for key, value in results.items() if key.startswith("app stage"))
    whole = results["app: whole page (ASGI, in process)"]["cpu_ms"]
    results["app: the rest (FastAPI, Starlette, middleware, dependencies; difference)"] = {
        "cpu_ms": round(whole - parts, 3)
    }
    return results


def run_breakdown(*args: Any, **kwargs: Any) -> dict[str, dict[str, float]]:
    """cpu_breakdown on uvloop when installed, as the servers run."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(cpu_breakdown(*args, **kwargs))
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(cpu_breakdown(*args, **kwargs))
