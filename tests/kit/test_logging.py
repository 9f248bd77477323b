"""JSON log lines carry the message, level, logger and any `extra` fields."""

from __future__ import annotations

import json
import logging

from app.kit.logging import JsonFormatter


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
    line = json.loads(JsonFormatter().format(record))
    assert "ValueError: boom" in line["exc"]
