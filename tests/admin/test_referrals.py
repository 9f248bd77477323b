"""/admin/referrals on a planted program: the figures worked out by hand, the top referrers, an address shared
by three invited customers, and one referrer's friends with their payments."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.audit.service import record
from app.auth.telegram import TelegramUser
from app.models import (
    BrowserSession,
    Payment,
    PaymentStatus,
    ReferralReward,
    ReferralRewardKind,
    Subscription,
    SubscriptionStatus,
    User,
)
from app.users.service import upsert_from_telegram
from tests.admin.conftest import AdminHarness
from tests.admin.test_dashboard import cards
from tests.web import text_of

EN = {"accept-language": "en"}


async def test_the_referral_program_page(admin: AdminHarness) -> None:
    owner = await admin.browser("owner")
    support = await admin.browser("support")
    now = datetime.now(UTC)
    rita = User(telegram_id=700, username="rita", referral_code="rita")
    oleg = User(telegram_id=701, username="oleg", referral_code="oleg")
    admin.db.add_all([rita, oleg])
    await admin.db.flush()
    # Rita invited f1 (paid 199 ₽, live subscription), f2 (paid 50 Stars, then refunded: not "paid") and f3
    # (nothing); Oleg invited f4 (trial, live).
    friends = [
        User(telegram_id=710 + i, username=f"f{i}", referral_code=f"f{i}", referrer_id=referrer.id)
        for i, referrer in ((1, rita), (2, rita), (3, rita), (4, oleg))
    ]
    admin.db.add_all(friends)
    await admin.db.flush()
    f1, f2, f3, f4 = friends
    admin.db.add_all(
        [
            Subscription(user_id=f1.id, status=SubscriptionStatus.ACTIVE, starts_at=now - timedelta(days=1),
                         ends_at=now + timedelta(days=29)),
            Subscription(user_id=f4.id, status=SubscriptionStatus.TRIAL, is_trial=True,
                         starts_at=now - timedelta(days=1), ends_at=now + timedelta(days=2)),
            Payment(public_id="p-f1", user_id=f1.id, provider="demo", amount_minor=199_00, currency="RUB",
                    status=PaymentStatus.SUCCEEDED, idempotency_key="p-f1", days=30, paid_at=now),
            Payment(public_id="p-f2", user_id=f2.id, provider="stars", amount_minor=50, currency="XTR",
                    status=PaymentStatus.REFUNDED, idempotency_key="p-f2", days=30, paid_at=now, refunded_at=now,
                    refunded_minor=50),
            # Rita earned 7 days for f1's payment (added), f1 got 3 (pending): 10 granted, 7 used.
            ReferralReward(beneficiary_id=rita.id, source_user_id=f1.id, kind=ReferralRewardKind.FIRST_PAYMENT_REFERRER,
                           days=7, dedupe_key="a", applied_at=now),
            ReferralReward(beneficiary_id=f1.id, source_user_id=rita.id, kind=ReferralRewardKind.FIRST_PAYMENT_REFERRED,
                           days=3, dedupe_key="b"),
        ]
    )  # fmt: skip
    # f1, f2 and f4 signed in from one address (two referrers behind it); f3 from another.
    for i, (friend, ip) in enumerate(
        ((f1, "203.0.113.9"), (f2, "203.0.113.9"), (f4, "203.0.113.9"), (f3, "198.51.100.1"))
    ):
        admin.db.add(BrowserSession(user_id=friend.id, token_hash=f"t{i}", ip=ip, expires_at=now + timedelta(days=1)))
    rita_id = rita.id
    await admin.db.commit()

    page = await owner.get("/admin/referrals", headers=EN)
    assert page.status_code == 200
    shown = cards(page.text)
    assert shown["invited"] == "Invited 4 by 2 referrers"
    assert shown["active"] == "Active now 2"  # f1 and f4
    assert shown["paid"] == "Paid 1"  # f1 (f2's payment was refunded)
    assert shown["conversion"] == "Invited → paid 25.0 %"
    assert shown["days"] == "Bonus days granted 10 7 already added to subscriptions"
    top = text_of(page.text.split('id="top"')[1].split("</section>")[0])
    assert "@rita 3 1 33.3 % 7 @oleg 1 0 0.0 % 0" in top
    suspicious = text_of(page.text.split('id="suspicious"')[1].split("</section>")[0])
    assert "203.0.113.9 3 2" in suspicious and "198.51.100.1" not in suspicious

    friends_page = await owner.get(f"/admin/referrals/{rita_id}", headers=EN)
    assert friends_page.status_code == 200
    listed = text_of(friends_page.text)
    assert "Invited by @rita" in listed
    assert "@f1" in listed and "₽199" in listed and "@f2" in listed and "0 ★" in listed and "@f3" in listed
    assert "@f4" not in listed
    assert (await owner.get("/admin/referrals/999999")).status_code == 404
    assert (await support.get("/admin/referrals")).status_code == 403


async def test_self_referral_attempts_and_refused_rewards_are_listed(admin: AdminHarness) -> None:
    """Rita opens the app through her own invitation link (twice: recorded once, nothing granted); a first payment
    whose referrer was the payer's own invitee was refused at payment time (audited by app/referrals/rewards.py)."""
    owner = await admin.browser("owner")
    rita = User(telegram_id=800, first_name="Rita", username="rita", referral_code="rita8")
    admin.db.add(rita)
    await admin.db.commit()
    again = TelegramUser(800, "Rita", None, "rita", "en", False)
    for _ in range(2):
        await upsert_from_telegram(admin.db, again, start_param="ref_rita8")
        await admin.db.commit()
    await upsert_from_telegram(admin.db, again, start_param="ref_someone_else")  # not her own: not an attempt
    record(admin.db, actor_type="system", actor_id=None, action="referral.rejected", entity_type="user",
           entity_id=rita.id, after={"referrer_id": rita.id, "reason": "self or cycle"})  # fmt: skip
    await admin.db.commit()
    assert (await admin.db.get(User, rita.id)).referrer_id is None

    page = await owner.get("/admin/referrals", headers=EN)
    refused = page.text.split('id="refused"')[1].split("</section>")[0]
    assert refused.count('data-reason="self"') == 1 and refused.count('data-reason="cycle"') == 1
    assert f'href="/admin/users/{rita.id}"' in refused and "opened their own invitation link" in text_of(refused)
