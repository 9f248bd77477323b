"""/admin/texts and /api/admin/texts: a bad override is refused naming the field and nothing is stored; a saved
one is audited and reaches the cabinet (and, in tests/bot, the bot) at the next request, also in another app
instance on the same database; reset goes back to the catalog's text."""

from __future__ import annotations

import html

import httpx
from sqlalchemy import func, select

from app.models import AuditLog, MessageText
from tests.admin.conftest import AdminHarness
from tests.web import eventually, htmx, serve, text_of, tma


async def fresh(admin: AdminHarness) -> None:
    await admin.db.rollback()
    admin.db.expire_all()


async def stored(admin: AdminHarness) -> int:
    await fresh(admin)
    return await admin.db.scalar(select(func.count()).select_from(MessageText)) or 0


async def test_the_list_shows_customer_texts_only(admin: AdminHarness) -> None:
    owner = await admin.browser("marketing")  # texts:write is the marketers' too
    page = await owner.get("/admin/texts", params={"language": "en", "q": "subscription"})
    assert page.status_code == 200
    assert 'data-key="home.title"' in page.text
    everything = await owner.get("/admin/texts", params={"language": "en"})
    assert 'data-key="bot.help"' in everything.text and 'data-key="notify.expiry_reminder"' in everything.text
    assert 'data-key="admin.' not in everything.text and 'data-key="staff.' not in everything.text
    bad = await owner.get("/admin/texts", params={"language": "xx"})
    assert bad.status_code == 422 and 'id="language-error"' in bad.text


async def test_bad_overrides_are_refused_next_to_the_field_and_nothing_is_stored(admin: AdminHarness) -> None:
    owner = await admin.browser("owner")
    cases = [
        ("bot.help", {"body": "   "}, "body", "empty"),
        ("bot.help", {"body": "<b>unclosed"}, "body", "Not valid Telegram HTML"),
        ("bot.help", {"body": "<script>x</script>"}, "body", "Not valid Telegram HTML"),
        (
            "bot.support",
            {"body": "Write to {nobody}"},
            "body",
            "Unknown placeholder {nobody}: this text may use {contact}",
        ),
        ("bot.support", {"body": "Write to {contact"}, "body", "Unbalanced braces"),
        ("home.title", {"body": "x" * 8001}, "body", "longer than 8000"),
    ]
    for key, data, field, message in cases:
        response = await owner.post(f"/admin/texts/en/{key}", data=data, headers=htmx())
        assert response.status_code == 422, (key, data)
        assert f'id="{field}-error"' in response.text, key
        assert message in html.unescape(text_of(response.text)), (key, message)
    missing = await owner.post("/admin/texts/en/no.such.key", data={"body": "x"}, headers=htmx())
    assert missing.status_code == 422
    assert await stored(admin) == 0
    assert not list(await admin.db.scalars(select(AuditLog).where(AuditLog.action == "text.update")))


async def test_the_api_refuses_bad_overrides_naming_the_field(admin: AdminHarness) -> None:
    headers = await admin.bearer("owner")
    cases = [
        ("/api/admin/texts/en/bot.help", {"body": "<i>open"}, "invalid_body"),
        ("/api/admin/texts/xx/bot.help", {"body": "fine"}, "invalid_language"),
        ("/api/admin/texts/en/nope", {"body": "fine"}, "invalid_key"),
        ("/api/admin/texts/en/home.devices_limit", {"body": "just text"}, "invalid_body"),  # plural: forms needed
        ("/api/admin/texts/en/home.devices_limit", {"body": {"one": "{count} day", "other": ""}}, "invalid_body.other"),
        (
            "/api/admin/texts/en/home.devices_limit",
            {"body": {"one": "a", "other": "b", "few": "c"}},
            "invalid_body.few",
        ),
    ]
    for path, body, code in cases:
        response = await admin.client.put(path, json=body, headers=headers)
        assert response.status_code == 422, (path, body, response.text)
        assert response.json()["error"]["code"] == code, (path, response.text)
    assert await stored(admin) == 0


async def test_an_override_reaches_the_cabinet_here_and_in_another_instance_and_reset_undoes_it(
    admin: AdminHarness,
) -> None:
    owner = await admin.browser("owner")
    customer = tma(user_id=556001, language="en")
    async with serve(admin.settings) as (_other_app, other):
        assert "My subscription" in (await other.get("/app", headers=customer)).text
        saved = await owner.post("/admin/texts/en/home.title", data={"body": "Your VPN pass"}, headers=htmx())
        assert saved.status_code == 200 and "Your VPN pass" in saved.text

        async def shows(client: httpx.AsyncClient, text: str) -> bool:
            return text in (await client.get("/app", headers=customer)).text

        await eventually(lambda: shows(admin.client, "Your VPN pass"))
        await eventually(lambda: shows(other, "Your VPN pass"))
        assert "My subscription" not in (await other.get("/app", headers=customer)).text
        # Another language keeps its own text.
        assert "Your VPN pass" not in (await other.get("/app", headers=tma(user_id=556002, language="ru"))).text

        await fresh(admin)
        (row,) = await admin.db.scalars(select(AuditLog).where(AuditLog.action == "text.update"))
        assert row.before is None and row.after == {"body": "Your VPN pass"} and row.entity_id == "en:home.title"

        reset = await owner.post("/admin/texts/en/home.title/reset", headers=htmx())
        assert reset.status_code == 200
        await eventually(lambda: shows(other, "My subscription"))
    assert await stored(admin) == 0


async def test_plural_texts_are_edited_per_form_and_the_preview_shows_telegram_html(admin: AdminHarness) -> None:
    headers = await admin.bearer("owner")
    saved = await admin.client.put(
        "/api/admin/texts/en/home.devices_limit",
        json={"body": {"one": "{count} day to go", "other": "{count} days to go"}},
        headers=headers,
    )
    assert saved.status_code == 200, saved.text
    assert saved.json()["override"] == {"one": "{count} day to go", "other": "{count} days to go"}
    owner = await admin.browser("owner")
    preview = await owner.post(
        "/admin/texts/en/bot.help/preview", data={"body": "<b>Bold</b> &amp; <i>x</i>"}, headers=htmx("preview")
    )
    assert preview.status_code == 200
    assert "<b>Bold</b>" in preview.text  # rendered as Telegram shows it
    broken = await owner.post("/admin/texts/en/bot.help/preview", data={"body": "<b>Bold"}, headers=htmx("preview"))
    assert "&lt;b&gt;Bold" in broken.text and "Not valid Telegram HTML" in html.unescape(broken.text)
    assert await stored(admin) == 1  # previews store nothing
