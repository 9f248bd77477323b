"""Structured logs: one JSON object per line in production, readable lines in the demo."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

_STANDARD_ATTRS = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

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
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        # Anything passed with `extra=` becomes a field of its own.
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRS})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(level: str = "INFO", *, json_lines: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Access logs come from our own middleware with timings; uvicorn's would double them.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # httpx logs every request's URL at INFO, and a Bot API URL carries the bot's token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
