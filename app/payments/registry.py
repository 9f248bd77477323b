"""The enabled payment providers of this process, built once from Settings. A new provider is one module in
app/payments/providers/ plus one line here."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator

from app.config import Settings
from app.kit.errors import NotFound
from app.payments.providers.base import PaymentProvider

log = logging.getLogger(__name__)

# name -> "module:Class"; the order is the order customers see the methods in.
PROVIDERS: dict[str, str] = {
    "yookassa": "app.payments.providers.yookassa:YooKassaProvider",
    "wata": "app.payments.providers.wata:WataProvider",
    "stars": "app.payments.providers.stars:StarsProvider",
    "cryptopay": "app.payments.providers.cryptopay:CryptoPayProvider",
    "razorpay": "app.payments.providers.razorpay:RazorpayProvider",
    "xendit": "app.payments.providers.xendit:XenditProvider",
    "demo": "app.payments.providers.demo:DemoProvider",
}


def _provider_class(path: str) -> type:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


class PaymentRegistry:
    def __init__(self, providers: dict[str, PaymentProvider]) -> None:
        self._providers = providers

    @classmethod
    def from_settings(cls, settings: Settings, **extra: object) -> PaymentRegistry:
        """Every provider whose settings are complete. `extra` reaches providers that take more than settings
        (the demo provider needs the database)."""
        providers: dict[str, PaymentProvider] = {}
        for name, path in PROVIDERS.items():
            provider_class = _provider_class(path)
            kwargs = extra if name == "demo" else {}
            provider = provider_class.from_settings(settings, **kwargs)
            if provider is not None:
                providers[name] = provider
        log.info("payment providers enabled: %s", ", ".join(providers) or "none")
        return cls(providers)

    def get(self, name: str) -> PaymentProvider:
        try:
            return self._providers[name]
        except KeyError:
            raise NotFound(f"Payment method {name!r} is not available.", code="provider_not_available") from None

    def __contains__(self, name: object) -> bool:
        return name in self._providers

    def __iter__(self) -> Iterator[PaymentProvider]:
        return iter(self._providers.values())

    def for_currency(self, currency: str) -> list[PaymentProvider]:
        return [provider for provider in self if currency in provider.currencies]

    async def aclose(self) -> None:
        for provider in self:
            await provider.aclose()
