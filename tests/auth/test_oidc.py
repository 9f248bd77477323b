"""OIDC sign-in (app.auth.oidc) against the OIDC emulator over real HTTP.

Time is pinned: every call gets `now=NOW` (or an explicit offset) and the emulators sign with the same clock, so no
assertion depends on the wall clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

import httpx
import pytest

from app.auth import oidc
from app.auth.oidc import OidcClaims, OidcError, OidcProvider, OidcUnavailable
from app.kit.http import reset_breakers
from tests.conftest import make_settings
from tests.emulators.harness import free_port
from tests.emulators.oidc import OidcEmulator, OidcHub, OidcUser

NOW = datetime(2031, 3, 14, 9, 26, 53, tzinfo=UTC)
SECRET = "oidc-test-secret-" + "k" * 32


@dataclass
class Idp:
    """A provider as the app sees it (config) next to the emulator that plays it."""

    provider: OidcProvider
    emulator: OidcEmulator
    redirect_uri: str


@pytest.fixture(scope="module")
def oidc_hub() -> Iterator[OidcHub]:
    with OidcHub.serve() as hub:
        yield hub


@pytest.fixture(autouse=True)
def _fresh_state() -> Iterator[None]:
    oidc.reset_caches()
    reset_breakers()  # no test inherits another's failures of the hub's host
    yield
    oidc.reset_caches()


@pytest.fixture
def make_idp(oidc_hub: OidcHub) -> Iterator[Callable[..., Idp]]:
    """Mount a fresh emulator and return it with a matching provider config; extra keywords go to the emulator."""
    mounted: list[OidcEmulator] = []

    def make(name: str = "google", *, config: dict[str, Any] | None = None, **emulator_options: Any) -> Idp:
        redirect_uri = f"https://shop.example/auth/oidc/{name}/callback"
        emulator = OidcEmulator(redirect_uris=[redirect_uri], clock=NOW.timestamp, **emulator_options)
        issuer = oidc_hub.mount(emulator, name)
        mounted.append(emulator)
        entry = {
            "name": name,
            "title": name.title(),
            "client_id": emulator.client_id,
            "client_secret": emulator.client_secret,
            "server_metadata_url": f"{issuer}/.well-known/openid-configuration",
            **(config or {}),
        }
        return Idp(OidcProvider.from_config(entry, secret_key=SECRET), emulator, redirect_uri)

    yield make
    for emulator in mounted:
        oidc_hub.unmount(emulator)


@pytest.fixture
def idp(make_idp: Callable[..., Idp]) -> Idp:
    return make_idp()


async def consent(authorize_url: str) -> dict[str, str]:
    """What a browser does: follow the authorize URL and read the redirect back to us (never followed)."""
    async with httpx.AsyncClient(verify=False) as browser:
        response = await browser.get(authorize_url)
    assert response.status_code == 302, response.text
    return dict(parse_qsl(urlsplit(response.headers["location"]).query))


async def finish(idp: Idp, params: dict[str, str], sealed: str, *, now: datetime = NOW, suffix: str = "") -> OidcClaims:
    """The callback route's call, with the redirect URI it was started with (plus `suffix`)."""
    redirect_uri = idp.redirect_uri + suffix
    return await oidc.finish(idp.provider, params=params, sealed_state=sealed, redirect_uri=redirect_uri, now=now)


async def sign_in(idp: Idp, *, intent: str = "login", now: datetime = NOW) -> OidcClaims:
    url, sealed = await oidc.begin(idp.provider, idp.redirect_uri, intent=intent, now=now)
    return await finish(idp, await consent(url), sealed, now=now)


# --- the happy path ---------------------------------------------------------------------------------------------


async def test_sign_in_returns_verified_claims(idp: Idp) -> None:
    claims = await sign_in(idp)

    assert claims == OidcClaims(
        provider="google",
        subject="248289761001",
        email="jane@example.com",
        email_verified=True,
        name="Jane Doe",
        telegram_id=None,
        intent="login",
    )
    assert idp.emulator.pkce_verified == 1
    assert idp.emulator.client_auth_used == ["client_secret_basic"]
    # Discovery and keys were fetched once; the callback reused them.
    assert idp.emulator.requests["discovery"] == 1
    assert idp.emulator.requests["jwks"] == 1


async def test_authorize_url_carries_pkce_nonce_and_state(idp: Idp) -> None:
    url, sealed = await oidc.begin(idp.provider, idp.redirect_uri, intent="link", now=NOW)

    query = {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}
    assert url.startswith(f"{idp.emulator.issuer}/authorize?")
    assert query["response_type"] == "code"
    assert query["client_id"] == idp.emulator.client_id
    assert query["redirect_uri"] == idp.redirect_uri
    assert query["scope"] == "openid email profile"
    assert query["code_challenge_method"] == "S256"
    assert len(query["code_challenge"]) == 43 and query["state"] and query["nonce"]
    assert len(sealed) < 600  # small enough for a cookie


async def test_link_intent_survives_the_round_trip(idp: Idp) -> None:
    assert (await sign_in(idp, intent="link")).intent == "link"


async def test_unknown_intent_is_a_programming_error(idp: Idp) -> None:
    with pytest.raises(ValueError, match="intent"):
        await oidc.begin(idp.provider, idp.redirect_uri, intent="signup", now=NOW)


async def test_client_secret_post_when_basic_is_not_offered(make_idp: Callable[..., Idp]) -> None:
    idp = make_idp(auth_methods=["client_secret_post"])

    await sign_in(idp)

    assert idp.emulator.client_auth_used == ["client_secret_post"]


async def test_provider_without_a_shared_secret_method_is_refused(make_idp: Callable[..., Idp]) -> None:
    idp = make_idp(auth_methods=["private_key_jwt"])

    with pytest.raises(OidcUnavailable, match="none of client_secret_basic"):
        await oidc.begin(idp.provider, idp.redirect_uri, intent="login", now=NOW)


async def test_profile_missing_from_id_token_comes_from_userinfo(make_idp: Callable[..., Idp]) -> None:
    idp = make_idp(profile_in_id_token=False)

    claims = await sign_in(idp)

    assert (claims.email, claims.email_verified, claims.name) == ("jane@example.com", True, "Jane Doe")
    assert idp.emulator.requests["userinfo"] == 1


# --- PKCE and the token endpoint --------------------------------------------------------------------------------


async def test_emulator_checks_the_pkce_verifier(idp: Idp) -> None:
    url, _ = await oidc.begin(idp.provider, idp.redirect_uri, intent="login", now=NOW)
    code = (await consent(url))["code"]
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": idp.redirect_uri,
        "code_verifier": "w" * 64,  # well-formed, but not the one behind the challenge
    }
    async with httpx.AsyncClient(verify=False) as http:
        response = await http.post(
            f"{idp.emulator.issuer}/token", data=form, auth=(idp.emulator.client_id, idp.emulator.client_secret)
        )

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert idp.emulator.pkce_verified == 0


async def test_a_code_is_used_once(idp: Idp) -> None:
    url, sealed = await oidc.begin(idp.provider, idp.redirect_uri, intent="login", now=NOW)
    params = await consent(url)
    await finish(idp, params, sealed)

    with pytest.raises(OidcError, match="invalid_grant"):
        await finish(idp, params, sealed)


async def test_redirect_uri_must_match_the_authorize_request(idp: Idp) -> None:
    url, sealed = await oidc.begin(idp.provider, idp.redirect_uri, intent="login", now=NOW)
    params = await consent(url)

    with pytest.raises(OidcError, match="redirect_uri differs"):
        await finish(idp, params, sealed, suffix="x")


async def test_emulator_refuses_authorize_requests_without_s256(idp: Idp) -> None:
    url, _ = await oidc.begin(idp.provider, idp.redirect_uri, intent="login", now=NOW)
    plain = url.replace("code_challenge_method=S256", "code_challenge_method=plain")
    unregistered = url.replace("shop.example", "evil.example")

    assert (await consent(plain))["error"] == "invalid_request"
    async with httpx.AsyncClient(verify=False) as browser:
        response = await browser.get(unregistered)
    assert response.status_code == 400  # never redirected to an unregistered URI


# --- fault knobs: each is refused with a clear error ------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "error", "message"),
    [
        ("wrong_nonce", OidcError, "nonce does not match"),
        ("wrong_audience", OidcError, "audience is another application"),
        ("wrong_issuer", OidcError, "issued by 'https://evil.example'"),
        ("expired_id_token", OidcError, "expired"),
        ("unknown_key", OidcError, "key Google does not publish"),
        ("bad_signature", OidcError, "signature is invalid"),
    ],
)
async def test_bad_id_tokens_are_refused(idp: Idp, fault: str, error: type[OidcError], message: str) -> None:
    setattr(idp.emulator.faults, fault, True)

    with pytest.raises(error, match=message) as caught:
        await sign_in(idp)

    assert type(caught.value) is error
    assert caught.value.status_code == 401 and caught.value.code == "oidc_failed"


async def test_unknown_kid_refetches_the_keys_once(idp: Idp) -> None:
    await sign_in(idp)
    idp.emulator.faults.unknown_key = True

    with pytest.raises(OidcError, match="does not publish"):
        await sign_in(idp)

    assert idp.emulator.requests["jwks"] == 2


async def test_token_endpoint_failure_means_provider_unavailable(idp: Idp) -> None:
    idp.emulator.faults.token_status = 500

    with pytest.raises(OidcUnavailable, match="Google is unavailable") as caught:
        await sign_in(idp)

    assert caught.value.status_code == 503 and caught.value.code == "oidc_unavailable"
    assert idp.emulator.requests["token"] == 1  # a single-use code is not retried


async def test_user_denying_consent(idp: Idp) -> None:
    idp.emulator.faults.deny_consent = True

    with pytest.raises(OidcError, match="cancelled at Google") as caught:
        await sign_in(idp)

    assert caught.value.code == "oidc_denied"
    assert idp.emulator.requests["token"] == 0


async def test_provider_error_is_shown_without_its_free_text(idp: Idp) -> None:
    _, sealed = await oidc.begin(idp.provider, idp.redirect_uri, intent="login", now=NOW)
    params = {"error": "server_error<script>", "error_description": "visit evil.example"}

    with pytest.raises(OidcError) as caught:
        await finish(idp, params, sealed)

    assert caught.value.message == "Google reported an error (server_errorscript); please start again."


async def test_unreachable_provider() -> None:
    entry = {
        "name": "down",
        "title": "Down",
        "client_id": "c",
        "client_secret": "s",
        "server_metadata_url": f"http://127.0.0.1:{free_port()}/.well-known/openid-configuration",
    }
    provider = OidcProvider.from_config(entry, secret_key=SECRET)

    with pytest.raises(OidcUnavailable, match="Down is unavailable"):
        await oidc.begin(provider, "https://shop.example/cb", intent="login", now=NOW)


# --- the sealed state -------------------------------------------------------------------------------------------


def _flip(text: str, index: int) -> str:
    return text[:index] + ("A" if text[index] != "A" else "B") + text[index + 1 :]


@pytest.mark.parametrize(
    "tamper",
    [
        lambda sealed: _flip(sealed, 0),  # the payload
        lambda sealed: _flip(sealed, len(sealed) - 1),  # the MAC's last character, padding bits included
        lambda sealed: sealed.split(".")[0],  # the MAC dropped
        lambda sealed: "",  # the cookie missing
    ],
    ids=["payload", "mac", "no-mac", "missing"],
)
async def test_tampered_state_is_refused(idp: Idp, tamper: Callable[[str], str]) -> None:
    url, sealed = await oidc.begin(idp.provider, idp.redirect_uri, intent="login", now=NOW)
    params = await consent(url)

    with pytest.raises(OidcError, match="missing or invalid"):
        await finish(idp, params, tamper(sealed))
    assert idp.emulator.requests["token"] == 0


async def test_forged_state_with_another_secret_is_refused(idp: Idp) -> None:
    other = OidcProvider.from_config(_entry(idp.provider), secret_key="another-" + SECRET)
    url, sealed = await oidc.begin(other, idp.redirect_uri, intent="login", now=NOW)
    params = await consent(url)

    with pytest.raises(OidcError, match="missing or invalid"):
        await finish(idp, params, sealed)


async def test_state_expires_after_ten_minutes(idp: Idp) -> None:
    url, sealed = await oidc.begin(idp.provider, idp.redirect_uri, intent="login", now=NOW)
    params = await consent(url)
    late = NOW + timedelta(minutes=10, seconds=1)

    with pytest.raises(OidcError, match="took too long"):
        await finish(idp, params, sealed, now=late)


async def test_state_within_ten_minutes_is_accepted(idp: Idp) -> None:
    url, sealed = await oidc.begin(idp.provider, idp.redirect_uri, intent="login", now=NOW)
    params = await consent(url)
    later = NOW + timedelta(minutes=9, seconds=50)

    claims = await finish(idp, params, sealed, now=later)
    assert claims.subject == "248289761001"


async def test_callback_state_must_match_the_cookie(idp: Idp) -> None:
    url, _ = await oidc.begin(idp.provider, idp.redirect_uri, intent="login", now=NOW)
    params = await consent(url)
    _, other_sealed = await oidc.begin(idp.provider, idp.redirect_uri, intent="login", now=NOW)

    with pytest.raises(OidcError, match="does not belong to this browser session"):
        await finish(idp, params, other_sealed)


async def test_callback_from_another_issuer_is_refused(idp: Idp) -> None:
    url, sealed = await oidc.begin(idp.provider, idp.redirect_uri, intent="login", now=NOW)
    params = await consent(url) | {"iss": "https://evil.example"}

    with pytest.raises(OidcError, match="did not come from Google"):
        await finish(idp, params, sealed)


async def test_callback_without_the_advertised_issuer_is_refused(idp: Idp) -> None:
    url, sealed = await oidc.begin(idp.provider, idp.redirect_uri, intent="login", now=NOW)
    params = await consent(url)
    del params["iss"]

    with pytest.raises(OidcError, match="did not come from Google"):
        await finish(idp, params, sealed)


# --- keys and caches --------------------------------------------------------------------------------------------


async def test_key_rotation_refetches_the_key_set(idp: Idp) -> None:
    await sign_in(idp)
    idp.emulator.rotate_keys()

    await sign_in(idp)
    await sign_in(idp)

    assert idp.emulator.requests["jwks"] == 2  # once at first, once for the new kid, then cached again


async def test_caches_expire(idp: Idp) -> None:
    await sign_in(idp)
    later = NOW + timedelta(hours=2)
    idp.emulator.clock = later.timestamp

    await sign_in(idp, now=later)

    assert idp.emulator.requests["discovery"] == 2
    assert idp.emulator.requests["jwks"] == 2


# --- several providers ------------------------------------------------------------------------------------------


async def test_two_providers_at_once(make_idp: Callable[..., Idp]) -> None:
    google = make_idp("google")
    telegram = make_idp(
        "telegram",
        config={"scope": "openid profile", "telegram_id_claim": "id"},
        scopes=["openid", "profile", "phone"],
        userinfo=False,
        user=OidcUser(subject="tg-opaque-sub", email=None, name="Ivan", telegram_id=7_000_000_123),
    )
    settings = make_settings(
        "sqlite+aiosqlite:///:memory:",
        secret_key=SECRET,
        oidc_providers=[_entry(google.provider), _entry(telegram.provider)],
    )
    providers = oidc.providers_from_settings(settings)
    assert sorted(providers) == ["google", "telegram"]
    google.provider, telegram.provider = providers["google"], providers["telegram"]

    by_google = await sign_in(google)
    by_telegram = await sign_in(telegram)

    assert (by_google.provider, by_google.telegram_id) == ("google", None)
    assert by_telegram == OidcClaims(
        provider="telegram",
        subject="tg-opaque-sub",
        email=None,
        email_verified=False,
        name="Ivan",
        telegram_id=7_000_000_123,
        intent="login",
    )
    assert telegram.emulator.requests["userinfo"] == 0


@pytest.mark.parametrize("sent", [7_000_000_123, "7000000123"])
async def test_telegram_id_as_number_or_digits(make_idp: Callable[..., Idp], sent: int | str) -> None:
    telegram = make_idp("telegram", config={"telegram_id_claim": "id"}, user=OidcUser(telegram_id=sent))

    assert (await sign_in(telegram)).telegram_id == 7_000_000_123


async def test_telegram_id_that_is_not_a_number_is_refused(make_idp: Callable[..., Idp]) -> None:
    telegram = make_idp("telegram", config={"telegram_id_claim": "id"}, user=OidcUser(telegram_id="@ivan"))

    with pytest.raises(OidcError, match="'id' claim is not a Telegram user id"):
        await sign_in(telegram)


async def test_state_of_one_provider_is_refused_by_another(make_idp: Callable[..., Idp]) -> None:
    google, yandex = make_idp("google"), make_idp("yandex")
    url, sealed = await oidc.begin(google.provider, google.redirect_uri, intent="login", now=NOW)
    params = await consent(url)

    with pytest.raises(OidcError, match="started with another provider, not Yandex"):
        await finish(yandex, params, sealed)


async def test_email_scope_is_refused_by_telegram_like_provider(make_idp: Callable[..., Idp]) -> None:
    telegram = make_idp("telegram", scopes=["openid", "profile"], userinfo=False)
    url, _ = await oidc.begin(telegram.provider, telegram.redirect_uri, intent="login", now=NOW)

    assert (await consent(url))["error"] == "invalid_scope"


# --- configuration ----------------------------------------------------------------------------------------------


def _entry(provider: OidcProvider) -> dict[str, Any]:
    entry = {
        key: getattr(provider, key) for key in ("name", "title", "client_id", "client_secret", "server_metadata_url")
    }
    entry["scope"] = provider.scope
    if provider.telegram_id_claim:
        entry["telegram_id_claim"] = provider.telegram_id_claim
    return entry


GOOD = {
    "name": "google",
    "title": "Google",
    "client_id": "id",
    "client_secret": "secret",
    "server_metadata_url": "https://accounts.google.com/.well-known/openid-configuration",
}


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("google", "expected an object"),
        ({**GOOD, "client_id": ""}, "client_id must be a non-empty string"),
        ({k: v for k, v in GOOD.items() if k != "client_secret"}, "client_secret must be a non-empty string"),
        ({**GOOD, "name": "Google Sign-In"}, "name must be"),
        ({**GOOD, "server_metadata_url": "http://accounts.google.com/.well-known/openid-configuration"}, "https"),
        ({**GOOD, "scope": "email profile"}, "containing 'openid'"),
        ({**GOOD, "client_secert": "typo"}, "unknown keys client_secert"),
        ({**GOOD, "telegram_id_claim": ""}, "telegram_id_claim"),
    ],
)
def test_bad_provider_config_is_rejected(entry: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        OidcProvider.from_config(entry, secret_key=SECRET)


def test_settings_with_duplicate_names_are_rejected() -> None:
    settings = make_settings("sqlite+aiosqlite:///:memory:", oidc_providers=[GOOD, GOOD])

    with pytest.raises(ValueError, match=r"OIDC_PROVIDERS\[1\]: duplicate provider name 'google'"):
        oidc.providers_from_settings(settings)


def test_settings_entry_errors_name_the_entry() -> None:
    settings = make_settings("sqlite+aiosqlite:///:memory:", oidc_providers=[GOOD, {**GOOD, "name": "x y"}])

    with pytest.raises(ValueError, match=r"OIDC_PROVIDERS\[1\]: provider 'x y': name must be"):
        oidc.providers_from_settings(settings)


def test_secret_key_is_required() -> None:
    with pytest.raises(ValueError, match="SECRET_KEY"):
        OidcProvider.from_config(GOOD, secret_key="")


def test_client_secret_stays_out_of_repr() -> None:
    provider = OidcProvider.from_config({**GOOD, "client_secret": "shh-do-not-log"}, secret_key=SECRET)

    assert "shh-do-not-log" not in repr(provider)
    assert provider.scope == "openid email profile"
