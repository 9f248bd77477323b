"""Browser sign-in with OpenID Connect: the Authorization Code flow with PKCE (S256) and a nonce, for any number
of providers at once (Google, Yandex, "Log in with Telegram" at https://oauth.telegram.org, ...). No routes here.

`settings.oidc_providers` is a JSON list; each entry is an object with these keys:

    name                 short url-safe id used in routes and cookies: lowercase letters, digits, "-" or "_"
    title                what the sign-in button says, e.g. "Google"
    client_id            the client registered at the provider
    client_secret        its secret
    server_metadata_url  the provider's /.well-known/openid-configuration (https; http only on loopback)
    scope                optional, default "openid email profile"; must contain "openid". Telegram lists no
                         email scope: use "openid profile" there
    telegram_id_claim    optional: the id_token claim holding the numeric Telegram user id ("id" at Telegram,
                         where `sub` need not be that id)

The route calls `begin()` and stores the sealed state it returns in a short-lived HttpOnly cookie, then redirects
the browser to the provider; on the callback it hands the query and that cookie to `finish()`, which returns the
verified claims or raises `OidcError` (rendered by the app's error handler; `OidcUnavailable` when the provider
cannot be reached).

JOSE comes from joserfc, authlib's own successor library (authlib.jose and authlib's httpx integration are
deprecated in the pinned authlib); HTTP goes through app.kit.http for timeouts, retries and the circuit breaker.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import logging
import re
import secrets
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_plus, urlsplit

import httpx
from authlib.common.urls import add_params_to_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jws, jwt
from joserfc.errors import BadSignatureError, InvalidKeyIdError, JoseError
from joserfc.jwk import Key, KeySet

from app.kit.clock import ensure_utc
from app.kit.errors import ExternalServiceError, NotAuthenticated
from app.kit.http import HttpClient, RetryPolicy

if TYPE_CHECKING:
    from app.config import Settings

log = logging.getLogger(__name__)

INTENTS = ("login", "link")
STATE_TTL = timedelta(minutes=10)
METADATA_TTL = timedelta(hours=1)
JWKS_TTL = timedelta(hours=1)
# Clocks of providers drift a little; more than this is not drift.
LEEWAY_SECONDS = 60
HTTP_TIMEOUT = 10.0
DEFAULT_SCOPE = "openid email profile"
# Asymmetric only: "none" and HS* (keyed by the client secret) would let a leaked secret mint identities.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
AUTH_METHODS = ("client_secret_basic", "client_secret_post")

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
_KEYS = frozenset({"name", "title", "client_id", "client_secret", "server_metadata_url", "scope", "telegram_id_claim"})


class OidcError(NotAuthenticated):
    """Signing in with the provider did not work; please start again."""

    code = "oidc_failed"


class OidcUnavailable(OidcError):
    """The sign-in provider is unavailable right now; please try again later."""

    status_code = 503
    code = "oidc_unavailable"


@dataclass(frozen=True)
class OidcProvider:
    """One configured provider (an entry of settings.oidc_providers)."""

    name: str
    title: str
    client_id: str
    client_secret: str = field(repr=False)
    server_metadata_url: str
    scope: str = DEFAULT_SCOPE
    telegram_id_claim: str | None = None
    # Derived from settings.secret_key and carried here so begin()/finish() need no settings of their own.
    state_key: bytes = field(default=b"", repr=False)

    @classmethod
    def from_config(cls, entry: object, *, secret_key: str) -> OidcProvider:
        """Validate one settings entry; ValueError names the first problem."""
        if not isinstance(entry, Mapping):
            raise ValueError("expected an object with name, title, client_id, client_secret, server_metadata_url")
        label = f"provider {entry.get('name')!r}"
        unknown = sorted(set(entry) - _KEYS)
        if unknown:
            raise ValueError(f"{label}: unknown keys {', '.join(map(str, unknown))}")
        values: dict[str, str] = {}
        for key in ("name", "title", "client_id", "client_secret", "server_metadata_url"):
            value = entry.get(key)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{label}: {key} must be a non-empty string")
            values[key] = value.strip()
        if not _NAME_RE.match(values["name"]):
            raise ValueError(f"{label}: name must be 1-32 lowercase letters, digits, '-' or '_'")
        if not _allowed_url(values["server_metadata_url"]):
            raise ValueError(f"{label}: server_metadata_url must be an https:// URL")
        scope = entry.get("scope", DEFAULT_SCOPE)
        if not isinstance(scope, str) or "openid" not in scope.split():
            raise ValueError(f"{label}: scope must be a space-separated string containing 'openid'")
        claim = entry.get("telegram_id_claim")
        if claim is not None and (not isinstance(claim, str) or not claim.strip()):
            raise ValueError(f"{label}: telegram_id_claim must be a claim name such as 'id'")
        if not secret_key:
            raise ValueError("SECRET_KEY is required to sign the OIDC sign-in state")
        claim = claim.strip() if claim else None
        return cls(**values, scope=" ".join(scope.split()), telegram_id_claim=claim, state_key=_state_key(secret_key))


def providers_from_settings(settings: Settings) -> dict[str, OidcProvider]:
    """Every configured provider by name; ValueError (naming the entry) on a bad or duplicate entry."""
    providers: dict[str, OidcProvider] = {}
    for index, entry in enumerate(settings.oidc_providers):
        try:
            provider = OidcProvider.from_config(entry, secret_key=settings.secret_key)
        except ValueError as exc:
            raise ValueError(f"OIDC_PROVIDERS[{index}]: {exc}") from exc
        if provider.name in providers:
            raise ValueError(f"OIDC_PROVIDERS[{index}]: duplicate provider name {provider.name!r}")
        providers[provider.name] = provider
    return providers


@dataclass(frozen=True)
class OidcClaims:
    """The verified identity. Trust `email` for account matching only when `email_verified` is true."""

    provider: str
    subject: str
    email: str | None
    email_verified: bool
    name: str | None
    telegram_id: int | None
    intent: str


async def begin(provider: OidcProvider, redirect_uri: str, *, intent: str, now: datetime) -> tuple[str, str]:
    """Start a sign-in: (the provider's authorize URL, the sealed state for the short-lived HttpOnly cookie)."""
    if intent not in INTENTS:
        raise ValueError(f"intent must be one of {', '.join(INTENTS)}")
    now = ensure_utc(now)
    metadata = await _metadata(provider, now)
    flow = {
        "p": provider.name,
        "i": intent,
        "s": secrets.token_urlsafe(24),
        "n": secrets.token_urlsafe(24),
        "v": secrets.token_urlsafe(48),
        "e": int((now + STATE_TTL).timestamp()),
    }
    params = [
        ("response_type", "code"),
        ("client_id", provider.client_id),
        ("redirect_uri", redirect_uri),
        ("scope", provider.scope),
        ("state", flow["s"]),
        ("nonce", flow["n"]),
        ("code_challenge", create_s256_code_challenge(flow["v"])),
        ("code_challenge_method", "S256"),
    ]
    return add_params_to_uri(metadata.authorization_endpoint, params), _seal(provider.state_key, flow)


async def finish(
    provider: OidcProvider, *, params: Mapping[str, str], sealed_state: str, redirect_uri: str, now: datetime
) -> OidcClaims:
    """Complete a sign-in from the callback query and the sealed state of begin(); OidcError when anything is off."""
    now = ensure_utc(now)
    flow = _unseal(provider, sealed_state, now)
    if "error" in params:
        error = params["error"]
        if error == "access_denied":
            raise OidcError(f"Sign-in was cancelled at {provider.title}.", code="oidc_denied")
        # Only a sanitized error code: error_description comes from the URL and anyone can craft it.
        shown = re.sub(r"[^A-Za-z0-9_.-]", "", error)[:64] or "unknown"
        raise OidcError(f"{provider.title} reported an error ({shown}); please start again.")
    if not hmac.compare_digest(params.get("state", "").encode(), flow["s"].encode()):
        raise OidcError("The sign-in response does not belong to this browser session; please start again.")
    code = params.get("code", "")
    if not code:
        raise OidcError(f"{provider.title} returned no authorization code; please start again.")
    metadata = await _metadata(provider, now)
    # RFC 9207: a provider that names itself in responses must be the one we sent the user to (mix-up attacks).
    if ("iss" in params or metadata.iss_in_response) and params.get("iss") != metadata.issuer:
        raise OidcError(f"The sign-in response did not come from {provider.title}; please start again.")
    tokens = await _redeem(provider, metadata, code, flow["v"], redirect_uri)
    claims = await _verify_id_token(provider, metadata, tokens.get("id_token"), flow["n"], now)
    if metadata.userinfo_endpoint and not ("email" in claims and "name" in claims):
        claims = await _with_userinfo(provider, metadata, tokens.get("access_token"), claims)
    return OidcClaims(
        provider=provider.name,
        subject=claims["sub"],
        email=_email(claims),
        email_verified=claims.get("email_verified") in (True, "true"),
        name=_display_name(claims),
        telegram_id=_telegram_id(provider, claims),
        intent=flow["i"],
    )


def reset_caches() -> None:
    """Forget cached discovery documents and key sets (tests; a provider migrated its keys by hand)."""
    _metadata_cache.clear()
    _jwks_cache.clear()


# --- sealed state ------------------------------------------------------------------------------------------------


def _state_key(secret_key: str) -> bytes:
    # A key of its own, so a MAC made here can never be replayed as a session or CSRF token, and vice versa.
    return hmac.new(secret_key.encode(), b"vpnshop/oidc-state/v1", hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _seal(key: bytes, flow: dict[str, Any]) -> str:
    payload = _b64(json.dumps(flow, separators=(",", ":")).encode())
    return f"{payload}.{_b64(hmac.new(key, payload.encode(), hashlib.sha256).digest())}"


def _unseal(provider: OidcProvider, sealed: str, now: datetime) -> dict[str, Any]:
    payload, _, mac = (sealed or "").partition(".")
    expected = _b64(hmac.new(provider.state_key, payload.encode(), hashlib.sha256).digest())
    # Compared as text, so a second spelling of the same bytes (non-zero base64 padding bits) is refused too.
    if not payload or not hmac.compare_digest(mac.encode(), expected.encode()):
        raise OidcError("The sign-in session is missing or invalid; please start again.")
    flow = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    if flow["e"] <= now.timestamp():
        raise OidcError("The sign-in took too long; please start again.")
    if flow["p"] != provider.name:
        raise OidcError(f"This sign-in was started with another provider, not {provider.title}; please start again.")
    return flow


# --- HTTP, discovery and keys ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Metadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None
    auth_method: str
    iss_in_response: bool


_metadata_cache: dict[str, tuple[datetime, _Metadata]] = {}
_jwks_cache: dict[str, tuple[datetime, KeySet]] = {}


def _allowed_url(url: str) -> bool:
    parts = urlsplit(url)
    # Plain http only to this machine: local development and the tests' emulator.
    if not parts.hostname:
        return False
    return parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in _LOOPBACK)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # Built once: loading the CA bundle costs tens of milliseconds per client otherwise.
    return httpx.create_ssl_context()


async def _send(provider: OidcProvider, method: str, url: str, *, attempts: int, **kwargs: Any) -> httpx.Response:
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(url))
    retry = RetryPolicy(attempts=attempts, base_delay=0.2, max_delay=1.0, max_retry_after=2.0)
    transport = httpx.AsyncHTTPTransport(verify=_tls_context())
    async with HttpClient(
        origin, service=f"oidc:{provider.name}", timeout=HTTP_TIMEOUT, retry=retry, transport=transport
    ) as http:
        try:
            return await http.request(method, url, **kwargs)
        except ExternalServiceError as exc:
            log.warning("OIDC provider %s unreachable: %s", provider.name, exc)
            raise OidcUnavailable(f"{provider.title} is unavailable right now; please try again later.") from exc


def _unavailable(provider: OidcProvider, detail: str) -> OidcUnavailable:
    log.warning("OIDC provider %s: %s", provider.name, detail)
    return OidcUnavailable(f"{provider.title} is unavailable right now ({detail}); please try again later.")


async def _get_json(provider: OidcProvider, url: str, what: str) -> dict[str, Any]:
    response = await _send(provider, "GET", url, attempts=2, headers={"Accept": "application/json"})
    try:
        body = response.json() if response.status_code == 200 else None
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise _unavailable(provider, f"its {what} answered HTTP {response.status_code}")
    return body


async def _metadata(provider: OidcProvider, now: datetime) -> _Metadata:
    cached = _metadata_cache.get(provider.server_metadata_url)
    if cached and cached[0] > now:
        return cached[1]
    document = await _get_json(provider, provider.server_metadata_url, "discovery document")
    endpoints: dict[str, str | None] = {}
    for key in ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint"):
        value = document.get(key)
        if value is None and key == "userinfo_endpoint":  # Telegram has none: every claim is in the id_token
            endpoints[key] = None
        elif isinstance(value, str) and _allowed_url(value):
            endpoints[key] = value
        else:
            raise _unavailable(provider, f"its discovery document has no valid {key}")
    # Discovery 1.0: a provider that lists no methods supports client_secret_basic.
    offered = document.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
    method = next((m for m in AUTH_METHODS if m in offered), None)
    if method is None:
        raise _unavailable(provider, f"its token endpoint accepts none of {', '.join(AUTH_METHODS)}")
    iss_in_response = document.get("authorization_response_iss_parameter_supported") is True
    metadata = _Metadata(**endpoints, auth_method=method, iss_in_response=iss_in_response)  # type: ignore[arg-type]
    _metadata_cache[provider.server_metadata_url] = (now + METADATA_TTL, metadata)
    return metadata


async def _key_set(provider: OidcProvider, metadata: _Metadata, now: datetime) -> KeySet:
    try:
        keys = KeySet.import_key_set(await _get_json(provider, metadata.jwks_uri, "key set"))  # type: ignore[arg-type]
    except (JoseError, ValueError, KeyError, TypeError) as exc:
        raise _unavailable(provider, "its key set is unusable") from exc
    _jwks_cache[metadata.jwks_uri] = (now + JWKS_TTL, keys)
    return keys


def _pick(keys: KeySet, kid: str | None, alg: str) -> Key | None:
    try:
        return keys.get_by_kid(kid, {"alg": alg, "use": "sig"})
    except InvalidKeyIdError:
        return None


async def _signing_key(provider: OidcProvider, metadata: _Metadata, kid: str | None, alg: str, now: datetime) -> Key:
    cached = _jwks_cache.get(metadata.jwks_uri)
    if cached and cached[0] > now:
        key = _pick(cached[1], kid, alg)
        if key is not None:
            return key
    # An unknown kid means the provider rotated its keys since we cached them: fetch once more, never in a loop.
    key = _pick(await _key_set(provider, metadata, now), kid, alg)
    if key is None:
        raise _rejected(provider, f"it is signed with a key {provider.title} does not publish (kid {kid!r})")
    return key


# --- the token exchange and the id_token ---------------------------------------------------------------------------


def _rejected(provider: OidcProvider, reason: str) -> OidcError:
    log.warning("OIDC provider %s: id_token rejected: %s", provider.name, reason)
    return OidcError(f"{provider.title} sent a sign-in token we cannot accept: {reason}.")


async def _redeem(
    provider: OidcProvider, metadata: _Metadata, code: str, verifier: str, redirect_uri: str
) -> dict[str, Any]:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri, "code_verifier": verifier}
    headers = {"Accept": "application/json"}
    if metadata.auth_method == "client_secret_basic":
        # RFC 6749 §2.3.1: both parts are form-urlencoded before base64 (a no-op for the usual secrets).
        pair = f"{quote_plus(provider.client_id)}:{quote_plus(provider.client_secret)}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    else:
        form |= {"client_id": provider.client_id, "client_secret": provider.client_secret}
    # One attempt: a code is single-use, so a retry after a half-done request could only fail with invalid_grant.
    response = await _send(provider, "POST", metadata.token_endpoint, attempts=1, data=form, headers=headers)
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code == 200 and isinstance(body, dict):
        return body
    if isinstance(body, dict) and isinstance(body.get("error"), str) and response.status_code < 500:
        detail = body["error"] + (f": {body['error_description']}" if body.get("error_description") else "")
        log.warning("OIDC provider %s refused the code: %s", provider.name, detail)
        raise OidcError(f"{provider.title} refused the sign-in ({detail[:200]}); please start again.")
    raise _unavailable(provider, f"its token endpoint answered HTTP {response.status_code}")


async def _verify_id_token(
    provider: OidcProvider, metadata: _Metadata, id_token: object, nonce: str, now: datetime
) -> dict[str, Any]:
    if not isinstance(id_token, str) or not id_token:
        raise _rejected(provider, "the token response has no id_token")
    try:
        header = jws.extract_compact(id_token.encode()).headers()
    except (JoseError, ValueError) as exc:
        raise _rejected(provider, "the id_token is malformed") from exc
    alg = header.get("alg")
    if alg not in ALGORITHMS:
        raise _rejected(provider, f"signature algorithm {alg!r} is not accepted")
    key = await _signing_key(provider, metadata, header.get("kid"), alg, now)
    try:
        claims = jwt.decode(id_token, key, algorithms=[alg]).claims
    except BadSignatureError as exc:
        raise _rejected(provider, "its signature is invalid") from exc
    except (JoseError, ValueError) as exc:
        raise _rejected(provider, f"it cannot be verified ({type(exc).__name__})") from exc
    _check_claims(provider, metadata, claims, nonce, now.timestamp())
    return claims


def _is_time(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_claims(provider: OidcProvider, metadata: _Metadata, claims: dict[str, Any], nonce: str, now: float) -> None:
    if claims.get("iss") != metadata.issuer:
        raise _rejected(provider, f"it was issued by {claims.get('iss')!r}, not {metadata.issuer!r}")
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if provider.client_id not in audiences:
        raise _rejected(provider, "its audience is another application")
    azp = claims.get("azp")
    if (azp is not None or len(audiences) > 1) and azp != provider.client_id:
        raise _rejected(provider, "its authorized party is another application")
    exp, iat, nbf = claims.get("exp"), claims.get("iat"), claims.get("nbf", 0)
    if not (_is_time(exp) and _is_time(iat) and _is_time(nbf)):
        raise _rejected(provider, "exp or iat is missing")
    if exp <= now - LEEWAY_SECONDS:
        raise _rejected(provider, "it has expired")
    if iat > now + LEEWAY_SECONDS or nbf > now + LEEWAY_SECONDS:
        raise _rejected(provider, "it is not valid yet (check the server clock)")
    sent = claims.get("nonce")
    if not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), nonce.encode()):
        raise _rejected(provider, "its nonce does not match this sign-in")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub or len(sub) > 255:
        raise _rejected(provider, "its subject is missing")


async def _with_userinfo(
    provider: OidcProvider, metadata: _Metadata, access_token: object, claims: dict[str, Any]
) -> dict[str, Any]:
    """Fill the profile claims the id_token left out; the id_token stays the source of identity."""
    if not isinstance(access_token, str) or not metadata.userinfo_endpoint:
        return claims
    url = metadata.userinfo_endpoint
    try:
        response = await _send(provider, "GET", url, attempts=2, headers={"Authorization": f"Bearer {access_token}"})
        extra = response.json() if response.status_code == 200 else None
    except (OidcUnavailable, ValueError):
        extra = None
    if not isinstance(extra, dict):
        # Only the profile is missing then, not the identity: sign in without it.
        log.warning("OIDC provider %s: userinfo unavailable, continuing with the id_token alone", provider.name)
        return claims
    # OIDC Core §5.3.2: a userinfo answer about someone else must be thrown away (token substitution).
    if extra.get("sub") != claims["sub"]:
        raise _rejected(provider, "its userinfo describes another user")
    return {**extra, **claims}


def _email(claims: Mapping[str, Any]) -> str | None:
    email = claims.get("email")
    return email.strip() if isinstance(email, str) and "@" in email else None


def _display_name(claims: Mapping[str, Any]) -> str | None:
    given = " ".join(p for p in (claims.get("given_name"), claims.get("family_name")) if isinstance(p, str))
    for candidate in (claims.get("name"), given, claims.get("preferred_username")):
        if isinstance(candidate, str) and candidate.strip():
            return candidate.strip()
    return None


def _telegram_id(provider: OidcProvider, claims: Mapping[str, Any]) -> int | None:
    if not provider.telegram_id_claim or claims.get(provider.telegram_id_claim) is None:
        return None
    value = claims[provider.telegram_id_claim]
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,20}", value):
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise _rejected(provider, f"its {provider.telegram_id_claim!r} claim is not a Telegram user id")
    return value
