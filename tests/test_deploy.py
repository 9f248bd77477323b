"""The processes as the compose stack runs them — `vpnshop serve` with 2 workers, `vpnshop worker`, `vpnshop bot`
(PostgreSQL, Redis, the Telegram emulator over HTTP) — scraped and read the way Prometheus and an operator do:
the web's scrape is the sum of its workers, every metric a Grafana dashboard or an alert rule queries is in the
scrapes, and every line each process logs is one JSON object."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import yaml

from tests.emulators.harness import Plug, free_port, serve
from tests.emulators.telegram import TelegramBotApiEmulator
from tests.processes import production_stack, wait_for

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
OUTPUT = Path("test-output/processes")
METRIC = re.compile(r"\bvpnshop_[a-z0-9_]+")
HEALTHZ = 'vpnshop_http_requests_total{method="GET",route="/healthz",status="200"}'
SECRET_TOKEN = "Zx9-secret-token-never-logged"

plug = Plug()


def queried_metrics() -> dict[str, set[str]]:
    """Metric name → where it is queried (dashboard panel or alert)."""
    queries: list[tuple[str, str]] = []
    for path in sorted((DEPLOY / "grafana" / "dashboards").glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            queries += [(f"{path.stem}: {panel['title']}", target["expr"]) for target in panel.get("targets", [])]
    for group in yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"]:
        queries += [(f"alert {rule['alert']}", rule["expr"]) for rule in group["rules"]]
    names: dict[str, set[str]] = {}
    for where, expr in queries:
        for name in METRIC.findall(expr):
            names.setdefault(name, set()).add(where)
    return names


def exposed(scrape: str) -> set[str]:
    """Every series name a scrape offers: sample names, and the families it declares (a histogram's declared
    name stands for its _bucket/_count/_sum)."""
    names: set[str] = set()
    for line in scrape.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names.add(name)
            if kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_count", f"{name}_sum"}
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def value(scrape: str, series: str) -> float | None:
    for line in scrape.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


@dataclass
class Observed:
    scrapes: dict[str, str] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)
    exit_codes: dict[str, int] = field(default_factory=dict)
    healthz_answered: int = 0


@pytest.fixture(scope="module")
async def observed(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Observed]:
    emulator = TelegramBotApiEmulator()
    plug.app = emulator.app
    result = Observed()
    ports = {"web": free_port(), "worker": free_port(), "bot": free_port()}
    web_url = f"http://127.0.0.1:{ports['web']}"
    with serve(plug) as telegram_url:
        async with production_stack(LOG_JSON="true", BOT_TOKEN=emulator.token, TELEGRAM_API_URL=telegram_url) as stack:
            web = stack.start("serve", PORT=str(ports["web"]), SERVE_WORKERS="2", ACCESS_LOG="true")
            worker = stack.start("worker", WORKER_METRICS_PORT=str(ports["worker"]))
            bot = stack.start("bot", BOT_METRICS_PORT=str(ports["bot"]))
            running = {"web": web, "worker": worker, "bot": bot}
            try:
                async with httpx.AsyncClient(timeout=10) as http:

                    async def healthz() -> bool:
                        # A new connection each time, so the kernel hands requests to both workers.
                        try:
                            async with httpx.AsyncClient(timeout=5) as fresh:
                                answered = (await fresh.get(f"{web_url}/healthz")).status_code == 200
                        except httpx.TransportError:
                            return False
                        result.healthz_answered += answered
                        return answered

                    async def both_workers_served() -> bool:
                        await healthz()
                        pids = {
                            line["pid"]
                            for line in map(json.loads, filter(None, web.log.read_text().splitlines()))
                            if line.get("logger") == "vpnshop.access" and line.get("path") == "/healthz"
                        }
                        return len(pids) == 2

                    try:
                        await wait_for(both_workers_served, within=120, what="both web workers answering /healthz")
                    except AssertionError as exc:
                        raise AssertionError(f"{exc}; the web's log:\n{web.log.read_text()[-3000:]}") from None
                    await http.get(f"{web_url}/sub/{SECRET_TOKEN}", headers={"X-Request-ID": "probe-1"})

                    emulator.user_message(6161, "/start", language_code="en")
                    await wait_for(lambda: emulator.messages_to(6161), within=60, what="the bot's answer to /start")

                    async def scrape(name: str) -> str:
                        url = web_url if name == "web" else f"http://127.0.0.1:{ports[name]}"
                        try:
                            return (await http.get(f"{url}/metrics")).text
                        except httpx.TransportError:
                            return ""

                    async def worker_ran_a_job() -> bool:
                        return 'vpnshop_job_runs_total{job="dispatch_outbox",outcome="ok"}' in await scrape("worker")

                    await wait_for(worker_ran_a_job, within=60, what="a job run counted by the worker")
                    for name in running:
                        result.scrapes[name] = await scrape(name)
                    # A second scrape of the web answers the same sum, whichever worker serves it.
                    result.scrapes["web (again)"] = await scrape("web")
            finally:
                for name, process in running.items():
                    result.exit_codes[name], result.logs[name] = process.stop()
    plug.app = None
    keep_for_reading(result)
    yield result


def keep_for_reading(result: Observed) -> None:
    """The scrapes and logs, in test-output/ for a person (or CI's artifacts) to read."""
    OUTPUT.mkdir(parents=True, exist_ok=True)
    for name, text in [*result.scrapes.items(), *((f"{n}.log", t) for n, t in result.logs.items())]:
        (OUTPUT / name.replace(" ", "_").replace("(", "").replace(")", "")).write_text(text)


async def test_one_web_scrape_is_the_sum_of_both_workers(observed: Observed) -> None:
    first, again = value(observed.scrapes["web"], HEALTHZ), value(observed.scrapes["web (again)"], HEALTHZ)
    assert first == again == observed.healthz_answered, (first, again, observed.healthz_answered)


async def test_every_metric_a_dashboard_or_alert_queries_is_scraped(observed: Observed) -> None:
    offered = set().union(*(exposed(text) for text in observed.scrapes.values()))
    missing = {name: sorted(where) for name, where in queried_metrics().items() if name not in offered}
    assert not missing, missing


async def test_each_process_serves_its_own_metrics(observed: Observed) -> None:
    web, worker, bot = (exposed(observed.scrapes[name]) for name in ("web", "worker", "bot"))
    # Business gauges come from the web (read from the database), job runs from the worker, updates from the bot.
    assert {"vpnshop_subscriptions_live", "vpnshop_outbox_oldest_due_seconds", "vpnshop_http_requests_total"} <= web
    assert 'vpnshop_job_runs_total{job="dispatch_outbox",outcome="ok"}' in observed.scrapes["worker"]
    assert "vpnshop_job_duration_seconds_bucket" in worker
    assert value(observed.scrapes["bot"], 'vpnshop_bot_updates_total{outcome="ok"}') >= 1
    assert "vpnshop_subscriptions_live" not in worker | bot  # computed once, by the web, not per process


async def test_every_process_logs_json_lines_only(observed: Observed) -> None:
    for name, text in observed.logs.items():
        lines = [line for line in text.splitlines() if line.strip()]
        assert lines, f"{name} logged nothing"
        for line in lines:
            entry = json.loads(line)  # a plain-text line (uvicorn's own, a bare traceback) fails here
            assert {"ts", "level", "logger", "msg"} <= entry.keys(), (name, entry)
        assert observed.exit_codes[name] == 0, (name, text[-2000:])
    web = [json.loads(line) for line in observed.logs["web"].splitlines() if line.strip()]
    assert any(line["logger"] == "uvicorn.error" for line in web), "uvicorn's own lines are missing"
    [probe] = [line for line in web if line.get("request_id") == "probe-1" and line["logger"] == "vpnshop.access"]
    assert probe["path"] == "/sub/…" and probe["method"] == "GET" and "duration_ms" in probe
    assert all(SECRET_TOKEN not in text for text in observed.logs.values())
