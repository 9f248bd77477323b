"""Prometheus metrics: defined once here; every process serves its own.

* the web app at `/metrics`: with several uvicorn workers, `vpnshop serve` points PROMETHEUS_MULTIPROC_DIR at a
  fresh directory so each worker writes its values there and one scrape is their sum (prometheus_client's
  multiprocess mode); gauges computed from the database are added at scrape time (`app/health/gauges.py`);
* the worker and the bot on a small internal port of their own (`serve_metrics`), which also answers
  `/healthz` for the container's health check.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.metrics_core import Metric

log = logging.getLogger(__name__)

MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

HTTP_REQUESTS = Counter("vpnshop_http_requests_total", "HTTP requests", ["method", "route", "status"])
HTTP_LATENCY = Histogram(
    "vpnshop_http_request_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
PAYMENTS = Counter("vpnshop_payments_total", "Payment state changes", ["provider", "status"])
JOB_RUNS = Counter("vpnshop_job_runs_total", "Background job runs", ["job", "outcome"])
JOB_DURATION = Histogram(
    "vpnshop_job_duration_seconds",
    "Background job run time",
    ["job"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300),
)
PANEL_ERRORS = Counter("vpnshop_panel_errors_total", "Panel API errors", ["server", "kind"])
# One observation per attempt; `host` tells two panels (or a panel and a provider) apart.
EXTERNAL_REQUESTS = Histogram(
    "vpnshop_external_request_seconds",
    "Calls to external APIs (panels, payment providers) by attempt",
    ["service", "host", "outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
NOTIFICATIONS = Counter("vpnshop_notifications_total", "Notifications sent", ["kind", "outcome"])
TELEGRAM_MESSAGES = Counter("vpnshop_telegram_messages_total", "Bot API sends by outcome", ["outcome"])
BROADCAST_MESSAGES = Counter("vpnshop_broadcast_messages_total", "Broadcast deliveries by outcome", ["outcome"])
BOT_UPDATES = Counter("vpnshop_bot_updates_total", "Telegram updates the bot handled", ["outcome"])
BOT_UPDATE_LATENCY = Histogram(
    "vpnshop_bot_update_seconds", "Time to handle one Telegram update", buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)
)
# Summed over the live processes of one container (each web worker has its own pool).
DB_CONNECTIONS_IN_USE = Gauge(
    "vpnshop_db_connections_in_use", "Database connections checked out of the pool", multiprocess_mode="livesum"
)
DB_CONNECTIONS_LIMIT = Gauge(
    "vpnshop_db_connections_limit", "Pool size plus overflow: the most connections", multiprocess_mode="livesum"
)


class _Families:
    """Ready-made metric families in the shape `generate_latest` reads."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> list[Metric]:
        return self._families


def render_latest(extra: Iterable[Metric] = ()) -> tuple[bytes, str]:
    """This process's metrics, or with PROMETHEUS_MULTIPROC_DIR set the sum of every process writing there,
    plus `extra` families (gauges computed for this scrape)."""
    if os.environ.get(MULTIPROC_DIR_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        payload = generate_latest(registry)
    else:
        payload = generate_latest(REGISTRY)
    return payload + generate_latest(_Families(extra)), CONTENT_TYPE_LATEST


def share_metrics_between_workers(processes: int) -> None:
    """For several uvicorn workers: a directory their metrics are written to (PROMETHEUS_MULTIPROC_DIR, set
    before they start, since prometheus_client reads it on import) and summed from on every scrape. Started
    empty (an operator-given one is emptied: a dead process's counters would otherwise add up forever); a
    directory made here is removed when the server exits. One process keeps its metrics in memory."""
    if processes < 2:
        os.environ.pop(MULTIPROC_DIR_ENV, None)
        return
    configured = os.environ.get(MULTIPROC_DIR_ENV)
    path = Path(configured) if configured else Path(tempfile.mkdtemp(prefix="vpnshop-metrics-"))
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROC_DIR_ENV] = str(path)
    if not configured:
        atexit.register(shutil.rmtree, path, ignore_errors=True)


async def serve_metrics(host: str, port: int) -> web.AppRunner | None:
    """`/metrics` and `/healthz` for a process without a web app of its own (the worker, the bot); port 0 turns
    them off. The health answer comes from the process's event loop, so a stuck loop fails the container's
    health check. A port already taken is logged and the process goes on without them."""
    if not port:
        return None

    async def metrics(_request: web.Request) -> web.Response:
        payload, content_type = render_latest()
        return web.Response(body=payload, headers={"Content-Type": content_type})

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        log.error("cannot serve metrics and health on %s:%d: %s", host, port, exc)
        await runner.cleanup()
        return None
    log.info("metrics and health on %s:%d", host, port)
    return runner
