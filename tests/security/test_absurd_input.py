"""Absurd input gets a 4xx and changes nothing (issue 18 item 3): ids past BIGINT in every integer path parameter,
signed initData with an out-of-range id, huge names or NUL bytes, oversized webhook bodies; and the logs stay
clean: no SQL parameters in tracebacks, no secret-bearing path written whole."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.telegram import sign_init_data
from app.db import create_engine
from app.kit.clock import utcnow
from app.models import Staff, StaffRole, User
from app.staff.sessions import issue_tokens
from tests.conftest import make_settings
from tests.web import BOT_TOKEN, serve, tma

PAST_BIGINT = 2**64


@pytest.fixture
async def app_client(database_url: str, db: AsyncSession) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    settings = make_settings(database_url, bot_token=BOT_TOKEN, yookassa_shop_id="1", yookassa_secret_key="k")
    async with serve(settings) as (app, client):
        yield app, client


def signed(user: dict[str, object]) -> dict[str, str]:
    fields = {"auth_date": str(int(utcnow().timestamp())), "user": json.dumps(user)}
    return tma(sign_init_data(fields, BOT_TOKEN))


def endpoints(routes: list[Any]) -> Iterator[Any]:
    """Every endpoint of the app, through included routers (this FastAPI wraps each in an _IncludedRouter)."""
    for route in routes:
        if hasattr(route, "effective_candidates"):
            yield from endpoints(route.effective_candidates())
        elif isinstance(getattr(route, "dependant", None), Dependant):
            yield route


def integer_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every route with an integer path parameter, that parameter set past BIGINT."""
    found = []
    for route in endpoints(app.routes):
        params = {param.name: param.field_info.annotation for param in route.dependant.path_params}
        if int not in params.values():
            continue
        path = route.path_format
        for name, kind in params.items():
            path = path.replace("{" + name + "}", str(PAST_BIGINT) if kind is int else "x")
        found.append((sorted(route.methods)[0], path))
    return found


async def test_every_integer_path_parameter_refuses_ids_past_bigint(
    app_client: tuple[FastAPI, httpx.AsyncClient], db: AsyncSession
) -> None:
    app, client = app_client
    routes = integer_routes(app)
    # The ones the probe hit must be among them, so the walk cannot silently find nothing.
    paths = {path for _, path in routes}
    assert f"/api/panels/webhook/{PAST_BIGINT}" in paths
    assert {f"/app/settings/sessions/{PAST_BIGINT}/revoke", f"/app/settings/identities/{PAST_BIGINT}/unlink"} <= paths
    customer = signed({"id": 777, "first_name": "Ann"})
    # Staff routes are asked by an owner, who may reach every one of them, so the id itself is what is judged.
    owner = Staff(username="owner", password_hash="-", role=StaffRole.OWNER)
    db.add(owner)
    await db.flush()
    staff = {"authorization": f"Bearer {(await issue_tokens(db, owner, name='probe')).access_token}"}
    await db.commit()
    for method, path in routes:
        by_staff = path.startswith(("/admin/", "/api/admin/"))
        response = await client.request(method, path, headers=staff if by_staff else customer)
        assert response.status_code in {404, 422}, (method, path, response.status_code, response.text[:200])


@pytest.mark.parametrize(
    "user",
    [
        {"id": PAST_BIGINT, "first_name": "Ann"},
        {"id": -5, "first_name": "Ann"},
        {"id": True, "first_name": "Ann"},
        {"id": 778, "first_name": "A" * 10_000},
        {"id": 779, "first_name": "Ann", "last_name": "B" * 10_000},
        {"id": 780, "first_name": "Ann", "username": "c" * 10_000},
        {"id": 781, "first_name": "A\x00nn"},
        {"id": 782, "first_name": "Ann", "username": "ann\x00"},
        {"id": 783, "first_name": ["not", "text"]},
    ],
)
async def test_signed_init_data_out_of_range_is_refused_and_creates_nobody(
    app_client: tuple[FastAPI, httpx.AsyncClient], db: AsyncSession, user: dict[str, object]
) -> None:
    _, client = app_client
    for path in ("/api/me", "/app"):
        response = await client.get(path, headers=signed(user))
        assert response.status_code == 401, (path, response.status_code, response.text[:200])
    await db.rollback()
    assert await db.scalar(select(func.count()).select_from(User)) == 0


async def test_a_long_but_legal_name_still_signs_in(app_client: tuple[FastAPI, httpx.AsyncClient]) -> None:
    _, client = app_client
    response = await client.get("/api/me", headers=signed({"id": 784, "first_name": "Ä" * 64, "username": "u" * 32}))
    assert response.status_code == 200


@pytest.mark.parametrize("provider", ["yookassa", "nobody"])
async def test_payment_webhook_refuses_a_body_over_one_megabyte_before_reading_it(
    app_client: tuple[FastAPI, httpx.AsyncClient], provider: str
) -> None:
    _, client = app_client
    declared = await client.post(f"/api/payments/webhook/{provider}", content=b"{" + b" " * (1024 * 1024) + b"}")
    assert declared.status_code == 413
    assert declared.json()["error"]["code"] == "payload_too_large"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: refused while streaming
        for _ in range(20):
            yield b" " * (128 * 1024)

    streamed = await client.post(f"/api/payments/webhook/{provider}", content=chunks())
    assert streamed.status_code == 413


async def test_database_errors_do_not_carry_the_statements_parameters(database_url: str) -> None:
    engine = create_engine(make_settings(database_url))
    try:
        async with engine.connect() as connection:
            with pytest.raises(Exception) as failure:
                await connection.execute(
                    text("INSERT INTO users (telegram_id, first_name) VALUES (:id, :name)"),
                    {"id": None, "name": "Secret Customer Name"},
                )
    finally:
        await engine.dispose()
    assert "Secret Customer Name" not in str(failure.value)
    assert "[SQL:" in str(failure.value)  # the statement itself is still there to debug with


async def test_a_failing_secret_path_is_logged_by_its_route_not_its_token(
    app_client: tuple[FastAPI, httpx.AsyncClient], caplog: pytest.LogCaptureFixture
) -> None:
    app, client = app_client
    token = "s3cr3t-subscription-token-0123456789"

    @app.get("/sub/{token}/boom")
    async def boom(token: str) -> None:
        raise RuntimeError("a bug")

    app.router.routes.insert(0, app.router.routes.pop())  # ahead of the real /sub/{token}
    with caplog.at_level(logging.INFO), pytest.raises(RuntimeError):  # re-raised to the server after the 500
        await client.get(f"/sub/{token}/boom")
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "/sub/{token}/boom" in logged
    assert token not in logged
