"""Prometheus metrics: defined once here, served at /metrics."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

HTTP_REQUESTS = Counter("vpnshop_http_requests_total", "HTTP requests", ["method", "route", "status"])
HTTP_LATENCY = Histogram(
    "vpnshop_http_request_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
PAYMENTS = Counter("vpnshop_payments_total", "Payment state changes", ["provider", "status"])
JOB_RUNS = Counter("vpnshop_job_runs_total", "Background job runs", ["job", "outcome"])
PANEL_ERRORS = Counter("vpnshop_panel_errors_total", "Panel API errors", ["server", "kind"])
NOTIFICATIONS = Counter("vpnshop_notifications_total", "Notifications sent", ["kind", "outcome"])
TELEGRAM_MESSAGES = Counter("vpnshop_telegram_messages_total", "Bot API sends by outcome", ["outcome"])


def render_latest() -> tuple[bytes, str]:
    return generate_latest(), CONTENT_TYPE_LATEST
