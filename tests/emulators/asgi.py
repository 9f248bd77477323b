"""Raw-ASGI helpers the emulators share: they read a request body before the routes do (to log it and to arm
faults), hand it on, and stall a response without keeping the server from shutting down."""

from __future__ import annotations

import asyncio
import time

from starlette.types import Message, Receive


async def read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the already-read body over once, then passes on what the server says (disconnect)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


async def wait_for_disconnect(receive: Receive, seconds: float) -> bool:
    """Sleep up to `seconds`, returning early (True) when the client hangs up, so shutdown never waits long."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            message = await asyncio.wait_for(receive(), timeout=left)
        except TimeoutError:
            return False
        if message["type"] == "http.disconnect":
            return True
    return False
