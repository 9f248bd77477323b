"""`vpnshop demo` really starts: migrates, seeds once, serves, and the CLI's commands all have help."""

from __future__ import annotations

import asyncio
import base64
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from app.db import create_sessionmaker, transaction
from app.kit.clock import utcnow
from app.models import Subscription, SubscriptionStatus, User
from app.provisioning.service import ensure_account
from tests.demo_process import VPNSHOP, start_demo, stop, wait_healthy
from tests.emulators.harness import free_port


async def _subscribe_demo_customer(database: Path) -> str:
    """Give the seeded demo customer a subscription, as a payment would, from outside the demo process."""
    engine = create_async_engine(f"sqlite+aiosqlite:///{database}")
    try:
        async with transaction(create_sessionmaker(engine)) as session:
            customer = await session.scalar(select(User).where(User.is_demo))
            now = utcnow()
            subscription = Subscription(
                user_id=customer.id, status=SubscriptionStatus.ACTIVE, starts_at=now, ends_at=now + timedelta(days=30)
            )
            session.add(subscription)
            await session.flush()
            account = await ensure_account(session, subscription)
            return account.sub_token
    finally:
        await engine.dispose()


def _wait_for_subscription(url: str) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        response = httpx.get(url, timeout=5)
        if response.status_code == 200 and response.text:
            return response.text
        time.sleep(0.5)
    raise AssertionError(f"{url} never served the subscription (last: {response.status_code} {response.text!r})")


def test_demo_starts_seeds_once_and_serves(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = start_demo(tmp_path, port)
    try:
        wait_healthy(base, process)
        page = httpx.get(f"{base}/", timeout=5)
        assert page.status_code == 200
        assert "1 месяц" in page.text and "12 месяцев" in page.text
        assert httpx.get(f"{base}/readyz", timeout=5).json()["checks"] == {"database": "ok"}
        token = asyncio.run(_subscribe_demo_customer(tmp_path / "var" / "vpnshop.sqlite3"))
        # The demo's in-process jobs provision the account on the demo panel through the outbox; the mirror
        # link then serves the panel's subscription (base64 VLESS links), as a real client would fetch it.
        content = _wait_for_subscription(f"{base}/sub/{token}")
        assert base64.b64decode(content).decode().startswith("vless://")
    finally:
        first_output = stop(process)
    assert "database created and seeded with demo data" in first_output
    assert f"{base}/" in first_output
    assert (tmp_path / "var" / "vpnshop.sqlite3").exists()

    # A second start keeps the data and does not seed again.
    process = start_demo(tmp_path, port)
    try:
        wait_healthy(base, process)
    finally:
        second_output = stop(process)
    assert "using the existing demo database" in second_output


@pytest.mark.parametrize("command", [["demo"], ["serve"], ["worker"], ["bot"], ["migrate"], ["staff", "create"]])
def test_every_command_has_help(command: list[str]) -> None:
    result = subprocess.run([VPNSHOP, *command, "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "Usage: vpnshop" in result.stdout
