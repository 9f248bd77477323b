"""Text experiments on every customer-facing text of the Mini App and the browser cabinet.

The web process keeps the running text experiments in a snapshot (refreshed with the staff-edited texts every
second, app/runtime_settings/refresher.py), so a request costs no query. Once the customer is known,
`use_for(sessionmaker, user)` puts their variants on top of the staff's texts for the rest of the request; the
translator reads texts through `CustomerTexts`, which remembers every experiment key it was asked for, whatever
the variant (the control's customers see the normal text and are exposed all the same). Before the request's
transaction commits, `record_exposures` records those first exposures (app/deps.py), so a customer counts as
exposed exactly when a page or answer used the text.

Variants cannot be edited once an experiment exists, so the deterministic pick is the variant recorded at first
exposure. The bot's messages and notifications keep the normal texts.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.experiments.assignment import expose, pick, variant_params
from app.kit.i18n import OVERRIDES
from app.models import Experiment, ExperimentKind, User

_running: weakref.WeakKeyDictionary[Any, dict[str, Experiment]] = weakref.WeakKeyDictionary()


async def refresh(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """Read the running text experiments (text key → experiment) for this process."""
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(Experiment).where(Experiment.kind == ExperimentKind.TEXT, Experiment.is_active)
        )
        _running[sessionmaker] = {experiment.target: experiment for experiment in rows}


@dataclass
class CustomerTexts(Mapping[tuple[str, str], Any]):
    """The staff's texts with one customer's variants on top; remembers which experiments' texts were read."""

    user_id: int
    base: Mapping[tuple[str, str], Any]
    variants: dict[tuple[str, str], str]
    experiments: dict[str, Experiment]  # text key → its running experiment
    read: set[str] = field(default_factory=set)

    def __getitem__(self, item: tuple[str, str]) -> Any:
        if item[1] in self.experiments:
            self.read.add(item[1])
            if item in self.variants:
                return self.variants[item]
        return self.base[item]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter({**self.base, **self.variants})

    def __len__(self) -> int:
        return len({**self.base, **self.variants})


def use_for(sessionmaker: async_sessionmaker[AsyncSession], user: User) -> CustomerTexts | None:
    """Translate with this customer's variants for the rest of the request; None when no text experiment runs."""
    running = _running.get(sessionmaker)
    if not running:
        return None
    variants: dict[tuple[str, str], str] = {}
    for key, experiment in running.items():
        params = variant_params(experiment, pick(experiment.variants, experiment.key, user.id))
        for language, text in (params.get("text") or {}).items():
            variants[language, key] = text
    texts = CustomerTexts(user.id, OVERRIDES.get() or {}, variants, running)
    OVERRIDES.set(texts)
    return texts


async def record_exposures(session: AsyncSession, texts: CustomerTexts) -> None:
    """Record the first exposure of the customer to each experiment whose text the request used."""
    for key in sorted(texts.read):
        experiment = await session.get(Experiment, texts.experiments[key].id)
        if experiment is not None and experiment.is_active:
            await expose(session, experiment, texts.user_id)
