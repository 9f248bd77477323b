"""Demo data: plans, FAQ, a demo customer and a demo staff account — written only into an empty database —
and two promo codes to try at checkout, written whenever there are no promo codes at all."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.passwords import hash_password
from app.models import FaqCategory, FaqItem, Plan, PlanPrice, PromoCode, PromoKind, Staff, StaffRole, User

DEMO_CUSTOMER_TELEGRAM_ID = 100_000_001
DEMO_STAFF_USERNAME = "demo-admin"
DEMO_STAFF_PASSWORD = "demo-admin-password"

# (code, names, days, discount %, prices in minor units per currency)
PLANS = [
    (
        "month",
        {"ru": "1 месяц", "en": "1 month"},
        30,
        0,
        {"RUB": 19900, "USD": 299, "XTR": 150, "INR": 24900, "IDR": 4500000, "USDT": 2_990_000},
    ),
    (
        "quarter",
        {"ru": "3 месяца", "en": "3 months"},
        90,
        10,
        {"RUB": 53700, "USD": 799, "XTR": 400, "INR": 66900, "IDR": 12000000, "USDT": 7_990_000},
    ),
    (
        "year",
        {"ru": "12 месяцев", "en": "12 months"},
        365,
        25,
        {"RUB": 179000, "USD": 2699, "XTR": 1350, "INR": 224900, "IDR": 40000000, "USDT": 26_990_000},
    ),
]

# Codes to try at checkout: a discount and extra days, each once per customer, any number of customers.
PROMO_CODES = [
    {"code": "DEMO20", "kind": PromoKind.PERCENT, "percent": Decimal(20)},
    {"code": "WELCOME7", "kind": PromoKind.DAYS, "extra_days": 7},
]

FAQ = {
    "start": (
        {"ru": "Начало работы", "en": "Getting started"},
        [
            (
                "what-is",
                "Что такое этот VPN?",
                "Сервис на протоколе VLESS: быстрый и устойчивый к блокировкам.",
                "What is this VPN?",
                "A VLESS-based service: fast and resistant to blocking.",
            ),
            (
                "how-connect",
                "Как подключиться?",
                "Откройте «Подключение», установите приложение для вашей системы и импортируйте ссылку.",
                "How do I connect?",
                "Open “Connect”, install the app for your system and import the link.",
            ),
            (
                "devices",
                "Как подключить iPhone, Android или компьютер?",
                "Откройте «Подключение»: ваша система уже выбрана. Нажмите «Добавить в …» — приложение само получит"
                " подписку. Для другого устройства там же есть ссылка и QR-код.",
                "How do I connect an iPhone, Android or a computer?",
                "Open “Connect”: your system is already picked. Tap “Add to …” and the app receives the subscription"
                " itself. For another device, the link and a QR code are there too.",
            ),
            (
                "import-link",
                "Как добавить ссылку в приложение?",
                "Откройте «Подключение», нажмите «Скопировать ссылку», затем в приложении выберите «Добавить из буфера»"
                " (или «+» → «Импорт из буфера»). Приложение само загрузит настройки.",
                "How do I add the link to my app?",
                "Open “Connect”, tap “Copy link”, then in your app choose “Import from clipboard”"
                " (or “+” → “Import from clipboard”). The app loads the settings itself.",
            ),
        ],
    ),
    "payment": (
        {"ru": "Оплата", "en": "Payment"},
        [
            (
                "how-pay",
                "Как оплатить?",
                "Выберите тариф и способ оплаты; срок продлится сразу после оплаты.",
                "How do I pay?",
                "Pick a plan and a payment method; your time is extended as soon as you pay.",
            ),
            (
                "after-payment",
                "Оплатил, но VPN не работает",
                "Ключ создаётся в течение пары минут после оплаты. Подождите и запустите автодиагностику ещё раз;"
                " если через 15 минут ничего не изменилось — напишите в поддержку.",
                "I paid but the VPN does not work",
                "Your key is created within a couple of minutes of payment. Wait, then run the autodiagnostics"
                " again; if nothing changes within 15 minutes, contact support.",
            ),
            (
                "auto-renew",
                "Как отключить автопродление?",
                "В «Настройках» выключите автопродление.",
                "How do I turn off auto-renewal?",
                "Switch auto-renewal off in Settings.",
            ),
        ],
    ),
    "trouble": (
        {"ru": "Не работает", "en": "Troubleshooting"},
        [
            (
                "no-connect",
                "VPN не подключается",
                "Запустите автодиагностику в разделе «Помощь».",
                "The VPN does not connect",
                "Run the autodiagnostics in Help.",
            ),
            (
                "server-unavailable",
                "Сервер недоступен — что делать?",
                "Обычно это ненадолго: мы уже знаем о проблеме. Попробуйте другую локацию в приложении"
                " или подождите 10–15 минут.",
                "A server is unavailable — what now?",
                "It is usually brief and we already know about it. Try another location in your app"
                " or wait 10–15 minutes.",
            ),
            (
                "switch-location",
                "Как сменить локацию?",
                "В приложении откройте список серверов вашей подписки и выберите другой — все они входят в подписку.",
                "How do I switch location?",
                "In your app, open your subscription's server list and pick another one — they are all included.",
            ),
            (
                "refresh-subscription",
                "Как обновить подписку в приложении?",
                "В приложении найдите подписку и нажмите «Обновить» (значок круговой стрелки)."
                " Если не помогло — удалите её и добавьте ссылку из «Подключения» заново.",
                "How do I refresh the subscription in my app?",
                "Find the subscription in your app and tap “Update” (the circular-arrow icon)."
                " If that does not help, delete it and add the link from “Connect” again.",
            ),
            (
                "traffic-limit",
                "Закончился трафик",
                "Когда лимит трафика исчерпан, VPN перестаёт работать до продления."
                " Продлите подписку или выберите тариф с большим лимитом.",
                "I ran out of traffic",
                "Once the traffic allowance is used up, the VPN stops until you renew."
                " Renew, or choose a plan with a larger allowance.",
            ),
        ],
    ),
}


async def seed_promo_codes(session: AsyncSession) -> bool:
    """The demo promo codes, unless the shop has promo codes of its own already."""
    if await session.scalar(select(func.count()).select_from(PromoCode)):
        return False
    session.add_all(PromoCode(**fields, max_uses=None, once_per_user=True, is_active=True) for fields in PROMO_CODES)
    await session.flush()
    return True


async def seed_demo(session: AsyncSession) -> bool:
    """Fill an empty database with demo data; returns False (and writes nothing but missing promo codes) if
    it has plans already."""
    await seed_promo_codes(session)
    if await session.scalar(select(func.count()).select_from(Plan)):
        return False
    for order, (code, names, days, discount, prices) in enumerate(PLANS):
        plan = Plan(
            code=code,
            name=names,
            duration_days=days,
            discount_percent=discount,
            sort_order=order,
            device_limit=3,
            features={"protocols": ["vless"]},
        )
        session.add(plan)
        await session.flush()
        session.add_all(PlanPrice(plan_id=plan.id, currency=cur, amount_minor=amount) for cur, amount in prices.items())
    for order, (slug, (titles, items)) in enumerate(FAQ.items()):
        category = FaqCategory(slug=slug, titles=titles, sort_order=order)
        session.add(category)
        await session.flush()
        for position, (item_slug, q_ru, a_ru, q_en, a_en) in enumerate(items):
            session.add(
                FaqItem(
                    category_id=category.id,
                    slug=item_slug,
                    language="ru",
                    question=q_ru,
                    answer=a_ru,
                    sort_order=position,
                )
            )
            session.add(
                FaqItem(
                    category_id=category.id,
                    slug=item_slug,
                    language="en",
                    question=q_en,
                    answer=a_en,
                    sort_order=position,
                )
            )
    session.add(
        User(
            telegram_id=DEMO_CUSTOMER_TELEGRAM_ID,
            username="demo_customer",
            first_name="Demo",
            last_name="Customer",
            language="ru",
            referral_code="demo",
            is_demo=True,
        )
    )
    session.add(
        Staff(
            username=DEMO_STAFF_USERNAME,
            password_hash=hash_password(DEMO_STAFF_PASSWORD),
            role=StaffRole.OWNER,
            is_demo=True,
        )
    )
    await session.flush()
    return True
