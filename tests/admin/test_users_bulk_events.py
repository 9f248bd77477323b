"""A bulk run's progress as server-sent events, read by a real HTTP client from the app served by uvicorn (in the
test's own event loop, so it shares the test's database engine): the stream sends where the run is while it
waits, follows it as the job works, and ends once the run is over."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import httpx
import uvicorn
from sqlalchemy import select

from app.admin.users import pages
from app.audit.service import Actor
from app.models import BulkRun, JobState
from app.staff.sessions import ADMIN_COOKIE
from app.users import bulk
from tests.admin.conftest import AdminHarness
from tests.emulators.harness import free_port
from tests.factories import add_subscriber
from tests.web import htmx

# Generous bounds for a loaded machine: they only limit how long a broken stream can hang the test.
WITHIN = 60.0


@asynccontextmanager
async def _served(admin: AdminHarness) -> AsyncIterator[str]:
    """The app over real HTTP on a loopback port, served from this event loop."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(admin.app, host="127.0.0.1", port=port, lifespan="off", log_level="warning"))
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(WITHIN):
            while not server.started:  # noqa: ASYNC110 - uvicorn only offers this flag
                await asyncio.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, WITHIN)


async def _events(response: httpx.Response) -> AsyncIterator[tuple[str, dict]]:
    """(event name, data) of each event of a text/event-stream, as it arrives."""
    name, data = "message", ""
    async for line in response.aiter_lines():
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data += line[5:].strip()
        elif line == "" and data:
            yield name, json.loads(data)
            name, data = "message", ""


async def _queued_run(admin: AdminHarness, client: httpx.AsyncClient) -> BulkRun:
    for i in range(3):
        await add_subscriber(admin.db, 8700 + i, ends_in=timedelta(days=2))
    await admin.db.commit()
    preview = await client.post(
        "/admin/users/bulk", data={"action": "extend", "days": "3", "f.segment": "expiring"}, headers=htmx("content")
    )
    assert preview.status_code == 200
    run = await admin.db.scalar(select(BulkRun))
    # Queued, as the start button leaves it, but its job not yet run: the test runs it while the stream is open.
    await bulk.start(admin.db, Actor("staff", admin.staff["admin"].id), run.id)
    await admin.db.commit()
    return run


async def test_the_progress_streams_until_the_run_ends(admin: AdminHarness) -> None:
    client = await admin.browser("admin")
    run = await _queued_run(admin, client)
    page = await client.get(f"/admin/users/bulk/{run.id}")
    assert f'data-events="/admin/users/bulk/{run.id}/events"' in page.text and "every 2s" not in page.text

    cookies = {ADMIN_COOKIE: client.cookies[ADMIN_COOKIE]}
    async with (
        _served(admin) as base,
        httpx.AsyncClient(base_url=base, cookies=cookies, timeout=WITHIN) as http,
        asyncio.timeout(WITHIN),
        http.stream("GET", f"/admin/users/bulk/{run.id}/events") as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = _events(response)
        # The stream is open and says where the run is before anything happened.
        name, first = await anext(events)
        assert (name, first["state"], first["processed"], first["total"]) == ("progress", "queued", 0, 3)
        # The job runs now; the stream follows it to the end, then closes.
        assert await bulk.run(admin.app.state.resources.sessionmaker, run.id) == JobState.DONE
        rest = [event async for event in events]
    progress = [data for name, data in rest if name == "progress"]
    finished = await admin.db.get(BulkRun, run.id, populate_existing=True)
    last = progress[-1]
    assert {key: value for key, value in last.items() if key != "text"} == bulk.progress(finished)
    assert (last["state"], last["processed"]) == ("done", 3)
    assert f"{last['processed']}" in last["text"] and f"{last['changed']}" in last["text"]
    assert rest[-1][0] == "end"


async def test_a_finished_run_streams_its_state_and_ends_and_only_staff_who_may_change_customers_listen(
    admin: AdminHarness,
) -> None:
    client = await admin.browser("admin")
    run = await _queued_run(admin, client)
    await bulk.run(admin.app.state.resources.sessionmaker, run.id)
    cookies = {ADMIN_COOKIE: client.cookies[ADMIN_COOKIE]}
    async with _served(admin) as base, httpx.AsyncClient(base_url=base, cookies=cookies, timeout=WITHIN) as http:
        async with asyncio.timeout(WITHIN), http.stream("GET", f"/admin/users/bulk/{run.id}/events") as response:
            events = [event async for event in _events(response)]
        assert [name for name, _ in events] == ["progress", "end"] and events[0][1]["state"] == "done"
        missing = await http.get("/admin/users/bulk/999999/events")
        assert missing.status_code == 404
    # Marketing reads customers but may not change them, so it may not follow a bulk action either.
    marketing = await admin.browser("marketing")
    cookies = {ADMIN_COOKIE: marketing.cookies[ADMIN_COOKIE]}
    async with _served(admin) as base, httpx.AsyncClient(base_url=base, cookies=cookies, timeout=WITHIN) as http:
        denied = await http.get(f"/admin/users/bulk/{run.id}/events")
        assert denied.status_code == 403
    assert pages.BULK_TICK > 0
