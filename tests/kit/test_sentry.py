"""Sentry starts only when SENTRY_DSN is set, and never sends personal data."""

from __future__ import annotations

import sentry_sdk

from app.kit.sentry import init_sentry, scrub_event
from tests.conftest import make_settings


def test_off_without_dsn() -> None:
    assert init_sentry(make_settings("sqlite+aiosqlite://"), component="web") is False


def test_on_with_dsn_and_without_pii() -> None:
    settings = make_settings("sqlite+aiosqlite://", sentry_dsn="https://public@127.0.0.1/1")
    try:
        assert init_sentry(settings, component="worker") is True
        options = sentry_sdk.get_client().options
        assert not options.get("send_default_pii")
        assert options["server_name"] == "worker"
    finally:
        sentry_sdk.init()  # back to a disabled client for the rest of the run


def test_events_lose_the_secrets_in_urls() -> None:
    event = {
        "request": {"url": "https://shop.example/sub/SeCrEtToKeN", "query_string": "t=x"},
        "breadcrumbs": {"values": [{"data": {"url": "https://api.telegram.org/bot42:AAsecret/sendMessage"}}]},
    }
    scrubbed = scrub_event(event)
    assert scrubbed["request"] == {"url": "https://shop.example/sub/…"}
    assert scrubbed["breadcrumbs"]["values"][0]["data"]["url"] == "https://api.telegram.org/bot…/sendMessage"
    settings = make_settings("sqlite+aiosqlite://", sentry_dsn="https://public@127.0.0.1/1")
    try:
        init_sentry(settings, component="web")
        assert sentry_sdk.get_client().options["before_send"] is scrub_event
    finally:
        sentry_sdk.init()
