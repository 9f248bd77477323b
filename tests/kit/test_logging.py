"""JSON log lines carry the message, level, logger, the bound context and any `extra` fields; uvicorn's loggers
go through the same lines; secrets in paths are masked."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from app.kit.logging import JsonFormatter, configure_logging, log_context, redact_path


def test_json_line_has_fields_and_extras() -> None:
    record = logging.LogRecord("vpnshop.test", logging.WARNING, __file__, 1, "paid %s", ("42",), None)
    record.payment_id = 42
    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "WARNING"
    assert line["logger"] == "vpnshop.test"
    assert line["msg"] == "paid 42"
    assert line["payment_id"] == 42
    assert line["ts"].endswith("+00:00")


def test_exceptions_are_included() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    text = JsonFormatter().format(record)
    assert "\n" not in text  # one line: the traceback is a field of the object, not lines of its own
    assert "ValueError: boom" in json.loads(text)["exc"]


def test_bound_context_is_on_every_line_inside_the_block() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", (), None)
    with log_context(request_id="abc", job="sync"):
        inside = json.loads(JsonFormatter().format(record))
    outside = json.loads(JsonFormatter().format(record))
    assert (inside["request_id"], inside["job"]) == ("abc", "sync")
    assert "request_id" not in outside and "job" not in outside


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """configure_logging changes process-wide loggers; put them back for the tests that follow."""
    names = ["", "uvicorn", "uvicorn.error", "uvicorn.access", "httpx", "aiohttp.access"]
    saved = {name: (lg.handlers[:], lg.level, lg.propagate) for name in names for lg in [logging.getLogger(name)]}
    yield
    for name, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:], logger.propagate = handlers, propagate
        logger.setLevel(level)


def test_uvicorn_and_the_app_log_json_lines(capsys: pytest.CaptureFixture[str], restored_logging: None) -> None:
    configure_logging("INFO", json_lines=True)
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 7, extra={"color_message": "x"})
    logging.getLogger("app.something").info("the app's own line")
    logging.getLogger("uvicorn.access").info("access lines come from our middleware instead")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(line["logger"], line["msg"]) for line in lines] == [
        ("uvicorn.error", "Started server process [7]"),
        ("app.something", "the app's own line"),
    ]
    assert "color_message" not in lines[0]


@pytest.mark.parametrize(
    ("path", "logged"),
    [
        ("/sub/Zx9secret", "/sub/…"),
        ("/sub/Zx9secret/info?x=1", "/sub/…"),
        ("/login/link/one-time-token", "/login/link/…"),
        ("/connect/Zx9secret/hiddify", "/connect/…"),
        ("/app/connect", "/app/connect"),
        ("/api/payments/webhook/yookassa", "/api/payments/webhook/yookassa"),
    ],
)
def test_secrets_in_paths_are_masked(path: str, logged: str) -> None:
    assert redact_path(path) == logged
