"""/admin/servers and /api/admin/servers: "test connection" against the Marzban and Remnawave emulators (good,
wrong password, unreachable), adding and editing a connection (tested first, secrets sealed and never sent
back), every refusal precise and changing nothing, placement, drain and move requests, orphans."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, select

from app.kit.http import reset_breakers
from app.models import AuditLog, OutboxMessage, PanelKind, Server
from app.panels.base import AccountSpec
from app.panels.ownership import installation_prefix, owner_mark
from app.panels.registry import read_credentials, seal_credentials
from app.panels.sync import SyncReport, remember_sync
from app.provisioning.drain import DRAIN_TOPIC
from tests.admin.conftest import AdminHarness
from tests.emulators.harness import free_port
from tests.emulators.marzban import MarzbanEmulator
from tests.emulators.remnawave import RemnawaveEmulator
from tests.factories import add_account, add_server, add_subscriber
from tests.panels.marzban_fixture import serve_emulator

API = "/api/admin/servers"
MARZBAN_PASSWORD = "admin"
REMNAWAVE_TOKEN = "rw-test-token"


@pytest.fixture(autouse=True)
def fresh_breakers() -> Iterator[None]:
    """An unreachable address opens its circuit; no test inherits it (the pooled emulator ports are reused)."""
    reset_breakers()
    yield
    reset_breakers()


@pytest.fixture
def panels() -> Iterator[dict[str, str]]:
    """A Marzban 0.7 and a Remnawave 3.x emulator on loopback ports: kind → base URL."""
    with ExitStack() as stack:
        yield {
            "marzban": stack.enter_context(serve_emulator(MarzbanEmulator("0.7"))),  # type: ignore[arg-type]
            "remnawave": stack.enter_context(serve_emulator(RemnawaveEmulator("3"))),  # type: ignore[arg-type]
        }


def connection(kind: str, url: str, *, wrong: bool = False, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": f"{kind}-1", "panel_kind": kind, "api_url": url, "location": "nl"}
    if kind == "marzban":
        body |= {"username": "admin", "password": "nope" if wrong else MARZBAN_PASSWORD}
    else:
        body |= {"token": "wrong-token" if wrong else REMNAWAVE_TOKEN}
    return body | extra


async def count(admin: AdminHarness, model: Any) -> int:
    admin.db.expire_all()
    return int(await admin.db.scalar(select(func.count()).select_from(model)) or 0)


# --- test connection ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["marzban", "remnawave"])
async def test_connection_good_wrong_and_unreachable(admin: AdminHarness, panels: dict[str, str], kind: str) -> None:
    headers = await admin.bearer("admin")

    good = await admin.client.post(f"{API}/test", json=connection(kind, panels[kind]), headers=headers)
    assert good.status_code == 200, good.text
    assert good.json()["ok"] is True
    assert good.json()["message"].startswith(f"Connected: {kind}") and good.json()["version"]

    wrong = await admin.client.post(f"{API}/test", json=connection(kind, panels[kind], wrong=True), headers=headers)
    assert wrong.status_code == 200
    assert wrong.json()["ok"] is False
    assert wrong.json()["message"].startswith("The panel refused the credentials")

    dead = f"http://127.0.0.1:{free_port()}"
    unreachable = await admin.client.post(f"{API}/test", json=connection(kind, dead), headers=headers)
    assert unreachable.json()["ok"] is False
    assert unreachable.json()["message"].startswith(f"The panel cannot be reached at {dead}")
    assert await count(admin, Server) == 0  # a test stores nothing


async def test_the_form_tests_a_connection_and_shows_the_answer(admin: AdminHarness, panels: dict[str, str]) -> None:
    browser = await admin.browser("owner")
    form = connection("marzban", panels["marzban"], wrong=True)
    answer = await browser.post("/admin/servers/test", data=form, headers={"hx-request": "true"})
    assert answer.status_code == 422
    assert 'data-ok="no"' in answer.text and "The panel refused the credentials" in answer.text

    answer = await browser.post("/admin/servers/test", data=connection("marzban", panels["marzban"]))
    assert answer.status_code == 200 and 'data-ok="yes"' in answer.text and "Connected: marzban" in answer.text


# --- add and edit -------------------------------------------------------------------------------------------------


async def test_adding_a_server_tests_it_seals_the_secrets_and_never_sends_them_back(
    admin: AdminHarness, panels: dict[str, str]
) -> None:
    headers = await admin.bearer("owner")
    browser = await admin.browser("owner")  # before any expire_all: the harness's staff rows load lazily
    body = connection(
        "remnawave",
        panels["remnawave"],
        headers={"X-Proxy-Key": "proxy-secret"},
        squads=["Default-Squad"],
        capacity=300,
        weight=2,
    )
    created = await admin.client.post(API, json=body, headers=headers)
    assert created.status_code == 201, created.text
    out = created.json()
    assert REMNAWAVE_TOKEN not in created.text and "proxy-secret" not in created.text
    assert out["secrets_set"] == {
        "username": False,
        "password": False,
        "token": True,
        "headers": True,
        "cookies": False,
    }
    assert (out["capacity"], out["weight"], out["squads"]) == (300, 2, ["Default-Squad"])
    assert out["panel_version"]  # read by the connection test

    admin.db.expire_all()
    server = await admin.db.get_one(Server, out["id"])
    assert REMNAWAVE_TOKEN not in server.credentials_encrypted  # sealed
    assert read_credentials(server) == {"token": REMNAWAVE_TOKEN, "headers": {"X-Proxy-Key": "proxy-secret"}}

    listed = await admin.client.get(API, headers=headers)
    got = await admin.client.get(f"{API}/{out['id']}", headers=headers)
    for answer in (listed, got):
        assert answer.status_code == 200 and REMNAWAVE_TOKEN not in answer.text and "proxy-secret" not in answer.text
    page = await browser.get(f"/admin/servers/{out['id']}/edit")
    assert page.status_code == 200 and REMNAWAVE_TOKEN not in page.text and "proxy-secret" not in page.text

    audit = (await admin.db.scalars(select(AuditLog).where(AuditLog.action == "server.create"))).one()
    assert REMNAWAVE_TOKEN not in str(audit.after) and audit.after["secrets_set"]["token"] is True


async def test_an_edit_keeps_blank_secrets_and_is_audited_before_and_after(
    admin: AdminHarness, panels: dict[str, str]
) -> None:
    headers = await admin.bearer("owner")
    created = await admin.client.post(API, json=connection("marzban", panels["marzban"]), headers=headers)
    server_id = created.json()["id"]
    edit = connection("marzban", panels["marzban"], location="de", capacity=50) | {"password": ""}
    edit.pop("username")
    updated = await admin.client.put(f"{API}/{server_id}", json=edit, headers=headers)
    assert updated.status_code == 200, updated.text
    assert (updated.json()["location"], updated.json()["capacity"]) == ("de", 50)
    admin.db.expire_all()
    assert read_credentials(await admin.db.get_one(Server, server_id)) == {
        "username": "admin",
        "password": MARZBAN_PASSWORD,
    }
    audit = (await admin.db.scalars(select(AuditLog).where(AuditLog.action == "server.update"))).one()
    assert (audit.before["location"], audit.after["location"]) == ("nl", "de")
    assert MARZBAN_PASSWORD not in str(audit.before) + str(audit.after)

    # A changed password is tested before it is stored: a wrong one is refused and the old one kept.
    wrong = await admin.client.put(f"{API}/{server_id}", json=edit | {"password": "nope"}, headers=headers)
    assert wrong.status_code == 422 and "refused the credentials" in wrong.json()["error"]["message"]
    admin.db.expire_all()
    assert read_credentials(await admin.db.get_one(Server, server_id))["password"] == MARZBAN_PASSWORD


BAD_FORMS = [
    ({"name": ""}, "name", "Field required"),
    ({"api_url": "ftp://panel"}, "api_url", "http(s)://"),
    ({"api_url": "https://panel.example.com/?x=1"}, "api_url", "no query"),
    ({"panel_kind": "xui"}, "panel_kind", "Input should be"),
    ({"capacity": "0"}, "capacity", "greater than or equal to 1"),
    ({"weight": "abc"}, "weight", "valid integer"),
    ({"password": ""}, "password", "username and password, or an API token"),
    ({"headers": "X-Key: 1"}, "headers", "Marzban connections take no extra headers"),
    ({"squads": "a,b"}, "squads", "Squads are a Remnawave setting"),
    ({"location": ""}, "location", "Field required"),
]


async def test_only_owners_add_servers_or_change_their_connection(admin: AdminHarness, panels: dict[str, str]) -> None:
    """An admin runs servers (names, weights, placement) but adding one or changing its address or sign-in is an
    owner's (ADMIN.md: credentials are owner-only): refused with 403 and nothing saved, by the API and the form."""
    owner, admin_headers = await admin.bearer("owner"), await admin.bearer("admin")
    browser = await admin.browser("admin")
    body = connection("marzban", panels["marzban"])
    refused = await admin.client.post(API, json=body, headers=admin_headers)
    assert refused.status_code == 403 and await count(admin, Server) == 0
    server_id = (await admin.client.post(API, json=body, headers=owner)).json()["id"]

    changes = ({"password": "stolen"}, {"api_url": "http://evil.example"}, {"panel_kind": "remnawave", "token": "t"})
    for change in changes:
        edit = await admin.client.put(
            f"{API}/{server_id}", json=body | change | {"skip_test": True}, headers=admin_headers
        )
        assert edit.status_code == 403, (change, edit.text)
    form = {"name": "nl-renamed", "panel_kind": "marzban", "api_url": "http://evil.example", "location": "nl"}
    page = await browser.post(f"/admin/servers/{server_id}", data=form)
    assert page.status_code == 403
    stored = (await admin.client.get(f"{API}/{server_id}", headers=admin_headers)).json()
    assert (stored["name"], stored["api_url"]) == ("marzban-1", panels["marzban"])

    # The rest of the server is the admin's: a new name and weight, the connection untouched.
    renamed = await browser.post(
        f"/admin/servers/{server_id}", data=form | {"api_url": panels["marzban"], "weight": "3"}
    )
    assert renamed.status_code in (200, 303), renamed.text
    stored = (await admin.client.get(f"{API}/{server_id}", headers=admin_headers)).json()
    assert (stored["name"], stored["weight"], stored["api_url"]) == ("nl-renamed", 3, panels["marzban"])
    assert 'href="/admin/servers/new"' not in (await browser.get("/admin/servers")).text
    assert (await browser.get("/admin/servers/new")).status_code == 403


@pytest.mark.parametrize(("change", "field", "message"), BAD_FORMS)
async def test_the_form_refuses_bad_input_next_to_the_field_and_changes_nothing(
    admin: AdminHarness, panels: dict[str, str], change: dict[str, str], field: str, message: str
) -> None:
    browser = await admin.browser("owner")
    form = connection("marzban", panels["marzban"]) | change
    answer = await browser.post("/admin/servers", data=form, headers={"hx-request": "true", "hx-target": "content"})
    assert answer.status_code == 422, answer.text
    assert f'id="{field}-error"' in answer.text and message in answer.text
    assert 'name="password" type="password" value=""' in answer.text  # the secret is not echoed back
    assert await count(admin, Server) == 0
    assert await count(admin, AuditLog) == 0


async def test_the_api_refuses_bad_input_naming_the_field(admin: AdminHarness, panels: dict[str, str]) -> None:
    headers = await admin.bearer("owner")
    answer = await admin.client.post(
        API, json=connection("remnawave", panels["remnawave"], capacity=0), headers=headers
    )
    assert answer.status_code == 422
    assert "capacity" in answer.text
    answer = await admin.client.post(
        API, json=connection("remnawave", panels["remnawave"]) | {"token": ""}, headers=headers
    )
    assert answer.status_code == 422 and answer.json()["error"]["code"] == "invalid_token"
    answer = await admin.client.post(
        API, json=connection("remnawave", f"http://127.0.0.1:{free_port()}"), headers=headers
    )
    assert answer.status_code == 422 and answer.json()["error"]["code"] == "invalid_api_url"
    assert await count(admin, Server) == 0

    # Told to skip the test, a server whose panel is down right now can still be added.
    answer = await admin.client.post(
        API, json=connection("remnawave", f"http://127.0.0.1:{free_port()}", skip_test=True), headers=headers
    )
    assert answer.status_code == 201
    duplicate = await admin.client.post(API, json=connection("remnawave", panels["remnawave"]), headers=headers)
    assert duplicate.status_code == 422 and "already named" in duplicate.json()["error"]["message"]
    assert await count(admin, Server) == 1


async def test_a_saved_form_redirects_to_the_server_page(admin: AdminHarness, panels: dict[str, str]) -> None:
    browser = await admin.browser("owner")
    form = connection("marzban", panels["marzban"]) | {"accepts_new_accounts": "1"}
    answer = await browser.post("/admin/servers", data=form)
    assert answer.status_code == 303
    page = await browser.get(answer.headers["location"])
    assert page.status_code == 200 and "marzban-1" in page.text
    listing = await browser.get("/admin/servers")
    assert listing.status_code == 200 and 'data-server="marzban-1"' in listing.text


# --- placement, drain and move -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ids:
    """A server's id, kept apart from the ORM object (expire_all would make reading it a lazy load)."""

    id: int


async def _two_servers_with_customers(admin: AdminHarness, customers: int = 3) -> tuple[Server, Server, list[int]]:
    old = await add_server(admin.db, "old")
    new = await add_server(admin.db, "new", location="de")
    ids = []
    for n in range(customers):
        _, subscription = await add_subscriber(admin.db, 7000 + n)
        ids.append((await add_account(admin.db, old, subscription)).id)
    await admin.db.commit()
    return old, new, ids


async def test_placement_drain_and_move_requests(admin: AdminHarness) -> None:
    old_server, new_server, ids = await _two_servers_with_customers(admin)
    old, new = Ids(old_server.id), Ids(new_server.id)
    headers = await admin.bearer("owner")
    browser = await admin.browser("owner")

    off = await admin.client.post(f"{API}/{new.id}/placement", json={"accepts_new_accounts": False}, headers=headers)
    assert off.status_code == 200 and off.json()["accepts_new_accounts"] is False
    refused = await admin.client.post(f"{API}/{old.id}/drain", json={"target_id": new.id}, headers=headers)
    assert refused.status_code == 422 and "takes no new accounts" in refused.json()["error"]["message"]
    await admin.client.post(f"{API}/{new.id}/placement", json={"accepts_new_accounts": True}, headers=headers)

    stray = await admin.client.post(
        f"{API}/{new.id}/move", json={"target_id": old.id, "account_ids": [ids[0]]}, headers=headers
    )
    assert stray.status_code == 422 and f"account {ids[0]}" in stray.json()["error"]["message"]
    moved = await admin.client.post(
        f"{API}/{old.id}/move", json={"target_id": new.id, "account_ids": [ids[0]]}, headers=headers
    )
    assert moved.status_code == 200 and moved.json() == {"moved": [ids[0]], "target_id": new.id}

    drained = await admin.client.post(f"{API}/{old.id}/drain", json={"target_id": new.id}, headers=headers)
    assert drained.status_code == 202, drained.text
    state = drained.json()["drain"]
    assert (state["total"], state["target"], state["remaining"]) == (2, "new", 2)
    assert drained.json()["accepts_new_accounts"] is False
    again = await admin.client.post(f"{API}/{old.id}/drain", json={"target_id": new.id}, headers=headers)
    assert again.status_code == 409
    admin.db.expire_all()
    assert await admin.db.scalar(select(func.count()).where(OutboxMessage.topic == DRAIN_TOPIC)) == 1

    page = await browser.get(f"/admin/servers/{old.id}")
    assert page.status_code == 200 and 'id="drain-progress"' in page.text and 'hx-trigger="every 3s"' in page.text


async def test_the_drain_form_refuses_a_missing_target(admin: AdminHarness) -> None:
    old_server, _, _ = await _two_servers_with_customers(admin)
    old = Ids(old_server.id)
    browser = await admin.browser("owner")
    answer = await browser.post(
        f"/admin/servers/{old.id}/drain", data={"target_id": ""}, headers={"hx-request": "true"}
    )
    assert answer.status_code == 422 and 'id="target_id-error"' in answer.text
    admin.db.expire_all()
    server = await admin.db.get_one(Server, old.id)
    assert server.accepts_new_accounts and "drain" not in (server.settings or {})
    assert await count(admin, OutboxMessage) == 0


# --- orphans ------------------------------------------------------------------------------------------------------


async def test_orphans_ours_can_be_deleted_foreign_only_ignored(admin: AdminHarness) -> None:
    emulator = MarzbanEmulator("0.7")
    with serve_emulator(emulator) as url:  # type: ignore[arg-type]
        server = Server(
            name="mz",
            panel_kind=PanelKind.MARZBAN,
            api_url=url,
            credentials_encrypted=seal_credentials({"username": "admin", "password": MARZBAN_PASSWORD}),
            location="nl",
        )
        admin.db.add(server)
        prefix = await installation_prefix(admin.db)
        await admin.db.commit()
        server_id = server.id
        ours, foreign = f"{prefix}000777", "someone_else"
        panel = admin.app.state.resources.panels.for_server(server)
        await panel.create_account(AccountSpec(ours, None, note=owner_mark("lostkey")))
        await panel.create_account(AccountSpec(foreign, None, note="made by hand"))

        browser = await admin.browser("owner")
        block = await browser.get(f"/admin/servers/{server_id}/orphans")
        assert block.status_code == 200 and ours in block.text and foreign in block.text

        refused = await browser.post(f"/admin/servers/{server_id}/orphans/delete", data={"username": foreign})
        assert refused.status_code == 422 and "is not one of ours" in refused.text
        admin.db.expire_all()
        assert await count(admin, OutboxMessage) == 0

        deleted = await browser.post(f"/admin/servers/{server_id}/orphans/delete", data={"username": ours})
        assert deleted.status_code == 200
        messages = (await admin.db.scalars(select(OutboxMessage))).all()
        assert [(m.topic, m.payload["username"]) for m in messages] == [("panel.delete_orphan", ours)]

        ignored = await browser.post(f"/admin/servers/{server_id}/orphans/ignore", data={"username": foreign})
        assert ignored.status_code == 200 and f"<code>{foreign}</code>" not in ignored.text
        admin.db.expire_all()
        assert (await admin.db.get_one(Server, server_id)).settings["ignored_orphans"] == [foreign]


async def test_the_server_page_shows_what_the_last_sync_found(admin: AdminHarness) -> None:
    server = await add_server(admin.db, "demo-1")
    await admin.db.commit()
    server_id = server.id
    browser = await admin.browser("owner")
    report = SyncReport(server="demo-1", seen=12, drift_fixed=3, missing_created=1, orphans=2, clashes=1)
    await remember_sync(admin.app.state.resources.sessionmaker, server_id, report)
    admin.db.expire_all()
    assert (await admin.db.get_one(Server, server_id)).settings["last_sync"]["drift_fixed"] == 3
    page = await browser.get(f"/admin/servers/{server_id}", headers={"accept-language": "en"})
    assert page.status_code == 200
    line = page.text.split("data-last-sync>", 1)[1].split("</p>", 1)[0]
    english = "12 panel accounts read, 3 drifted ones repaired, 1 missing ones recreated, 2 orphans, 1 name clashes"
    russian = "прочитано аккаунтов панели 12, исправлено расхождений 3, воссоздано недостающих 1, сирот 2, конфликтов"
    assert english in line or russian in line, line
