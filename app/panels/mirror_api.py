"""The subscription-link mirror (SPEC §6.6): `/sub/{token}` on our domain relays the panel's subscription, so
VPN clients keep updating when the panel's own domain is blocked.

The token is ours and revocable: every request looks it up in the database before anything else (the cache
included), so once provisioning replaces `sub_token` the old link is dead at once. Answers are cached briefly,
because clients poll and one user often has several devices.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.kit.crypto import cipher
from app.kit.errors import ExternalServiceError
from app.kit.http import HttpClient, RetryPolicy
from app.models import VpnAccount

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

RATE_LIMIT = 30  # requests per token per window: far above any client's polling, low enough to stop a flood
RATE_WINDOW_SECONDS = 60
CACHE_TTL_SECONDS = 30
CACHE_MAX_ENTRIES = 1024  # the in-memory cache only
CACHE_MAX_BODY_BYTES = 256 * 1024  # larger answers are relayed but not cached
UPSTREAM_TIMEOUT = 5.0
PROVISIONING_RETRY_AFTER = 30

# Anything the panel may choose the content by (client type, HWID device limits) is forwarded, and is part of
# the cache key, so one device is never served an answer made for another.
FORWARDED_HEADERS = ("user-agent", "accept", "x-hwid", "x-device-os", "x-ver-os", "x-device-model")
# Every header the panel sends reaches the client (2.8's `routing` for Happ, `subscription-refill-date`, 3.x
# admin-defined headers of any name, Marzban's profile headers) except these: hop-by-hop ones (RFC 9110 §7.6.1),
# the framing httpx already undid (length, encoding), what our own server sets (date, server, cache-control),
# and the panel's cookies, which would land on our domain.
DROPPED_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "content-encoding",
        "date",
        "server",
        "cache-control",
        "set-cookie",
        "alt-svc",
        "strict-transport-security",
    }
)
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")  # sub_token is String(64), url-safe

# Loading the CA bundle costs milliseconds; do it once, not for every client built below.
_SSL_CONTEXT = httpx.create_ssl_context()


@dataclass(frozen=True, slots=True)
class Answer:
    """The panel's answer as we relay it (and cache it)."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def dumps(self) -> bytes:
        return json.dumps({"s": self.status, "h": self.headers, "b": base64.b64encode(self.body).decode()}).encode()

    @classmethod
    def loads(cls, raw: bytes) -> Answer:
        data = json.loads(raw)
        return cls(data["s"], [(k, v) for k, v in data["h"]], base64.b64decode(data["b"]))


@router.get("/sub/{token}")
async def subscription(token: str, request: Request) -> Response:
    """Relay the panel's subscription content for one of our tokens."""
    resources = request.app.state.resources
    if not _TOKEN.fullmatch(token):
        return _text(404, "Not found")
    # Keys hold a digest: tokens are credentials and do not belong in Redis key listings.
    try:
        decision = await resources.rate_limiter.hit(f"sub:{_digest(token)}", RATE_LIMIT, RATE_WINDOW_SECONDS)
    except RedisError as exc:
        # Users' VPN clients matter more than the limit: a Redis outage must not take every link down.
        log.warning("subscription mirror: rate limiter unavailable: %s", exc)
    else:
        if not decision.allowed:
            return _text(429, "Too many requests", retry_after=decision.retry_after)

    found, encrypted_url = await _lookup(resources.sessionmaker, token)
    if not found:
        return _text(404, "Not found")
    if not encrypted_url:
        return _text(503, "The subscription is being set up; try again shortly", retry_after=PROVISIONING_RETRY_AFTER)
    upstream = _panel_url(cipher().decrypt(encrypted_url))
    if upstream is None:
        log.error("subscription mirror: the stored subscription URL is not an absolute http(s) URL")
        return _text(502, "The subscription source is unreachable; try again later")

    forwarded = {name: value for name in FORWARDED_HEADERS if (value := request.headers.get(name)) is not None}
    # The upstream URL is in the key too: after a move to another server, the old server's answer is not reused.
    key = _digest(token, str(upstream), *(f"{name}={value}" for name, value in forwarded.items()))
    cache = _cache(request)
    answer = await cache.get(key)
    if answer is None:
        client_ip = request.client.host if request.client else "127.0.0.1"
        try:
            answer = await _fetch(upstream, forwarded, client_ip)
        except ExternalServiceError as exc:
            log.warning("subscription mirror: upstream failed: %s", exc)
            return _text(502, "The subscription source is unreachable; try again later")
        if answer.status == 200 and len(answer.body) <= CACHE_MAX_BODY_BYTES:
            await cache.set(key, answer, CACHE_TTL_SECONDS)
    public_url = f"{request.app.state.settings.public_base_url.rstrip('/')}/sub/{token}"
    return _relay(answer, upstream, public_url)


async def _lookup(sessionmaker: async_sessionmaker[AsyncSession], token: str) -> tuple[bool, str | None]:
    """(the token exists, its encrypted panel URL). A short session of its own: no connection is held while
    the panel is being waited for."""
    async with sessionmaker() as session:
        row = (
            await session.execute(
                select(VpnAccount.subscription_url_encrypted).where(VpnAccount.sub_token == token).limit(1)
            )
        ).first()
    return (False, None) if row is None else (True, row[0])


async def _fetch(target: httpx.URL, forwarded: dict[str, str], client_ip: str) -> Answer:
    headers = dict(forwarded)
    if target.scheme == "http":
        # Remnawave drops plain-http requests lacking these (reference §2.1); over https its proxy sets them.
        headers |= {"x-forwarded-for": client_ip, "x-forwarded-proto": "https"}
    origin = f"{target.scheme}://{target.netloc.decode('ascii')}"
    # Bound to the origin, so the per-host circuit breaker is the panel's own.
    async with HttpClient(
        origin,
        service="subscription mirror",
        timeout=UPSTREAM_TIMEOUT,
        retry=RetryPolicy(attempts=2, base_delay=0.2, max_delay=0.5, max_retry_after=1.0),
        transport=httpx.AsyncHTTPTransport(verify=_SSL_CONTEXT),
    ) as http:
        # Redirects are followed here: relaying one would send the client to the (blocked) panel domain.
        response = await http.get(target.raw_path.decode("ascii"), headers=headers, follow_redirects=True)
    # Headers the Connection header names are hop-by-hop too.
    listed = {token.strip().lower() for token in response.headers.get("connection", "").split(",")}
    kept = [
        (name, value)
        for name, value in response.headers.multi_items()
        if name not in DROPPED_HEADERS and name not in listed
    ]
    return Answer(response.status_code, kept, response.content)


def _panel_url(value: str) -> httpx.URL | None:
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL:
        return None
    return url if url.scheme in ("http", "https") and url.host else None


def _relay(answer: Answer, upstream: httpx.URL, public_url: str) -> Response:
    response = Response(answer.body, status_code=answer.status)
    for name, value in answer.headers:
        # Marzban points its web page at the URL it was fetched from, on the panel's (maybe blocked) domain:
        # point it at us instead, where the page is relayed too.
        if name == "profile-web-page-url" and _host(value) == upstream.host:
            value = public_url
        response.headers.append(name, value)
    # Per-user secrets (the links inside): no shared cache may keep them.
    response.headers["cache-control"] = "no-store"
    return response


def _host(value: str) -> str | None:
    try:
        return httpx.URL(value).host
    except httpx.InvalidURL:
        return None


def _text(status: int, message: str, *, retry_after: int | None = None) -> PlainTextResponse:
    # Plain text, not the HTML error page: the readers are VPN clients, which show the body as is.
    headers = {"retry-after": str(retry_after)} if retry_after is not None else None
    return PlainTextResponse(message, status_code=status, headers=headers)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


# --- the short cache: Redis when configured (shared by workers), else this process's memory ----------------------


class AnswerCache(Protocol):
    async def get(self, key: str) -> Answer | None: ...

    async def set(self, key: str, answer: Answer, ttl: int) -> None: ...


class MemoryAnswerCache:
    """Least-recently-used and bounded, so many distinct tokens or devices cannot grow it without limit."""

    def __init__(self, max_entries: int = CACHE_MAX_ENTRIES, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: OrderedDict[str, tuple[float, Answer]] = OrderedDict()
        self._max = max_entries
        self._clock = clock

    async def get(self, key: str) -> Answer | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry[1]

    async def set(self, key: str, answer: Answer, ttl: int) -> None:
        self._entries[key] = (self._clock() + ttl, answer)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)


class RedisAnswerCache:
    """A cache miss when Redis fails: the mirror still answers (from the panel), only slower."""

    PREFIX = "submirror:"

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def get(self, key: str) -> Answer | None:
        try:
            raw = await self._redis.get(self.PREFIX + key)
            return None if raw is None else Answer.loads(raw)
        except (RedisError, ValueError, KeyError, TypeError) as exc:
            log.warning("subscription mirror: cache read failed: %s", exc)
            return None

    async def set(self, key: str, answer: Answer, ttl: int) -> None:
        try:
            await self._redis.set(self.PREFIX + key, answer.dumps(), ex=ttl)
        except RedisError as exc:
            log.warning("subscription mirror: cache write failed: %s", exc)


def _cache(request: Request) -> AnswerCache:
    redis = request.app.state.resources.redis
    if redis is not None:
        return RedisAnswerCache(redis)
    # One per app (not per module), so separate apps in one process (tests) never share answers.
    cache: MemoryAnswerCache | None = getattr(request.app.state, "sub_mirror_cache", None)
    if cache is None:
        cache = request.app.state.sub_mirror_cache = MemoryAnswerCache()
    return cache
