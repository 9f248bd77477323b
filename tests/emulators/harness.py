"""Serve an ASGI emulator on a real loopback port in a background thread, so clients speak real HTTP to it."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from starlette.types import Receive, Scope, Send


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve(app, *, port: int | None = None) -> Iterator[str]:
    """Run `app` with uvicorn on 127.0.0.1 until the block ends; yields its base URL (no trailing slash)."""
    port = port or free_port()
    # Idle connections are kept 75 s, as nginx in front of the real APIs does. uvicorn's 5 s default equals
    # httpx's keep-alive expiry, so a client reusing a connection idle for about 5 s (a busy machine, a pause in
    # a test) raced the server closing it and got no answer: a message that was never sent became "unknown".
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", timeout_keep_alive=75
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"emulator:{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60  # generous: a loaded CI machine starts threads late
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"emulator on port {port} did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


class Plug:
    """A stable ASGI app for one loopback server shared by a module's tests: each test plugs its own emulator
    in (`plug.app = emulator.app`) and out again; a request while nothing is plugged in gets a 503."""

    def __init__(self) -> None:
        self.app: Any = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.app is None:
            await send({"type": "http.response.start", "status": 503, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await self.app(scope, receive, send)
