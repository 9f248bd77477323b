"""Deterministic assignment. The bucket comes from sha256, never Python's hash() (salted per process), so every
process, restart and machine puts a customer in the same variant; the first exposure is recorded and from then on
the recorded variant wins, even if the weights are edited later."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import insert_for
from app.kit.clock import utcnow
from app.models import Experiment, ExperimentAssignment

# Buckets: enough that weights in whole percent (or any integers summing to less than this) split exactly.
_BUCKETS = 10**12


def bucket(experiment_key: str, user_id: int) -> int:
    """A number in [0, _BUCKETS), uniform and the same for the same pair everywhere."""
    digest = hashlib.sha256(f"{experiment_key}:{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % _BUCKETS


def pick(variants: Sequence[dict[str, Any]], experiment_key: str, user_id: int) -> str:
    """The variant's key for this customer: the bucket falls in one variant's share of the total weight."""
    total = sum(int(variant["weight"]) for variant in variants)
    point = bucket(experiment_key, user_id) * total // _BUCKETS
    for variant in variants:
        point -= int(variant["weight"])
        if point < 0:
            return str(variant["key"])
    return str(variants[-1]["key"])  # unreachable with positive weights


async def expose(session: AsyncSession, experiment: Experiment, user_id: int) -> str:
    """The customer's variant, recorded now if this is their first exposure. Concurrent first exposures (two
    tabs) insert one row: the unique (experiment, user) and ON CONFLICT DO NOTHING; both then read it."""
    variant = pick(experiment.variants, experiment.key, user_id)
    await session.execute(
        insert_for(session, ExperimentAssignment)
        .values(experiment_id=experiment.id, user_id=user_id, variant=variant, assigned_at=utcnow())
        .on_conflict_do_nothing(index_elements=["experiment_id", "user_id"])
    )
    recorded = await session.scalar(
        select(ExperimentAssignment.variant).where(
            ExperimentAssignment.experiment_id == experiment.id, ExperimentAssignment.user_id == user_id
        )
    )
    return recorded or variant


def variant_params(experiment: Experiment, variant: str) -> dict[str, Any]:
    """What a variant changes: `{"prices": {...}}` or `{"text": {...}}` (empty for one that changes nothing)."""
    return next((v.get("params") or {} for v in experiment.variants if v["key"] == variant), {})
