"""The enabled payment providers of this process, built from Settings with the admin's provider settings laid
over them (app/payments/provider_settings.py). A new provider is one module in app/payments/providers/ plus one
line here.

Every process (web, worker, bot) watches the stored settings' revision: a change made in the admin rebuilds the
providers within WATCH_SECONDS everywhere, and at once in the process that made it (`reload`). Providers
replaced by a rebuild are closed only when the registry closes, as a request may still be using one."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from collections.abc import Iterator
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.kit.errors import NotFound
from app.payments import provider_settings
from app.payments.providers.base import CredentialsRefused, PaymentProvider, ProviderUnavailable

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


def has_connection_test(name: str) -> bool:
    """Whether the provider's adapter offers `check_connection()` (an authenticated read that changes nothing)."""
    return callable(getattr(_provider_class(PROVIDERS[name]), "check_connection", None))


# How often each process looks for provider settings changed in the admin.
WATCH_SECONDS = 5.0


def build_provider(name: str, settings: Settings, **extra: object) -> PaymentProvider | None:
    """One provider from settings, or None when they are not complete. `extra` reaches providers that take more
    than settings (the demo provider needs the database)."""
    kwargs = extra if name == "demo" else {}
    return _provider_class(PROVIDERS[name]).from_settings(settings, **kwargs)


def _build(settings: Settings, off: set[str], extra: dict[str, Any]) -> dict[str, PaymentProvider]:
    providers: dict[str, PaymentProvider] = {}
    for name in PROVIDERS:
        if name in off:
            continue
        provider = build_provider(name, settings, **extra)
        if provider is not None:
            providers[name] = provider
    return providers


class PaymentRegistry:
    def __init__(
        self,
        providers: dict[str, PaymentProvider],
        *,
        settings: Settings | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self._providers = providers
        self._settings = settings
        self._extra = extra or {}
        self._signature: tuple[int, int] | None = None
        self._retired: list[PaymentProvider] = []
        self._watcher: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, **extra: object) -> PaymentRegistry:
        """Every provider whose environment settings are complete; `reload` then lays the admin's over them."""
        providers = _build(settings, set(), dict(extra))
        log.info("payment providers enabled: %s", ", ".join(providers) or "none")
        return cls(providers, settings=settings, extra=dict(extra))

    @property
    def settings(self) -> Settings | None:
        """The settings the providers are built from: the environment's with the admin's over them."""
        return self._settings

    async def reload(self, session: AsyncSession) -> bool:
        """Rebuild the providers if the stored provider settings changed since the last look; True if rebuilt."""
        if self._settings is None:
            return False
        async with self._lock:
            signature = await provider_settings.signature(session)
            if signature == self._signature:
                return False
            stored = await provider_settings.configs(session)
            effective = provider_settings.effective_settings(self._settings, stored)
            providers = _build(effective, provider_settings.switched_off(stored), self._extra)
            self._retired.extend(self._providers.values())
            self._providers, self._signature = providers, signature
        log.info("payment providers enabled: %s", ", ".join(providers) or "none")
        return True

    async def reload_from(self, sessionmaker: async_sessionmaker[AsyncSession]) -> bool:
        async with sessionmaker() as session:
            return await self.reload(session)

    def watch(self, sessionmaker: async_sessionmaker[AsyncSession], interval: float = WATCH_SECONDS) -> None:
        """Look for changed provider settings now and every `interval` seconds, in the background (only when
        called inside a running event loop: every entry point opens its resources there)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self._watcher is None:
            self._watcher = loop.create_task(self._watch(sessionmaker, interval), name="payment-registry-watch")

    async def _watch(self, sessionmaker: async_sessionmaker[AsyncSession], interval: float) -> None:
        while True:
            try:
                await self.reload_from(sessionmaker)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database away for a moment: keep the providers we have, look again
                log.warning("payment provider settings not read: %s", exc)
            await asyncio.sleep(interval)

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
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        for provider in [*self._providers.values(), *self._retired]:
            await provider.aclose()
        self._retired.clear()


async def check_connection(
    session: AsyncSession, settings: Settings, name: str, values: dict[str, Any] | None = None
) -> provider_settings.ConnectionResult:
    """Ask the provider's API whether the credentials work: the stored ones, or `values` typed in the form and
    not saved yet. Never changes anything."""
    fields = {field.key: field for field in provider_settings.known(name)}
    stored = await provider_settings.configs(session)
    effective = provider_settings.effective_settings(settings, stored)
    typed = {}
    for key, value in (values or {}).items():
        if key not in fields:
            raise provider_settings.FieldInvalid(key, f"Not a setting of {name}.")
        typed[fields[key].setting] = provider_settings.clean(fields[key], value)
    effective = effective.model_copy(update=typed)
    provider = build_provider(name, effective) if name != "demo" else None
    Result = provider_settings.ConnectionResult
    if provider is None:
        return Result("not_configured", "The credentials are not complete (or this provider has no API to ask).")
    try:
        check = getattr(provider, "check_connection", None)
        if check is None:
            return Result("not_available", "This provider has no connection test yet.")
        await check()
    except CredentialsRefused as exc:
        return Result("refused", str(exc))
    except ProviderUnavailable as exc:
        return Result("unreachable", str(exc))
    finally:
        await provider.aclose()
    return Result("ok", "The provider accepted the credentials.")
