"""Issue 13's "done when", as a test: docs/OPERATIONS.md, "From an empty database to the first paid customer",
followed step by step on production settings (no demo mode), over HTTP through the real app.

The operator has only what the runbook gives: `vpnshop staff create` for the first owner, then the admin's own
pages, posted as a browser posts them (each form read from its page, hidden CSRF token included, the operator's
typing laid over it). Nothing is put in the database by the test, and the environment names no panel and no
payment provider: the two emulators (tests/emulators/) stand in for a real Marzban and YooKassa. The only
test-only environment value is YOOKASSA_API_URL, the emulator's address instead of api.yookassa.ru; Telegram's
address is a closed port (no Telegram here; the customer's messages stay in the outbox)."""

from __future__ import annotations

import asyncio
import base64
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from app.admin.auth import totp
from app.cli import main
from app.db import create_engine, create_sessionmaker
from app.kit.http import reset_breakers
from app.main import create_app
from app.models import Payment, Plan, Server, Staff, Subscription, SubscriptionStatus, User, VpnAccount
from tests.conftest import (
    POSTGRES_URL,
    TEST_ENCRYPTION_KEY,
    TEST_SECRET,
    _create_pg_database,
    _drop_pg_database,
    make_settings,
    require_server,
)
from tests.emulators.harness import serve as serve_emulator
from tests.emulators.marzban import MarzbanEmulator, user_links
from tests.emulators.yookassa import YooKassaEmulator
from tests.panels.marzban_fixture import serve_emulator as serve_marzban
from tests.web import BOT_TOKEN, drain_outbox, eventually, htmx, text_of, tma

OWNER = "founder"
OWNER_PASSWORD = "a-long-enough-owner-password"
CUSTOMER = 424242


class Form(HTMLParser):
    """The fields of one <form> (found by its action) as a browser submits it: inputs with their values (checked
    boxes and radios only), each select's selected option (else its first), textareas' text."""

    def __init__(self, action: str) -> None:
        super().__init__()
        self.action = action
        self.inside = False
        self.found = False
        self.fields: dict[str, str] = {}
        self._select: str | None = None
        self._select_first: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {key: value or "" for key, value in attrs}
        if tag == "form" and not self.found and a.get("action") == self.action:
            self.inside = self.found = True
        if not self.inside:
            return
        name = a.get("name")
        if tag == "input" and name and a.get("type") not in ("submit", "button", "file"):
            if a.get("type") in ("checkbox", "radio") and "checked" not in a:
                return
            self.fields[name] = a.get("value", "on" if a.get("type") == "checkbox" else "")
        elif tag == "select" and name:
            self._select, self._select_first = name, None
        elif tag == "option" and self._select:
            value = a.get("value", "")
            if self._select_first is None:
                self._select_first = value
                self.fields.setdefault(self._select, value)
            if "selected" in a:
                self.fields[self._select] = value
        elif tag == "textarea" and name:
            self._textarea = name
            self.fields[name] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "form" and self.inside:
            self.inside = False
        elif tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None

    def handle_data(self, data: str) -> None:
        if self.inside and self._textarea:
            self.fields[self._textarea] += data


def form_on(html: str, action: str) -> dict[str, str]:
    parser = Form(action)
    parser.feed(html)
    assert parser.found, f"no form posting to {action} on the page"
    return parser.fields


async def fill_in(
    browser: httpx.AsyncClient, page: str, action: str, typed: dict[str, str], *, submit_to: str | None = None
) -> httpx.Response:
    """Open `page`, fill in its form for `action` with what the operator types, and submit it (to `submit_to`
    when a second button, such as "Test connection", posts the same form elsewhere)."""
    opened = await browser.get(page)
    assert opened.status_code == 200, opened.text
    fields = form_on(opened.text, action) | typed
    assert fields.get("csrf_token"), f"the form on {page} carries no CSRF token"
    return await browser.post(submit_to or action, data=fields)


async def count(db: AsyncSession, model: type) -> int:
    await db.rollback()  # what the app committed
    return int(await db.scalar(select(func.count()).select_from(model)) or 0)


@pytest.fixture
def emulators() -> Iterator[tuple[MarzbanEmulator, str, YooKassaEmulator, str]]:
    reset_breakers()
    marzban, yookassa = MarzbanEmulator("0.7"), YooKassaEmulator()
    with serve_marzban(marzban) as marzban_url, serve_emulator(yookassa.app) as yookassa_url:
        yield marzban, marzban_url, yookassa, yookassa_url
    reset_breakers()


@pytest.fixture(params=["sqlite", "postgresql"])
async def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A database nothing has touched, not even the migrations (the test runs `vpnshop migrate`)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'shop.sqlite3'}"
        return
    require_server("PostgreSQL", POSTGRES_URL)
    name = f"vpnshop_setup_{uuid.uuid4().hex[:10]}"
    yield await _create_pg_database(POSTGRES_URL, name)
    await _drop_pg_database(POSTGRES_URL, name)


@pytest.fixture
async def db(empty_database: str) -> AsyncIterator[AsyncSession]:
    """The test's own look at the database (reads only)."""
    engine = create_engine(make_settings(empty_database))
    async with create_sessionmaker(engine)() as session:
        yield session
    await engine.dispose()


async def test_from_an_empty_database_to_the_first_paid_customer(
    empty_database: str,
    db: AsyncSession,
    redis_url: str,
    emulators: tuple[MarzbanEmulator, str, YooKassaEmulator, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    marzban, marzban_url, yookassa, yookassa_url = emulators

    # --- 1. Production settings; `vpnshop migrate` on an empty database ---------------------------------------------
    database_url = empty_database
    monkeypatch.chdir(tmp_path)  # no developer's .env
    environment = {
        "DATABASE_URL": database_url,
        "SECRET_KEY": TEST_SECRET,
        "ENCRYPTION_KEY": TEST_ENCRYPTION_KEY,
        "DEMO_MODE": "false",
        "REDIS_URL": redis_url,
        "BOT_TOKEN": BOT_TOKEN,
        "VPNSHOP_STAFF_PASSWORD": OWNER_PASSWORD,
    }
    migrated = await asyncio.to_thread(CliRunner().invoke, main, ["migrate"], env=environment)
    assert migrated.exit_code == 0, migrated.output
    assert "database upgraded to head" in migrated.output
    assert "panel server" not in migrated.output  # the environment names none
    settings = make_settings(
        database_url,
        redis_url=redis_url,
        bot_token=BOT_TOKEN,
        bot_username="shop_bot",
        public_base_url="http://t",
        telegram_api_url="http://127.0.0.1:1",  # no Telegram here: the customer's messages wait in the outbox
        admin_require_2fa=True,
        yookassa_api_url=yookassa_url + "/v3",  # the emulator instead of api.yookassa.ru
        forwarded_allow_ips=["127.0.0.1"],  # Caddy's address: the default, as in .env.example
    )
    assert not settings.demo_mode
    assert not settings.yookassa_shop_id and not settings.yookassa_secret_key
    for model in (Staff, Plan, Server, User, Payment):
        assert await count(db, model) == 0, model

    # --- 2. The first owner, made by the CLI --------------------------------------------------------------------
    created = await asyncio.to_thread(
        CliRunner().invoke, main, ["staff", "create", "--username", OWNER, "--role", "owner"], env=environment
    )
    assert created.exit_code == 0, created.output
    assert f"staff account '{OWNER}' created with role owner" in created.output

    app = create_app(settings)
    # As `vpnshop serve` runs it (app/cli.py): uvicorn believes X-Forwarded-For from FORWARDED_ALLOW_IPS only, so
    # a webhook's sender is the address Caddy saw; the test's requests come from 127.0.0.1, Caddy's place.
    served = ProxyHeadersMiddleware(app, trusted_hosts=settings.forwarded_allow_ips)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=served), base_url="http://t") as customer,
        # The operator's browser, in English as this walk-through is.
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=served), base_url="http://t", headers={"accept-language": "en"}
        ) as browser,
    ):
        # --- 3. Sign in at /admin/login; two-factor is required, so the owner enrols a TOTP secret first ----
        login = await browser.get("/admin/login")
        form = form_on(login.text, "/admin/login") | {"username": OWNER, "password": OWNER_PASSWORD}
        enrol = await browser.post("/admin/login", data=form)
        assert enrol.status_code == 200, enrol.text
        enrolment = form_on(enrol.text, "/admin/login/enrol")
        secret = enrolment["secret"]
        signed_in = await browser.post("/admin/login/enrol", data=enrolment | {"otp": totp.current_code(secret)})
        assert signed_in.status_code == 303, signed_in.text
        home = await browser.get(signed_in.headers["location"])
        assert home.status_code == 200 and OWNER in home.text

        # --- 4. A panel server: "Test connection" first, then save -------------------------------------------
        server_form = {
            "name": "nl-1",
            "panel_kind": "marzban",
            "api_url": marzban_url,
            "username": "admin",
            "password": "admin",
            "location": "nl",
            "accepts_new_accounts": "1",
        }
        tested = await fill_in(
            browser, "/admin/servers/new", "/admin/servers", server_form, submit_to="/admin/servers/test"
        )
        assert tested.status_code == 200 and 'data-ok="yes"' in tested.text, tested.text
        assert "Connected: marzban 0.7.0, 0 users" in text_of(tested.text)
        saved = await fill_in(browser, "/admin/servers/new", "/admin/servers", server_form)
        assert saved.status_code == 303, saved.text
        server_page = await browser.get(saved.headers["location"])
        assert server_page.status_code == 200 and "nl-1" in server_page.text
        assert 'data-server="nl-1"' in (await browser.get("/admin/servers")).text

        # --- 5. A plan with a price ------------------------------------------------------------------------
        plan_form = {
            "code": "month",
            "name_ru": "Месяц",
            "name_en": "Month",
            "name_hi": "महीना",  # every language the shop speaks needs a name
            "name_id": "Bulan",
            "duration_days": "30",
            "features_en": "All locations",
            "features_ru": "Все локации",
            "price_RUB": "199",
        }
        plan = await fill_in(browser, "/admin/plans/new", "/admin/plans", plan_form)
        assert plan.status_code == 303, plan.text
        plans_page = await browser.get("/admin/plans")
        listed = text_of(plans_page.text)
        assert "Month" in listed and "199" in listed, listed

        # --- 6. YooKassa's credentials: tested with the typed values, then saved -------------------------------
        provider_form = {"enabled": "on", "shop_id": yookassa.shop_id, "secret_key": yookassa.secret_key}
        tested = await fill_in(
            browser,
            "/admin/providers",
            "/admin/providers/yookassa",
            provider_form,
            submit_to="/admin/providers/yookassa/test",
        )
        assert tested.status_code == 200 and 'data-verdict="ok"' in tested.text, tested.text
        assert "Connected" in text_of(tested.text)
        saved = await fill_in(browser, "/admin/providers", "/admin/providers/yookassa", provider_form)
        assert saved.status_code == 200, saved.text
        assert yookassa.secret_key not in saved.text  # a secret never goes back to the browser
        assert "/api/payments/webhook/yookassa" in saved.text  # the URL to paste into YooKassa's dashboard

        # --- 7. A setting or two ------------------------------------------------------------------------------
        saved = await fill_in(
            browser, "/admin/settings", "/admin/settings", {"trial_days": "3", "support_username": "@shop_help"}
        )
        assert saved.status_code == 200 and "Settings saved." in saved.text, saved.text
        settings_page = await browser.get("/admin/settings")
        typed = form_on(settings_page.text, "/admin/settings")
        assert (typed["trial_days"], typed["support_username"]) == ("3", "@shop_help")

        # --- 8. The first customer: the Mini App's checkout shows the plan and YooKassa ---------------------------
        signed = tma(user_id=CUSTOMER, language="ru")

        # The settings reach every process at its refresher's next read (each second), no restart.
        async def sees_the_settings() -> bool:
            home = text_of((await customer.get("/app", headers=signed | htmx())).text)
            help_page = (await customer.get("/app/help", headers=signed | htmx())).text
            return "бесплатно 3 дня" in home and "https://t.me/shop_help" in help_page

        await eventually(sees_the_settings)
        plans = await customer.get("/app/checkout", headers=signed)
        assert plans.status_code == 200, plans.text
        assert "Месяц" in text_of(plans.text) and "199" in text_of(plans.text)
        offer = await customer.get("/app/checkout/month", headers=signed)
        assert offer.status_code == 200
        options = re.findall(r'name="option" value="([^"]+)"', offer.text)
        assert options == ["yookassa/bank_card", "yookassa/sbp"], options  # YooKassa's methods, nothing else
        yookassa_option = "yookassa/bank_card"
        started = await customer.post("/app/checkout/month", headers=signed, data={"option": yookassa_option})
        assert started.status_code in (200, 303), started.text
        await db.rollback()
        (payment,) = (await db.scalars(select(Payment))).all()
        assert (payment.provider, payment.currency, payment.amount_minor) == ("yookassa", "RUB", 19900)

        # --- 9. The customer pays at YooKassa; its notification reaches our webhook --------------------------------
        delivery = yookassa.pay(payment.external_id)
        answer = await customer.post("/api/payments/webhook/yookassa", content=delivery.body, headers=delivery.headers)
        assert answer.status_code == 200, answer.text
        await drain_outbox(app)

        # --- 10. An active subscription, an account on the panel, configs through the /sub/ link -----------------
        await db.rollback()
        user = await db.scalar(select(User).where(User.telegram_id == CUSTOMER))
        assert user is not None
        subscription = await db.scalar(select(Subscription).where(Subscription.user_id == user.id))
        assert subscription is not None and subscription.status == SubscriptionStatus.ACTIVE
        account = await db.scalar(select(VpnAccount).where(VpnAccount.user_id == user.id))
        assert account is not None and account.panel_username in marzban.state.users
        me = (await customer.get("/api/me", headers=signed)).json()["subscription"]
        assert (me["status"], me["plan"], me["is_trial"]) == ("active", "month", False), me
        assert me["subscription_link"] == f"http://t/sub/{account.sub_token}"
        cabinet = await customer.get("/app", headers=signed | htmx())
        assert cabinet.status_code == 200
        home = text_of(cabinet.text)
        assert "Активна" in home and "Тариф Месяц" in home and "Осталось 30 дней" in home, home
        configs = await customer.get(f"/sub/{account.sub_token}", headers={"user-agent": "v2rayNG/1.9"})
        assert configs.status_code == 200, configs.text
        # ...and the operator sees it: the payment in the admin, the webhook verified on the provider's card.
        payments_page = text_of((await browser.get("/admin/payments")).text)
        assert "yookassa" in payments_page.lower() and "199" in payments_page, payments_page
        card = (await browser.get("/admin/providers")).text
        assert "payment.succeeded" in card and 'class="badge ok"' in card

        # The panel's own configs for this account (vless://…, vmess://…), relayed on our domain.
        served = user_links(marzban.state, marzban.state.users.get(account.panel_username))
        assert served and base64.b64decode(configs.text).decode() == "\n".join(served)
