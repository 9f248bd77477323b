"""A MarzbanPanel wired to a fresh Marzban emulator on a loopback port, for adapter and contract tests."""

from __future__ import annotations

import atexit
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from typing import Any

import httpx
from starlette.types import Receive, Scope, Send

from app.kit.http import CircuitBreaker, HttpClient, RetryPolicy
from app.panels.marzban import MarzbanPanel
from tests.emulators.harness import serve
from tests.emulators.marzban import MarzbanEmulator, MarzbanState, send_plain

ADMIN_USERNAME = "admin"
ADMIN_PASSWORD = "admin"


class _Socket:
    """A loopback server kept for the whole run, passing requests to whichever emulator is plugged in.

    Starting and stopping uvicorn costs about 0.2 s, most of it waiting for the server loop's shutdown tick;
    reusing servers keeps a fresh emulator per test without paying that every time."""

    def __init__(self) -> None:
        self.emulator: MarzbanEmulator | None = None
        self._stack = ExitStack()
        self.base_url = self._stack.enter_context(serve(self))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        emulator = self.emulator
        if emulator is None:  # a straggler from a finished test (e.g. a delayed request) finds nobody home
            await send_plain(send, 503)
            return
        await emulator(scope, receive, send)

    def close(self) -> None:
        self._stack.close()


_idle: list[_Socket] = []


@atexit.register
def _close_idle() -> None:
    while _idle:
        _idle.pop().close()


def loopback_transport() -> httpx.AsyncHTTPTransport:
    """Plain HTTP to 127.0.0.1 needs no CA bundle; loading one costs ~40 ms per client."""
    return httpx.AsyncHTTPTransport(verify=False)


@contextmanager
def serve_emulator(emulator: MarzbanEmulator) -> Iterator[str]:
    """Like harness.serve(emulator), on a pooled server: yields the base URL."""
    socket = _idle.pop() if _idle else _Socket()
    socket.emulator = emulator
    try:
        yield socket.base_url
    finally:
        socket.emulator = None
        _idle.append(socket)


@asynccontextmanager
async def open_marzban(
    version: str,
    *,
    password: str = ADMIN_PASSWORD,
    timeout: float = 5.0,  # noqa: ASYNC109 - the adapter's HTTP timeout, not a deadline for this block
    attempts: int = 3,
    inbounds: dict[str, list[str]] | None = None,
    flow: str = "",
    xray_inbounds: dict[str, list[dict[str, Any]]] | None = None,
    api_token: bool = False,
    **emulator_options: Any,
) -> AsyncIterator[tuple[MarzbanPanel, MarzbanState, str]]:
    """Yield (panel, emulator state, base URL) for a fresh emulator of `version` ("0.7" or "0.8").

    `password`, `timeout`, `attempts`, `inbounds` and `flow` shape the adapter (a wrong password, a short
    timeout, its configured inbound tags); `api_token` gives it a token the panel issued (MARZBAN_API_TOKEN) and
    no login; `xray_inbounds` is the panel's own inbound list and the other `emulator_options` go to
    MarzbanEmulator (e.g. env_sudo=False, admins=...)."""
    emulator = MarzbanEmulator(version, inbounds=xray_inbounds, **emulator_options)
    with serve_emulator(emulator) as base_url:
        emulator.state.sub_url_prefix = base_url  # absolute subscription URLs, as a configured panel gives
        http = HttpClient(
            base_url,
            service="marzban",
            timeout=timeout,
            retry=RetryPolicy(attempts=attempts, base_delay=0.01),
            breaker=CircuitBreaker(),  # per panel, so one test's failures never open another's circuit
            transport=loopback_transport(),
        )
        if api_token:
            token = emulator.state.issue_token(next(iter(emulator.state.admins.values())))
            panel = MarzbanPanel(base_url, "", "", token=token, inbounds=inbounds, flow=flow, http=http)
        else:
            panel = MarzbanPanel(base_url, ADMIN_USERNAME, password, inbounds=inbounds, flow=flow, http=http)
        try:
            yield panel, emulator.state, base_url
        finally:
            await panel.aclose()
