"""Payment providers in the admin (/admin/providers and /api/admin/providers): credentials stored encrypted with
the environment as the fallback, secrets never in any answer, bad input refused naming the field and nothing
changed, a provider switched off gone from checkout at once (and from another process after its watch), test
connection against the YooKassa, Crypto Pay, WATA, Razorpay and Xendit emulators (good, wrong, unreachable), and the
audit trail."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from app.config import Settings
from app.kit.http import reset_breakers
from app.models import AuditLog, PaymentProviderConfig
from app.payments.registry import PaymentRegistry
from tests.admin.conftest import AdminHarness
from tests.checkout.conftest import seed_plans
from tests.conftest import make_settings
from tests.emulators.cryptopay import CryptoPayEmulator
from tests.emulators.harness import Plug, free_port, serve
from tests.emulators.razorpay import RazorpayEmulator
from tests.emulators.wata import WataEmulator
from tests.emulators.xendit import XenditEmulator
from tests.emulators.yookassa import YooKassaEmulator
from tests.web import BOT_TOKEN, htmx, tma


@pytest.fixture
def emulators() -> Iterator[tuple[YooKassaEmulator, str, CryptoPayEmulator, str]]:
    reset_breakers()
    yookassa, crypto = YooKassaEmulator(), CryptoPayEmulator()
    with serve(yookassa.app) as yookassa_url, serve(crypto.app) as crypto_url:
        yield yookassa, yookassa_url, crypto, crypto_url
    reset_breakers()


@pytest.fixture
def admin_settings(database_url: str, emulators: tuple[YooKassaEmulator, str, CryptoPayEmulator, str]) -> Settings:
    yookassa, yookassa_url, crypto, crypto_url = emulators
    return make_settings(
        database_url, bot_token=BOT_TOKEN, **yookassa.settings(yookassa_url), **crypto.settings(crypto_url)
    )


def _rub_providers(plans: list[dict]) -> list[str]:
    (month,) = [plan for plan in plans if plan["code"] == "month"]
    (rub,) = [price for price in month["prices"] if price["currency"] == "RUB"]
    return [provider["name"] for provider in rub["providers"]]


async def test_no_secret_in_any_answer_and_the_environment_is_the_fallback(
    admin: AdminHarness, emulators: tuple[YooKassaEmulator, str, CryptoPayEmulator, str]
) -> None:
    yookassa, _, crypto, _ = emulators
    owner = await admin.bearer("owner")
    listing = await admin.client.get("/api/admin/providers", headers=owner)
    assert listing.status_code == 200
    assert yookassa.secret_key not in listing.text and crypto.token not in listing.text
    by_name = {p["name"]: p for p in listing.json()}
    assert set(by_name) >= {"yookassa", "wata", "stars", "cryptopay", "razorpay", "xendit", "demo"}
    key = {f["key"]: f for f in by_name["yookassa"]["fields"]}
    assert key["secret_key"]["source"] == "environment" and key["secret_key"]["is_set"] is True
    assert key["secret_key"]["value"] is None
    assert key["shop_id"]["value"] == yookassa.shop_id
    assert by_name["yookassa"]["active"] is True
    assert by_name["yookassa"]["webhook_url"].endswith("/api/payments/webhook/yookassa")
    assert by_name["stars"]["webhook_url"] is None

    secret = "live_new-secret-value-7788"
    changed = await admin.client.put(
        "/api/admin/providers/yookassa", json={"values": {"secret_key": secret}}, headers=owner
    )
    assert changed.status_code == 200, changed.text
    assert secret not in changed.text and "7788" in changed.text  # "ends …7788", no more
    field = {f["key"]: f for f in changed.json()["fields"]}["secret_key"]
    assert (field["source"], field["ends_with"]) == ("admin", "7788")
    page = await (await admin.browser("owner")).get("/admin/providers")
    assert page.status_code == 200 and secret not in page.text and yookassa.secret_key not in page.text

    await admin.db.rollback()
    row = await admin.db.scalar(select(PaymentProviderConfig).where(PaymentProviderConfig.name == "yookassa"))
    assert row is not None and secret not in (row.secrets_encrypted or "") and secret not in json.dumps(row.options)
    (audit,) = (await admin.db.scalars(select(AuditLog).where(AuditLog.action == "provider.update"))).all()
    assert secret not in json.dumps(audit.after) and audit.after["secrets"].keys() == {"secret_key"}

    # The stored secret is what the provider now uses: the emulator refuses it.
    test = await admin.client.post("/api/admin/providers/yookassa/test", headers=owner)
    assert test.json()["verdict"] == "refused"
    reset = await admin.client.put("/api/admin/providers/yookassa", json={"reset": ["secret_key"]}, headers=owner)
    assert {f["key"]: f for f in reset.json()["fields"]}["secret_key"]["source"] == "environment"
    assert (await admin.client.post("/api/admin/providers/yookassa/test", headers=owner)).json()["verdict"] == "ok"


async def test_test_connection_good_wrong_and_unreachable(
    admin: AdminHarness, emulators: tuple[YooKassaEmulator, str, CryptoPayEmulator, str]
) -> None:
    owner = await admin.bearer("owner")
    for name, wrong in (("yookassa", {"secret_key": "wrong-secret-key-000"}), ("cryptopay", {"api_token": "1:bad"})):
        good = await admin.client.post(f"/api/admin/providers/{name}/test", headers=owner)
        assert good.status_code == 200 and good.json()["verdict"] == "ok", good.text
        refused = await admin.client.post(f"/api/admin/providers/{name}/test", json={"values": wrong}, headers=owner)
        assert refused.json()["verdict"] == "refused", refused.text
    # Nothing typed for a test is saved.
    await admin.db.rollback()
    assert (await admin.db.scalars(select(PaymentProviderConfig))).all() == []

    # A provider nobody answers at: another process's settings pointing at a closed port.
    unreachable_settings = admin.settings.model_copy(update={"yookassa_api_url": f"http://127.0.0.1:{free_port()}/v3"})
    admin.app.state.settings = unreachable_settings
    try:
        down = await admin.client.post("/api/admin/providers/yookassa/test", headers=owner)
    finally:
        admin.app.state.settings = admin.settings
    assert down.json()["verdict"] == "unreachable", down.text
    none = await admin.client.post("/api/admin/providers/wata/test", headers=owner)
    assert none.json()["verdict"] == "not_configured"

    # The page: typed credentials tested before saving, the verdict shown in the card.
    browser = await admin.browser("owner")
    page = await browser.post(
        "/admin/providers/yookassa/test", data={"enabled": "env", "secret_key": "wrong-secret-key-000"}, headers=htmx()
    )
    assert page.status_code == 200 and 'data-verdict="refused"' in page.text


async def test_bad_input_is_refused_and_changes_nothing(admin: AdminHarness) -> None:
    owner = await admin.bearer("owner")
    for body, code in (
        ({"values": {"api_token": "x\ny"}}, "invalid_api_token"),
        ({"values": {"assets": "DOGE"}}, "invalid_assets"),
        ({"values": {"api_token": ""}}, "invalid_api_token"),
        ({"values": {"colour": "red"}}, "invalid_colour"),
        ({"reset": ["nothing"]}, "invalid_nothing"),
        ({"values": {"api_token": "a" * 600}}, "invalid_api_token"),
    ):
        response = await admin.client.put("/api/admin/providers/cryptopay", json=body, headers=owner)
        assert response.status_code == 422, body
        assert response.json()["error"]["code"] == code, response.text
    bools = await admin.client.put(
        "/api/admin/providers/yookassa", json={"values": {"recurring_enabled": "yes"}}, headers=owner
    )
    assert bools.status_code == 422 and bools.json()["error"]["code"] == "invalid_recurring_enabled"
    email = await admin.client.put(
        "/api/admin/providers/yookassa", json={"values": {"receipt_email": "nobody"}}, headers=owner
    )
    assert email.status_code == 422 and email.json()["error"]["code"] == "invalid_receipt_email"
    demo = await admin.client.put("/api/admin/providers/demo", json={"enabled": True}, headers=owner)
    assert demo.status_code == 422 and demo.json()["error"]["code"] == "invalid_enabled"
    assert (await admin.client.put("/api/admin/providers/paypal", json={}, headers=owner)).status_code == 404
    extra = await admin.client.put("/api/admin/providers/yookassa", json={"secret": "x"}, headers=owner)
    assert extra.status_code == 422

    browser = await admin.browser("owner")
    form = await browser.post("/admin/providers/cryptopay", data={"enabled": "env", "assets": "DOGE"}, headers=htmx())
    assert form.status_code == 422 and 'id="assets-error"' in form.text
    plain = await browser.post("/admin/providers/cryptopay", data={"enabled": "maybe"})
    assert plain.status_code == 422 and 'id="enabled-error"' in plain.text

    await admin.db.rollback()
    assert (await admin.db.scalars(select(PaymentProviderConfig))).all() == []
    assert (await admin.db.scalars(select(AuditLog).where(AuditLog.action == "provider.update"))).all() == []
    # Only owners (settings:write) see or change providers.
    staff_admin = await admin.bearer("admin")
    assert (await admin.client.get("/api/admin/providers", headers=staff_admin)).status_code == 403
    put = await admin.client.put("/api/admin/providers/yookassa", json={"enabled": False}, headers=staff_admin)
    assert put.status_code == 403


async def test_a_disabled_provider_disappears_from_checkout_in_every_process(admin: AdminHarness) -> None:
    await seed_plans(admin.db)
    await admin.db.commit()
    before = (await admin.client.get("/api/plans", headers=tma(language="ru"))).json()
    assert "yookassa" in _rub_providers(before)

    # Another process (a worker, a second web worker) with its own registry, watching the same database.
    other = PaymentRegistry.from_settings(admin.settings)
    await other.reload_from(admin.app.state.resources.sessionmaker)
    assert "yookassa" in other

    browser = await admin.browser("owner")
    off = await browser.post("/admin/providers/yookassa", data={"enabled": "off"}, headers=htmx())
    assert off.status_code == 200 and 'data-state="inactive"' in off.text
    after = (await admin.client.get("/api/plans", headers=tma(language="ru"))).json()
    assert "yookassa" not in _rub_providers(after)
    refused = await admin.client.post(
        "/api/checkout", headers=tma(language="ru"), json={"plan": "month", "provider": "yookassa"}
    )
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "provider_not_available"
    # The other process sees it on its next look (the watcher does this every few seconds).
    assert await other.reload_from(admin.app.state.resources.sessionmaker) is True
    assert "yookassa" not in other
    await other.aclose()

    back = await admin.client.put(
        "/api/admin/providers/yookassa", json={"enabled": None}, headers=await admin.bearer("owner")
    )
    assert back.status_code == 200 and back.json()["active"] is True
    assert "yookassa" in _rub_providers((await admin.client.get("/api/plans", headers=tma(language="ru"))).json())
    actions = (await admin.db.scalars(select(AuditLog.after).where(AuditLog.action == "provider.update"))).all()
    assert [row["enabled"] for row in actions] == [False, None]


@pytest.fixture
def more_emulators() -> Iterator[dict[str, tuple[Any, str]]]:
    """WATA, Razorpay and Xendit, each on its own loopback port, by provider name."""
    reset_breakers()
    wata, razorpay, xendit = WataEmulator(), RazorpayEmulator(), XenditEmulator()
    # Razorpay's and Xendit's apps are bound methods, which uvicorn takes for ASGI2: a Plug presents them as ASGI3.
    razorpay_plug, xendit_plug = Plug(), Plug()
    razorpay_plug.app, xendit_plug.app = razorpay.app, xendit.app
    with serve(wata.app) as wata_url, serve(razorpay_plug) as razorpay_url, serve(xendit_plug) as xendit_url:
        yield {"wata": (wata, wata_url), "razorpay": (razorpay, razorpay_url), "xendit": (xendit, xendit_url)}
    reset_breakers()


# name -> (a credential field typed wrong in the admin, the setting that points at the API, its path on the host)
WRONG = {
    "wata": ({"api_key": "wata-token-that-expired"}, "wata_api_url", "/api/h2h"),
    "razorpay": ({"key_secret": "not-the-key-secret"}, "razorpay_api_url", "/v1"),
    "xendit": ({"secret_key": "xnd_development_not_ours"}, "xendit_api_url", ""),
}


class TestConnectionOfWataRazorpayAndXendit:
    @pytest.fixture
    def admin_settings(self, database_url: str, more_emulators: dict[str, tuple[Any, str]]) -> Settings:
        overrides: dict[str, Any] = {}
        for emulator, url in more_emulators.values():
            overrides.update(emulator.settings(url))
        return make_settings(database_url, bot_token=BOT_TOKEN, **overrides)

    async def test_good_wrong_and_unreachable_through_the_api(
        self, admin: AdminHarness, more_emulators: dict[str, tuple[Any, str]]
    ) -> None:
        owner = await admin.bearer("owner")
        listing = {p["name"]: p for p in (await admin.client.get("/api/admin/providers", headers=owner)).json()}
        for name, (wrong, url_setting, path) in WRONG.items():
            assert listing[name]["can_test"] is True and listing[name]["active"] is True
            good = await admin.client.post(f"/api/admin/providers/{name}/test", headers=owner)
            assert good.status_code == 200 and good.json()["verdict"] == "ok", (name, good.text)
            refused = await admin.client.post(
                f"/api/admin/providers/{name}/test", json={"values": wrong}, headers=owner
            )
            assert refused.status_code == 200 and refused.json()["verdict"] == "refused", (name, refused.text)
            # The provider's API failing (5xx through every retry) is not the credentials' fault.
            emulator, _ = more_emulators[name]
            emulator.fail_next(503, times=3)
            failing = await admin.client.post(f"/api/admin/providers/{name}/test", headers=owner)
            assert failing.json()["verdict"] == "unreachable", (name, failing.text)
            # Nobody answering at all: another process's settings pointing at a closed port.
            closed = f"http://127.0.0.1:{free_port()}{path}"
            admin.app.state.settings = admin.settings.model_copy(update={url_setting: closed})
            try:
                down = await admin.client.post(f"/api/admin/providers/{name}/test", headers=owner)
            finally:
                admin.app.state.settings = admin.settings
            assert down.json()["verdict"] == "unreachable", (name, down.text)

        # The reasons a refusal gives are the provider's own: WATA's IP allow-list, a Xendit key without the
        # Invoice permission.
        wata, _ = more_emulators["wata"]
        wata.ip_allowed = False
        ip = (await admin.client.post("/api/admin/providers/wata/test", headers=owner)).json()
        assert ip["verdict"] == "refused" and "IP address" in ip["message"]
        xendit, _ = more_emulators["xendit"]
        xendit.key_permitted = False
        forbidden = (await admin.client.post("/api/admin/providers/xendit/test", headers=owner)).json()
        assert forbidden["verdict"] == "refused" and "REQUEST_FORBIDDEN_ERROR" in forbidden["message"]

        # A test changes nothing: no settings stored, nothing made at the providers.
        await admin.db.rollback()
        assert (await admin.db.scalars(select(PaymentProviderConfig))).all() == []
        razorpay, _ = more_emulators["razorpay"]
        assert not wata.links and not razorpay.links and not xendit.invoices
        # Only owners (settings:write) may test.
        staff_admin = await admin.bearer("admin")
        assert (await admin.client.post("/api/admin/providers/wata/test", headers=staff_admin)).status_code == 403

    async def test_the_page_tests_typed_credentials_without_saving_them(
        self, admin: AdminHarness, more_emulators: dict[str, tuple[Any, str]]
    ) -> None:
        browser = await admin.browser("owner")
        page = await browser.get("/admin/providers")
        assert page.status_code == 200
        for name, (wrong, _, _) in WRONG.items():
            assert f'formaction="/admin/providers/{name}/test"' in page.text, name
            good = await browser.post(f"/admin/providers/{name}/test", data={"enabled": "env"}, headers=htmx())
            assert good.status_code == 200 and 'data-verdict="ok"' in good.text, name
            typed = await browser.post(
                f"/admin/providers/{name}/test", data={"enabled": "env", **wrong}, headers=htmx()
            )
            assert typed.status_code == 200 and 'data-verdict="refused"' in typed.text, name
            # The typed secret is neither saved nor shown back.
            assert next(iter(wrong.values())) not in typed.text
        # Without HTMX (a plain form post) the whole page answers with the verdict too.
        plain = await browser.post("/admin/providers/xendit/test", data={"enabled": "env"})
        assert plain.status_code == 200 and 'data-verdict="ok"' in plain.text
        await admin.db.rollback()
        assert (await admin.db.scalars(select(PaymentProviderConfig))).all() == []
