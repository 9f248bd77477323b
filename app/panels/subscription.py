"""Reading a subscription link the way a VPN client reaches it, for autodiagnostics: does the link answer, and
with which configs. Both real panels have an `…/info` twin of the link that checks the same token but neither
records a fetch nor registers an HWID device, so looking never changes what the customer sees."""

from __future__ import annotations

from typing import Any

import httpx

from app.kit.errors import ExternalServiceError
from app.kit.http import HttpClient, RetryPolicy
from app.panels.base import PanelError, PanelUnavailable

INFO_TIMEOUT = 5.0
# Marzban 0.7 answers a revoked or unknown token 204, 0.8 and Remnawave 404.
DEAD_LINK = frozenset({204, 404})


async def read_subscription_info(url: str, headers: dict[str, str], service: str) -> Any | None:
    """The JSON an info URL answers, or None when the link is dead; PanelUnavailable when unreachable."""
    try:
        target = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise PanelError(f"{service}: the subscription URL {url!r} is not a URL") from exc
    if target.scheme not in ("http", "https") or not target.host:
        raise PanelError(f"{service}: the subscription URL is not an absolute http(s) URL")
    origin = f"{target.scheme}://{target.netloc.decode('ascii')}"
    async with HttpClient(
        origin, service=f"{service} subscription", timeout=INFO_TIMEOUT, retry=RetryPolicy(attempts=2, base_delay=0.2)
    ) as http:
        try:
            response = await http.get(target.raw_path.decode("ascii"), headers=headers, follow_redirects=True)
        except ExternalServiceError as exc:
            raise PanelUnavailable(f"{service}: the subscription link is unreachable: {exc}") from exc
    if response.status_code in DEAD_LINK:
        return None
    if not response.is_success:
        raise PanelError(f"{service}: the subscription link answered HTTP {response.status_code}")
    try:
        return response.json()
    except ValueError as exc:
        raise PanelError(f"{service}: the subscription info is not JSON: {exc}") from exc
