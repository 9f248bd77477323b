"""What a customer changes about their own account (SPEC §3.7): language, auto-renewal, marketing messages,
saved payment methods and linked browser logins. Every change is audited with its before and after."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service as audit
from app.kit.clock import utcnow
from app.kit.errors import NotFound, ValidationFailed
from app.kit.i18n import available_languages
from app.models import SavedPaymentMethod, Subscription, SubscriptionStatus, User, UserIdentity
from app.outbox import service as outbox
from app.payments.topics import CANCEL_RECURRING_TOPIC


def _audit(
    session: AsyncSession,
    user: User,
    action: str,
    entity: str,
    entity_id: object,
    before: dict,
    after: dict,
    ip: str | None,
) -> None:
    audit.record(
        session,
        actor_type="user",
        actor_id=user.id,
        action=action,
        entity_type=entity,
        entity_id=entity_id,
        before=before,
        after=after,
        ip=ip,
    )


async def set_language(session: AsyncSession, user: User, language: str, *, ip: str | None = None) -> None:
    if language not in available_languages():
        raise ValidationFailed(f"language: expected one of {', '.join(available_languages())}")
    if language != user.language:
        _audit(session, user, "user.language", "user", user.id, {"language": user.language}, {"language": language}, ip)
        user.language = language


async def set_currency(
    session: AsyncSession, user: User, currency: str, *, offered: list[str], ip: str | None = None
) -> str:
    """Remember the currency the customer sees prices in and pays in from now on; `offered` are the currencies
    the shop sells in (app/payments/orders.sold_currencies). Anything else is refused and nothing changes."""
    code = currency.strip().upper()
    if code not in offered:
        raise ValidationFailed(f"currency: expected one of {', '.join(offered)}", code="currency_not_offered")
    if code != user.currency:
        _audit(session, user, "user.currency", "user", user.id, {"currency": user.currency}, {"currency": code}, ip)
        user.currency = code
    return code


async def set_marketing(session: AsyncSession, user: User, *, opted_in: bool, ip: str | None = None) -> None:
    if user.marketing_opt_out == (not opted_in):
        return
    _audit(
        session,
        user,
        "user.marketing",
        "user",
        user.id,
        {"opted_in": not user.marketing_opt_out},
        {"opted_in": opted_in},
        ip,
    )
    user.marketing_opt_out = not opted_in


async def current_paid_subscription(session: AsyncSession, user: User) -> Subscription | None:
    """The subscription auto-renewal applies to: the latest paid one (trials do not renew)."""
    return await session.scalar(
        select(Subscription)
        .where(
            Subscription.user_id == user.id,
            Subscription.is_trial.is_(False),
            Subscription.status.in_([SubscriptionStatus.ACTIVE, SubscriptionStatus.EXPIRED]),
        )
        .order_by(Subscription.ends_at.desc())
        .limit(1)
    )


async def set_auto_renew(session: AsyncSession, user: User, *, enabled: bool, ip: str | None = None) -> Subscription:
    subscription = await current_paid_subscription(session, user)
    if subscription is None:
        raise NotFound("There is no paid subscription to renew.")
    if subscription.auto_renew != enabled:
        _audit(
            session,
            user,
            "subscription.auto_renew",
            "subscription",
            subscription.id,
            {"auto_renew": subscription.auto_renew},
            {"auto_renew": enabled},
            ip,
        )
        subscription.auto_renew = enabled
        subscription.renewal_failures = 0
    return subscription


async def payment_methods(session: AsyncSession, user: User) -> list[SavedPaymentMethod]:
    rows = await session.scalars(
        select(SavedPaymentMethod)
        .where(SavedPaymentMethod.user_id == user.id, SavedPaymentMethod.is_active)
        .order_by(SavedPaymentMethod.id)
    )
    return list(rows)


async def remove_payment_method(session: AsyncSession, user: User, method_id: int, *, ip: str | None = None) -> None:
    """Stop charging a saved method: it is deactivated (kept for the payment history), never used again."""
    method = await session.scalar(
        select(SavedPaymentMethod).where(
            SavedPaymentMethod.id == method_id, SavedPaymentMethod.user_id == user.id, SavedPaymentMethod.is_active
        )
    )
    if method is None:
        raise NotFound("This payment method is not saved on your account.")
    await revoke_payment_method(session, method)
    _audit(
        session,
        user,
        "payment_method.removed",
        "saved_payment_method",
        method.id,
        {"active": True},
        {"active": False},
        ip,
    )


async def revoke_payment_method(session: AsyncSession, method: SavedPaymentMethod) -> None:
    """Never charge `method` again: it is deactivated (kept for the payment history) and, through the outbox, its
    provider is told to stop — a provider-side subscription (Stars, Razorpay) keeps charging until then. The caller
    audits it, as the customer's removal or as part of a staff action."""
    method.is_active = False
    method.revoked_at = utcnow()
    await outbox.add(
        session, CANCEL_RECURRING_TOPIC, {"method_id": method.id}, dedupe_key=f"{CANCEL_RECURRING_TOPIC}:{method.id}"
    )


async def identities(session: AsyncSession, user: User) -> list[UserIdentity]:
    rows = await session.scalars(select(UserIdentity).where(UserIdentity.user_id == user.id).order_by(UserIdentity.id))
    return list(rows)


async def link_identity(
    session: AsyncSession, user: User, *, provider: str, subject: str, email: str | None, ip: str | None = None
) -> UserIdentity:
    """Link an OIDC account to `user`; one already linked to someone else is refused, not moved."""
    existing = await session.scalar(
        select(UserIdentity).where(UserIdentity.provider == provider, UserIdentity.subject == subject)
    )
    if existing is not None:
        if existing.user_id != user.id:
            raise ValidationFailed("This account is already linked to another customer.")
        return existing
    identity = UserIdentity(user_id=user.id, provider=provider, subject=subject, email=email)
    session.add(identity)
    await session.flush()
    _audit(session, user, "identity.linked", "user_identity", identity.id, {}, {"provider": provider}, ip)
    return identity


async def unlink_identity(session: AsyncSession, user: User, identity_id: int, *, ip: str | None = None) -> None:
    identity = await session.scalar(
        select(UserIdentity).where(UserIdentity.id == identity_id, UserIdentity.user_id == user.id)
    )
    if identity is None:
        raise NotFound("This login is not linked to your account.")
    _audit(session, user, "identity.unlinked", "user_identity", identity.id, {"provider": identity.provider}, {}, ip)
    await session.delete(identity)
