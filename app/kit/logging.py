"""Structured logs: one JSON object per line in production, readable lines in the demo.

Every process (web and each of its uvicorn workers, worker, bot, the CLI) logs through the same configuration,
uvicorn's own loggers included. Fields bound with `log_context` (the request id of a request, the job a worker
runs) are added to every line logged inside it, also in the jobs a request starts.
"""

from __future__ import annotations

import json
import logging
import logging.config
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

# Record attributes that are not `extra=` fields (uvicorn adds color_message, a copy of msg with colour codes).
_STANDARD_ATTRS = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName", "color_message"}

_context: ContextVar[dict[str, Any]] = ContextVar("vpnshop_log_context", default={})  # noqa: B039 (never mutated)


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add `fields` to every log line written inside the block (and in tasks it starts)."""
    token = _context.set({**_context.get(), **fields})
    try:
        yield
    finally:
        _context.reset(token)


def context_value(name: str) -> Any:
    return _context.get().get(name)


# Path segments after which a bearer secret follows: a subscription token (ours and the panels' /sub/ and
# /api/sub/), a one-time sign-in link, a subscription's connect page.
_SECRET_TAIL = re.compile(r"/(sub|link|connect)/[^?#]+")
# The Bot API puts the bot's token in the path: /bot123456:AA…/sendMessage.
_BOT_TOKEN = re.compile(r"/bot\d+:[^/?#]+")


def redact_path(path: str) -> str:
    """A URL or path fit for a log line: the secret tail of such paths replaced, the query (which may carry
    tokens) dropped. `/sub/AbC…/info?x=1` → `/sub/…`."""
    bare = path.split("?", 1)[0].split("#", 1)[0]
    return _BOT_TOKEN.sub("/bot…", _SECRET_TAIL.sub(r"/\1/…", bare))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            # Tells the uvicorn workers of one container apart.
            "pid": record.process,
        }
        entry.update(_context.get())
        # Anything passed with `extra=` becomes a field of its own.
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRS})
        # A traceback stays inside the one JSON object, never spread over lines of its own.
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class PlainFormatter(logging.Formatter):
    """Readable lines for the demo and local runs, with the bound context at the end."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = _context.get()
        return line + "".join(f" {key}={value}" for key, value in context.items()) if context else line


def logging_config(level: str = "INFO", *, json_lines: bool = True) -> dict[str, Any]:
    """A `logging.config.dictConfig` dict, also handed to uvicorn (`log_config=`) so each of its worker
    processes, which start from scratch, logs the same way as the process that launched them."""
    formatter = f"{__name__}.{'JsonFormatter' if json_lines else 'PlainFormatter'}"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": {"()": formatter}},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "default", "stream": "ext://sys.stderr"}
        },
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {
            # uvicorn's loggers carry handlers of their own by default; here they go through the root's.
            "uvicorn": {"handlers": [], "propagate": True, "level": level},
            "uvicorn.error": {"handlers": [], "propagate": True, "level": level},
            # Our access log (ACCESS_LOG) has timings, the request id and masked paths; uvicorn's would double it.
            "uvicorn.access": {"handlers": [], "propagate": True, "level": "WARNING"},
            # httpx logs every request's URL at INFO, and a Bot API URL carries the bot's token.
            "httpx": {"level": "WARNING"},
            # aiohttp's access log would print the bot's webhook path, which names its secret route.
            "aiohttp.access": {"level": "WARNING"},
        },
    }


def configure_logging(level: str = "INFO", *, json_lines: bool = True) -> None:
    logging.config.dictConfig(logging_config(level, json_lines=json_lines))
