"""Typed reading of a provider's JSON objects: a missing or mistyped field raises the error the caller chose
(`WebhookRejected` 400 for a notification we were sent, `ProviderUnavailable` for an API answer we asked for)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar, Self

from app.kit.clock import ensure_utc
from app.payments.providers.base import ProviderUnavailable, WebhookRejected


class JsonFields:
    service: ClassVar[str] = "provider"

    def __init__(self, data: Any, what: str, fail: Callable[[str], Exception]) -> None:
        if not isinstance(data, dict):
            raise fail(f"{self.service}: the {what} is not a JSON object")
        self.data: dict[str, Any] = data
        self.what = what
        self.fail = fail

    @classmethod
    def of_webhook(cls, data: Any, what: str) -> Self:
        return cls(data, what, lambda message: WebhookRejected(message, status_code=400))

    @classmethod
    def of_api(cls, data: Any, what: str) -> Self:
        return cls(data, what, ProviderUnavailable)

    def error(self, problem: str) -> Exception:
        return self.fail(f"{self.service}: the {self.what} {problem}")

    def text(self, name: str) -> str:
        value = self.optional_text(name)
        if not value:
            raise self.error(f"has no '{name}'")
        return value

    def optional_text(self, name: str) -> str | None:
        value = self.data.get(name)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise self.error(f"has a non-text '{name}'")
        return value

    def integer(self, name: str) -> int:
        value = self.optional_integer(name)
        if value is None:
            raise self.error(f"has no '{name}'")
        return value

    def optional_integer(self, name: str) -> int | None:
        value = self.data.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(f"has a non-integer '{name}'")
        return value

    def moment(self, name: str) -> datetime | None:
        text = self.optional_text(name)
        if text is None:
            return None
        try:
            return ensure_utc(datetime.fromisoformat(text))
        except ValueError:
            raise self.error(f"has an unreadable '{name}': {text!r}") from None

    def list(self, name: str) -> list[Any]:
        value = self.data.get(name)
        if not isinstance(value, list):
            raise self.error(f"has no '{name}' list")
        return value

    def child(self, name: str) -> Self:
        return type(self)(self.data.get(name), f"{self.what}.{name}", self.fail)

    def optional_child(self, name: str) -> Self | None:
        return self.child(name) if self.data.get(name) is not None else None
