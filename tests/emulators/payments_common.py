"""What every payment-provider emulator shares: the webhook delivery it would send, so one contract test can
post any provider's delivery (genuine, tampered or forged) to our webhook endpoint."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

import httpx


@dataclass(frozen=True)
class Delivery:
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    # The address the request comes from as our app sees it (YooKassa's allow-list checks it).
    peer_ip: str = "127.0.0.1"

    def tampered(self) -> Delivery:
        """The same signed headers over a changed body: the first number in the body gets a digit more."""
        body, count = re.subn(rb"(\d)", rb"\g<1>9", self.body, count=1)
        if not count:
            body = self.body + b" "
        return replace(self, body=body)

    def with_header(self, name: str, value: str) -> Delivery:
        return replace(self, headers={**self.headers, name: value})

    def without_header(self, name: str) -> Delivery:
        return replace(self, headers={k: v for k, v in self.headers.items() if k.lower() != name.lower()})


async def post_delivery(url: str, delivery: Delivery, *, attempts: int = 3) -> httpx.Response:
    """POST a delivery the way a provider does, retrying non-2xx answers a few times; returns the last answer."""
    async with httpx.AsyncClient(timeout=10) as client:
        response = None
        for _ in range(attempts):
            response = await client.post(url, content=delivery.body, headers=delivery.headers)
            if response.is_success:
                break
        assert response is not None
        return response
