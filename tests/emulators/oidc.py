"""An OpenID Connect provider emulator: the Authorization Code flow with PKCE over real HTTP, written from OpenID
Connect Core 1.0 and Discovery 1.0, RFC 6749 (OAuth 2.0), RFC 7636 (PKCE) and RFC 9207 (the `iss` response
parameter).

Endpoints, relative to the issuer URL:
  GET  /.well-known/openid-configuration
  GET  /authorize   checks client_id and redirect_uri (a bad one gets a 400 page, never a redirect), then
                    response_type=code, scope with openid, state, nonce and an S256 code_challenge (errors are
                    redirected back); consents at once as `emulator.user` and redirects with code, state and iss,
                    so a real browser can follow it
  POST /token       grant_type=authorization_code, client_secret_basic or client_secret_post (never both),
                    single-use codes valid for 60 s, the same redirect_uri, the PKCE verifier; OAuth error JSON
  GET  /jwks        the public RS256 keys (generated with `cryptography`)
  GET  /userinfo    only with `userinfo=True` (Telegram's provider has none)

Fault knobs live in `emulator.faults`; `emulator.rotate_keys()` starts signing with a new key (new kid) while still
publishing the old one, as providers do during a rotation. `emulator.requests` counts calls per endpoint and
`emulator.pkce_verified` the token requests whose code_verifier matched.

Serve one with `tests.emulators.harness.serve(emulator)` and set `emulator.issuer` to the base URL, or mount many
on one port with `OidcHub` (each under its own path, which is then its issuer).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlencode

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route, Router
from starlette.types import Receive, Scope, Send

from tests.emulators.harness import serve

CODE_TTL = 60
ID_TOKEN_TTL = 600
VERIFIER_RE = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@dataclass
class OidcUser:
    """Whoever is "signed in at the provider": the identity the next consent hands out."""

    subject: str = "248289761001"
    email: str | None = "jane@example.com"
    name: str | None = "Jane Doe"
    email_verified: bool = True
    telegram_id: int | str | None = None  # a str to play providers that send numbers as strings


@dataclass
class Faults:
    token_status: int | None = None  # the token endpoint answers this status (e.g. 500) with a plain-text body
    wrong_nonce: bool = False
    wrong_audience: bool = False
    wrong_issuer: bool = False
    expired_id_token: bool = False
    unknown_key: bool = False  # signed by a key the JWKS never lists, under a kid it never lists
    bad_signature: bool = False  # signed by another key under the published kid
    deny_consent: bool = False  # the user presses "Cancel": error=access_denied


@dataclass(frozen=True)
class _Grant:
    client_id: str
    redirect_uri: str
    scope: tuple[str, ...]
    nonce: str
    challenge: str
    user: OidcUser
    issued_at: float


@dataclass(frozen=True)
class _SigningKey:
    kid: str
    private: rsa.RSAPrivateKey

    def jwk(self) -> dict[str, str]:
        numbers = self.private.public_key().public_numbers()
        return {
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": self.kid,
            "n": _uint(numbers.n),
            "e": _uint(numbers.e),
        }

    def sign(self, claims: dict[str, Any], *, kid: str | None = None) -> str:
        header = {"alg": "RS256", "typ": "JWT", "kid": kid or self.kid}
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        signature = self.private.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64(signature)}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _uint(value: int) -> str:
    return _b64(value.to_bytes((value.bit_length() + 7) // 8, "big"))


_pool: list[rsa.RSAPrivateKey] = []
_pool_lock = threading.Lock()


def _rsa_key(index: int) -> rsa.RSAPrivateKey:
    """The index-th key of a process-wide pool: generating RSA keys costs ~50 ms each, and emulators may share
    key material as long as their kids differ."""
    with _pool_lock:
        while len(_pool) <= index:
            _pool.append(rsa.generate_private_key(public_exponent=65537, key_size=2048))
        return _pool[index]


class OidcEmulator:
    """One provider with one registered client; also the state object tests read and poke."""

    def __init__(
        self,
        *,
        client_id: str = "vpnshop-client",
        client_secret: str = "s3cret-Value",
        redirect_uris: Sequence[str] = (),
        user: OidcUser | None = None,
        scopes: Sequence[str] = ("openid", "email", "profile"),
        auth_methods: Sequence[str] = ("client_secret_basic", "client_secret_post"),
        userinfo: bool = True,
        profile_in_id_token: bool = True,
        telegram_id_claim: str = "id",
        issuer: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uris = list(redirect_uris)
        self.user = user or OidcUser()
        self.scopes = tuple(scopes)
        self.auth_methods = tuple(auth_methods)
        self.userinfo = userinfo
        self.profile_in_id_token = profile_in_id_token
        self.telegram_id_claim = telegram_id_claim
        self.issuer = issuer
        self.clock = clock
        self.faults = Faults()
        self.requests: Counter[str] = Counter()
        self.pkce_verified = 0
        self.client_auth_used: list[str] = []
        self._tag = secrets.token_hex(3)
        self._generation = 0
        self._keys = [self._key(0)]
        self._codes: dict[str, _Grant] = {}
        self._access_tokens: dict[str, _Grant] = {}
        self._app = Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self._discovery),
                Route("/authorize", self._authorize),
                Route("/token", self._token, methods=["POST"]),
                Route("/jwks", self._jwks),
                Route("/userinfo", self._userinfo, methods=["GET", "POST"]),
            ]
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)

    def rotate_keys(self) -> str:
        """Sign with a new key from now on; the previous one stays published. Returns the new kid."""
        self._generation += 1
        self._keys.insert(0, self._key(self._generation))
        return self._keys[0].kid

    def _key(self, generation: int) -> _SigningKey:
        return _SigningKey(f"emu-{self._tag}-{generation}", _rsa_key(generation))

    # --- endpoints ------------------------------------------------------------------------------------------------

    async def _discovery(self, request: Request) -> Response:
        self.requests["discovery"] += 1
        document = {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": list(self.scopes),
            "token_endpoint_auth_methods_supported": list(self.auth_methods),
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": True,
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "email", "email_verified", "name"],
        }
        if self.userinfo:
            document["userinfo_endpoint"] = f"{self.issuer}/userinfo"
        return JSONResponse(document)

    async def _authorize(self, request: Request) -> Response:
        self.requests["authorize"] += 1
        query = request.query_params
        redirect_uri = query.get("redirect_uri", "")
        # RFC 6749 §4.1.2.1: with an unknown client or redirect URI the user must not be sent anywhere.
        if query.get("client_id") != self.client_id:
            return PlainTextResponse("Unknown client_id.", status_code=400)
        if redirect_uri not in self.redirect_uris:
            return PlainTextResponse("redirect_uri is not registered for this client.", status_code=400)
        state = query.get("state")

        def back(**params: str) -> Response:
            params |= {"state": state} if state is not None else {}
            separator = "&" if "?" in redirect_uri else "?"
            return RedirectResponse(f"{redirect_uri}{separator}{urlencode(params | {'iss': self.issuer})}", 302)

        scope = tuple(query.get("scope", "").split())
        if query.get("response_type") != "code":
            return back(error="unsupported_response_type", error_description="only response_type=code")
        if "openid" not in scope or not set(scope) <= set(self.scopes):
            return back(error="invalid_scope", error_description=f"supported scopes: {' '.join(self.scopes)}")
        if not state or not query.get("nonce"):
            return back(error="invalid_request", error_description="state and nonce are required")
        if query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            return back(error="invalid_request", error_description="PKCE with code_challenge_method=S256 required")
        if self.faults.deny_consent:
            return back(error="access_denied", error_description="The user declined.")
        code = secrets.token_urlsafe(24)
        self._codes[code] = _Grant(
            self.client_id,
            redirect_uri,
            scope,
            query["nonce"],
            query["code_challenge"],
            replace(self.user),
            self.clock(),
        )
        return back(code=code)

    async def _token(self, request: Request) -> Response:
        self.requests["token"] += 1
        if self.faults.token_status is not None:
            return PlainTextResponse("Internal Server Error", status_code=self.faults.token_status)
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
            return _oauth_error("invalid_request", "the body must be application/x-www-form-urlencoded")
        pairs = parse_qsl((await request.body()).decode(), keep_blank_values=True)
        form = dict(pairs)
        if len(form) != len(pairs):
            return _oauth_error("invalid_request", "a parameter is repeated")
        failure = self._authenticate_client(request.headers.get("authorization"), form)
        if failure is not None:
            return failure
        if form.get("grant_type") != "authorization_code":
            return _oauth_error("unsupported_grant_type", "only authorization_code")
        grant = self._codes.pop(form.get("code", ""), None)  # popped: a code is used once, even when it fails
        if grant is None or self.clock() - grant.issued_at > CODE_TTL:
            return _oauth_error("invalid_grant", "the code is unknown, used or expired")
        if grant.redirect_uri != form.get("redirect_uri"):
            return _oauth_error("invalid_grant", "redirect_uri differs from the authorization request")
        verifier = form.get("code_verifier", "")
        challenge = _b64(hashlib.sha256(verifier.encode()).digest())
        if not VERIFIER_RE.match(verifier) or not hmac.compare_digest(challenge, grant.challenge):
            return _oauth_error("invalid_grant", "PKCE verification failed")
        self.pkce_verified += 1
        access_token = secrets.token_urlsafe(24)
        self._access_tokens[access_token] = grant
        body = {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": 3600,
            "scope": " ".join(grant.scope),
            "id_token": self._id_token(grant),
        }
        return JSONResponse(body, headers=NO_STORE)

    async def _jwks(self, request: Request) -> Response:
        self.requests["jwks"] += 1
        return JSONResponse({"keys": [key.jwk() for key in self._keys]})

    async def _userinfo(self, request: Request) -> Response:
        self.requests["userinfo"] += 1
        if not self.userinfo:
            return PlainTextResponse("Not Found", status_code=404)
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        grant = self._access_tokens.get(token) if scheme.lower() == "bearer" else None
        if grant is None:
            return Response(status_code=401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return JSONResponse(self._profile(grant))

    # --- helpers --------------------------------------------------------------------------------------------------

    def _authenticate_client(self, authorization: str | None, form: dict[str, str]) -> Response | None:
        if authorization:
            scheme, _, encoded = authorization.partition(" ")
            if scheme.lower() != "basic":
                return _invalid_client("unsupported authorization scheme")
            try:
                client_id, _, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
            except ValueError:
                return _invalid_client("malformed Basic credentials")
            if "client_secret" in form:
                return _oauth_error("invalid_request", "use one client authentication method, not two")
            method, client_id, secret = "client_secret_basic", unquote_plus(client_id), unquote_plus(secret)
            if form.get("client_id", client_id) != client_id:
                return _oauth_error("invalid_request", "client_id differs from the authenticated client")
        elif "client_secret" in form:
            method, client_id, secret = "client_secret_post", form.get("client_id", ""), form["client_secret"]
        else:
            return _invalid_client("client authentication required")
        if method not in self.auth_methods:
            return _invalid_client(f"{method} is not allowed for this client")
        if client_id != self.client_id or not hmac.compare_digest(secret.encode(), self.client_secret.encode()):
            return _invalid_client("client authentication failed")
        self.client_auth_used.append(method)
        return None

    def _profile(self, grant: _Grant) -> dict[str, Any]:
        user = grant.user
        claims: dict[str, Any] = {"sub": user.subject}
        if "email" in grant.scope and user.email:
            claims |= {"email": user.email, "email_verified": user.email_verified}
        if "profile" in grant.scope and user.name:
            claims["name"] = user.name
        if user.telegram_id is not None:
            claims[self.telegram_id_claim] = user.telegram_id
        return claims

    def _id_token(self, grant: _Grant) -> str:
        now = int(self.clock())
        faults = self.faults
        claims = self._profile(grant) if self.profile_in_id_token else {"sub": grant.user.subject}
        claims |= {
            "iss": "https://evil.example" if faults.wrong_issuer else self.issuer,
            "aud": "someone-else" if faults.wrong_audience else grant.client_id,
            "iat": now - 7200 if faults.expired_id_token else now,
            "exp": now - 3600 if faults.expired_id_token else now + ID_TOKEN_TTL,
            "auth_time": now,
            "nonce": grant.nonce[::-1] + "x" if faults.wrong_nonce else grant.nonce,
        }
        current = self._keys[0]
        if faults.unknown_key:
            return _SigningKey(f"emu-{self._tag}-unlisted", _rsa_key(self._generation + 1)).sign(claims)
        if faults.bad_signature:
            return self._key(self._generation + 1).sign(claims, kid=current.kid)
        return current.sign(claims)


def _oauth_error(error: str, description: str, status: int = 400, headers: dict[str, str] | None = None) -> Response:
    body = {"error": error, "error_description": description}
    return JSONResponse(body, status_code=status, headers=NO_STORE | (headers or {}))


def _invalid_client(description: str) -> Response:
    return _oauth_error("invalid_client", description, 401, {"WWW-Authenticate": 'Basic realm="token"'})


class OidcHub:
    """One loopback server for many emulators, each under its own path prefix: `base_url/<prefix>` is its issuer.
    Starting and stopping uvicorn costs ~0.2 s, so tests share a hub and mount a fresh emulator each."""

    def __init__(self) -> None:
        self.base_url = ""
        self._router = Router()
        self._serial = itertools.count(1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._router(scope, receive, send)

    @classmethod
    @contextmanager
    def serve(cls) -> Iterator[OidcHub]:
        hub = cls()
        with serve(hub) as base_url:
            hub.base_url = base_url
            yield hub

    def mount(self, emulator: OidcEmulator, name: str = "idp") -> str:
        """Serve `emulator` under a fresh prefix (so no cache outlives a test); sets and returns its issuer."""
        prefix = f"{name}-{next(self._serial)}"
        # Swapped, never changed in place: the server thread may be walking the old list right now.
        self._router.routes = [*self._router.routes, Mount(f"/{prefix}", app=emulator, name=prefix)]
        emulator.issuer = f"{self.base_url}/{prefix}"
        return emulator.issuer

    def unmount(self, emulator: OidcEmulator) -> None:
        self._router.routes = [r for r in self._router.routes if getattr(r, "app", None) is not emulator]
