"""The Bot API on the wire: the answer envelope, refusals, a method's parameters, and the method registry.

Descriptions follow the Bot API server (tdlib/telegram-bot-api): its "Bad Request: " prefix plus tdlib's message
with the first letter lowered. Wording not confirmed from a source is marked "guessed" where it is raised.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile

QUERY_TOO_OLD = "query is too old and response timeout expired or query ID is invalid"


class ApiError(Exception):
    """A Bot API refusal: answered as {"ok": false, "error_code", "description"[, "parameters"]}."""

    def __init__(self, error_code: int, description: str, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.error_code = error_code
        self.description = description
        self.parameters = parameters

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error_code": self.error_code, "description": self.description}
        if self.parameters:
            body["parameters"] = self.parameters
        return body


def bad_request(detail: str) -> ApiError:
    return ApiError(400, f"Bad Request: {detail}")


def forbidden(detail: str) -> ApiError:
    return ApiError(403, f"Forbidden: {detail}")


def too_many_requests(retry_after: int) -> ApiError:
    return ApiError(429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after})


def answer_error(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.error_code)


class Params:
    """A method's parameters from JSON (typed) or a form/query string (all strings, objects JSON-encoded)."""

    def __init__(self, values: dict[str, Any], uploads: dict[str, tuple[str, bytes]] | None = None) -> None:
        self.values = values
        self.uploads = uploads or {}  # name → (file name, contents) of each file sent as multipart

    def raw(self, name: str) -> Any:
        return self.values.get(name)

    def _present(self, name: str, required: bool) -> Any:
        value = self.values.get(name)
        if value is None and required:
            raise bad_request(f'parameter "{name}" is required')
        return value

    def string(self, name: str, *, required: bool = True) -> str | None:
        value = self._present(name, required)
        if value is None:
            return None
        if isinstance(value, bool | dict | list):
            raise bad_request(f'parameter "{name}" must be a string')
        return str(value)

    def integer(self, name: str, *, required: bool = True) -> int | None:
        value = self._present(name, required)
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise bad_request(f'parameter "{name}" must be a number')

    def clamped(self, name: str, default: int, low: int, high: int) -> int:
        """An integer the way the Bot API server reads limits: absent or unreadable is `default`/0, then clamped."""
        value = self.values.get(name)
        if value in (None, ""):
            number = default
        else:
            try:
                number = int(value)
            except (TypeError, ValueError):
                number = 0
        return max(low, min(high, number))

    def boolean(self, name: str, *, required: bool = True) -> bool | None:
        value = self._present(name, required)
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
            return value.lower() in ("true", "1")
        raise bad_request(f'parameter "{name}" must be a Boolean')

    def flag(self, name: str) -> bool:
        return bool(self.boolean(name, required=False))

    def array(self, name: str, *, required: bool = True) -> list[Any] | None:
        value = self._present(name, required)
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise bad_request(f"can't parse {name} JSON object") from None
        if value is None or isinstance(value, list):
            return value
        raise bad_request(f"can't parse {name} JSON object")

    def json_value(self, name: str, what: str) -> Any:
        """A JSON-serialized parameter (an object given as-is in JSON bodies, as a string in forms); None if
        absent. `what` names it in the refusal, as the server does ("can't parse <what> JSON object")."""
        value = self.values.get(name)
        if value in (None, ""):
            return None
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                raise bad_request(f"can't parse {what} JSON object") from None
        return value


async def read_params(request: Request) -> Params:
    values: dict[str, Any] = dict(request.query_params)
    uploads: dict[str, tuple[str, bytes]] = {}
    content_type = request.headers.get("content-type", "")
    if "application/json" in content_type:
        body = await request.body()
        if body.strip():
            try:
                data = json.loads(body)
            except ValueError:
                raise bad_request("can't parse JSON object") from None  # guessed wording
            if not isinstance(data, dict):
                raise bad_request("can't parse JSON object")
            values.update(data)
    elif "form" in content_type:  # application/x-www-form-urlencoded and multipart/form-data (aiogram)
        form = await request.form()
        for key, value in form.items():
            # An uploaded file stands for itself by name among the parameters; its contents are kept aside.
            if isinstance(value, UploadFile):
                name = value.filename or key
                values[key] = f"upload:{name}"
                uploads[key] = (name, await value.read())
            else:
                values[key] = value
    return Params(values, uploads)


async def hold(request: Request, seconds: float) -> None:
    """Wait `seconds`, or less if the client hangs up first (so a stopping server never waits long)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await request.is_disconnected():
            return
        await asyncio.sleep(0.02)


async def disconnected(request: Request) -> None:
    """Return when the client hangs up (the body has been read, so the next message is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


# --------------------------------------------------------------------------------------------------------------
# Fault knobs


@dataclass(slots=True)
class Fault:
    kind: Literal["status", "delay"]
    remaining: int
    method: str | None  # lower-case method name, None for any
    status: int = 500
    retry_after: int | None = None
    description: str | None = None
    seconds: float = 0.0


def fault_error(fault: Fault) -> ApiError:
    if fault.status == 429:
        retry_after = fault.retry_after if fault.retry_after is not None else 1
        description = fault.description or f"Too Many Requests: retry after {retry_after}"
        return ApiError(429, description, {"retry_after": retry_after})
    phrases = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}
    return ApiError(fault.status, fault.description or phrases.get(fault.status, f"Error {fault.status}"))


# --------------------------------------------------------------------------------------------------------------
# The method registry

Handler = Callable[..., Any]


@dataclass(frozen=True, slots=True)
class Method:
    name: str  # canonical spelling ("createInvoiceLink")
    handler: Handler
    # A long poll is awaited outside the emulator's lock as `handler(emu, params, request)`; every other method
    # runs under the lock as `handler(emu, params)` and returns the `result`.
    long_poll: bool = False


METHODS: dict[str, Method] = {}  # by lower-case name: method names are case-insensitive


def bot_method(name: str, *, long_poll: bool = False) -> Callable[[Handler], Handler]:
    """Register a Bot API method."""

    def register(handler: Handler) -> Handler:
        METHODS[name.lower()] = Method(name, handler, long_poll)
        return handler

    return register
