"""Results per variant: exposed (assigned), converted (a payment that went through within the experiment's
window after the first exposure; the first such payment only, so a customer converts at most once), the rate with
its 95 % Wilson interval, and the probability that the variant's true rate beats the control's under uniform
Beta(1, 1) priors — computed in closed form (Evan Miller's sum), so the same data always gives the same figure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.kit.clock import ensure_utc
from app.models import Experiment, ExperimentAssignment, Payment, PaymentStatus

Z_95 = 1.959963984540054
# A refunded payment was paid first: the customer did convert.
PAID = (PaymentStatus.SUCCEEDED, PaymentStatus.REFUNDED)


@dataclass(frozen=True)
class VariantResult:
    key: str
    weight: int
    exposed: int
    converted: int
    rate: float
    low: float  # Wilson 95 % interval
    high: float
    beats_control: float | None  # None for the control itself


def wilson(converted: int, exposed: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (sound near 0 and 1 and for small samples, unlike p ± z·se)."""
    if exposed == 0:
        return 0.0, 1.0
    p = converted / exposed
    denominator = 1 + z * z / exposed
    centre = (p + z * z / (2 * exposed)) / denominator
    half = z * math.sqrt(p * (1 - p) / exposed + z * z / (4 * exposed * exposed)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def probability_beats(converted_b: int, exposed_b: int, converted_a: int, exposed_a: int) -> float:
    """P(rate_B > rate_A) with rate ~ Beta(1 + converted, 1 + not converted), exactly:
    sum over i < α_B of B(α_A + i, β_A + β_B) / ((β_B + i) · B(1 + i, β_B) · B(α_A, β_A)). O(conversions of B)."""
    alpha_a, beta_a = 1 + converted_a, 1 + exposed_a - converted_a
    alpha_b, beta_b = 1 + converted_b, 1 + exposed_b - converted_b
    total = 0.0
    for i in range(alpha_b):
        total += math.exp(
            _log_beta(alpha_a + i, beta_a + beta_b)
            - math.log(beta_b + i)
            - _log_beta(1 + i, beta_b)
            - _log_beta(alpha_a, beta_a)
        )
    return min(1.0, max(0.0, total))


async def results(session: AsyncSession, experiment: Experiment) -> list[VariantResult]:
    """One row per variant, in the experiment's order (the control first)."""
    first_paid = (
        select(func.min(Payment.paid_at))
        .where(
            and_(
                Payment.user_id == ExperimentAssignment.user_id,
                Payment.status.in_(PAID),
                Payment.paid_at >= ExperimentAssignment.assigned_at,
            )
        )
        .correlate(ExperimentAssignment)
        .scalar_subquery()
    )
    rows = await session.execute(
        select(ExperimentAssignment.variant, ExperimentAssignment.assigned_at, first_paid).where(
            ExperimentAssignment.experiment_id == experiment.id
        )
    )
    window = timedelta(days=experiment.conversion_days)
    exposed: dict[str, int] = {}
    converted: dict[str, int] = {}
    for variant, assigned_at, paid_at in rows.all():
        exposed[variant] = exposed.get(variant, 0) + 1
        if paid_at is not None and ensure_utc(paid_at) - ensure_utc(assigned_at) <= window:
            converted[variant] = converted.get(variant, 0) + 1
    control = experiment.variants[0]["key"]
    results: list[VariantResult] = []
    for variant in experiment.variants:
        key = variant["key"]
        n, k = exposed.get(key, 0), converted.get(key, 0)
        low, high = wilson(k, n)
        beats = None
        if key != control:
            beats = probability_beats(k, n, converted.get(control, 0), exposed.get(control, 0))
        results.append(VariantResult(key, int(variant["weight"]), n, k, k / n if n else 0.0, low, high, beats))
    return results
