"""What the providers page and API show of each provider the registry knows: on or off (and why), each setting
with where its value comes from (a secret only as "set, ends …1234"), the webhook URL to paste into the
provider's dashboard, and the last webhook we verified from it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.payments import provider_settings
from app.payments.registry import PROVIDERS, PaymentRegistry, has_connection_test


@dataclass(frozen=True, slots=True)
class ProviderView:
    name: str
    active: bool  # in this process's registry: offered at checkout
    switch: bool | None  # what the admin set: on, off, or None (as the environment decides)
    fields: list[dict[str, Any]]
    webhook_url: str | None
    last_webhook_kind: str | None
    last_webhook_at: datetime | None
    can_test: bool


async def provider_views(
    session: AsyncSession, settings: Settings, registry: PaymentRegistry, only: str | None = None
) -> list[ProviderView]:
    stored = await provider_settings.configs(session)
    views = []
    for name in PROVIDERS:
        if only is not None and name != only:
            continue
        config = stored.get(name)
        event = await provider_settings.last_webhook(session, name)
        views.append(
            ProviderView(
                name=name,
                active=name in registry,
                switch=config.is_enabled if config else None,
                fields=[
                    provider_settings.describe_field(field, settings, config)
                    for field in provider_settings.PROVIDER_FIELDS[name]
                ],
                webhook_url=provider_settings.webhook_url(settings, name),
                last_webhook_kind=event.kind if event else None,
                last_webhook_at=event.received_at if event else None,
                can_test=has_connection_test(name),
            )
        )
    return views
