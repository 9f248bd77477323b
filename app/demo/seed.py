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
        {"ru": "1 месяц", "en": "1 month", "hi": "1 महीना", "id": "1 bulan"},
        30,
        0,
        {"RUB": 19900, "USD": 299, "XTR": 150, "INR": 24900, "IDR": 4500000, "USDT": 2_990_000},
    ),
    (
        "quarter",
        {"ru": "3 месяца", "en": "3 months", "hi": "3 महीने", "id": "3 bulan"},
        90,
        10,
        {"RUB": 53700, "USD": 799, "XTR": 400, "INR": 66900, "IDR": 12000000, "USDT": 7_990_000},
    ),
    (
        "year",
        {"ru": "12 месяцев", "en": "12 months", "hi": "12 महीने", "id": "12 bulan"},
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

# Questions and answers per category, each in every customer language: (slug, {language: (question, answer)}).
FAQ = {
    "start": (
        {"ru": "Начало работы", "en": "Getting started", "hi": "शुरुआत", "id": "Memulai"},
        [
            (
                "what-is",
                {
                    "ru": ("Что такое этот VPN?", "Сервис на протоколе VLESS: быстрый и устойчивый к блокировкам."),
                    "en": ("What is this VPN?", "A VLESS-based service: fast and resistant to blocking."),
                    "hi": ("यह VPN क्या है?", "VLESS प्रोटोकॉल पर चलने वाली सेवा: तेज़ और ब्लॉकिंग से बचने में मज़बूत।"),
                    "id": ("VPN apa ini?", "Layanan berbasis protokol VLESS: cepat dan tahan terhadap pemblokiran."),
                },
            ),
            (
                "how-connect",
                {
                    "ru": (
                        "Как подключиться?",
                        "Откройте «Подключение», установите приложение для вашей системы и импортируйте ссылку.",
                    ),
                    "en": ("How do I connect?", "Open “Connect”, install the app for your system and import the link."),
                    "hi": ("कनेक्ट कैसे करें?", "“कनेक्ट” खोलें, अपने सिस्टम के लिए ऐप इंस्टॉल करें और लिंक इंपोर्ट करें।"),
                    "id": (
                        "Bagaimana cara terhubung?",
                        "Buka “Hubungkan”, pasang aplikasi untuk sistem Anda, lalu impor tautannya.",
                    ),
                },
            ),
            (
                "devices",
                {
                    "ru": (
                        "Как подключить iPhone, Android или компьютер?",
                        "Откройте «Подключение»: ваша система уже выбрана. Нажмите «Добавить в …» — приложение само"
                        " получит подписку. Для другого устройства там же есть ссылка и QR-код.",
                    ),
                    "en": (
                        "How do I connect an iPhone, Android or a computer?",
                        "Open “Connect”: your system is already picked. Tap “Add to …” and the app receives the"
                        " subscription itself. For another device, the link and a QR code are there too.",
                    ),
                    "hi": (
                        "iPhone, Android या कंप्यूटर कैसे कनेक्ट करें?",
                        "“कनेक्ट” खोलें: आपका सिस्टम पहले से चुना हुआ है। “… में जोड़ें” पर टैप करें — ऐप सदस्यता"
                        " अपने आप ले लेगा। दूसरे डिवाइस के लिए वहीं लिंक और QR कोड भी है।",
                    ),
                    "id": (
                        "Bagaimana cara menghubungkan iPhone, Android, atau komputer?",
                        "Buka “Hubungkan”: sistem Anda sudah terpilih. Ketuk “Tambahkan ke …” dan aplikasi akan"
                        " menerima langganan dengan sendirinya. Untuk perangkat lain, tautan dan kode QR juga"
                        " ada di sana.",
                    ),
                },
            ),
            (
                "import-link",
                {
                    "ru": (
                        "Как добавить ссылку в приложение?",
                        "Откройте «Подключение», нажмите «Скопировать ссылку», затем в приложении выберите «Добавить"
                        " из буфера» (или «+» → «Импорт из буфера»). Приложение само загрузит настройки.",
                    ),
                    "en": (
                        "How do I add the link to my app?",
                        "Open “Connect”, tap “Copy link”, then in your app choose “Import from clipboard”"
                        " (or “+” → “Import from clipboard”). The app loads the settings itself.",
                    ),
                    "hi": (
                        "ऐप में लिंक कैसे जोड़ें?",
                        "“कनेक्ट” खोलें, “लिंक कॉपी करें” पर टैप करें, फिर अपने ऐप में “Import from clipboard”"
                        " चुनें (या “+” → “Import from clipboard”)। ऐप सेटिंग्स अपने आप लोड कर लेगा।",
                    ),
                    "id": (
                        "Bagaimana cara menambahkan tautan ke aplikasi?",
                        "Buka “Hubungkan”, ketuk “Salin tautan”, lalu di aplikasi pilih “Import from clipboard”"
                        " (atau “+” → “Import from clipboard”). Aplikasi akan memuat pengaturannya sendiri.",
                    ),
                },
            ),
        ],
    ),
    "payment": (
        {"ru": "Оплата", "en": "Payment", "hi": "भुगतान", "id": "Pembayaran"},
        [
            (
                "how-pay",
                {
                    "ru": ("Как оплатить?", "Выберите тариф и способ оплаты; срок продлится сразу после оплаты."),
                    "en": (
                        "How do I pay?",
                        "Pick a plan and a payment method; your time is extended as soon as you pay.",
                    ),
                    "hi": (
                        "भुगतान कैसे करें?",
                        "प्लान और भुगतान का तरीका चुनें; भुगतान होते ही आपकी अवधि बढ़ जाती है। UPI से भी भुगतान कर सकते हैं।",
                    ),
                    "id": (
                        "Bagaimana cara membayar?",
                        "Pilih paket dan metode pembayaran; masa langganan bertambah begitu Anda membayar."
                        " Anda juga bisa membayar dengan QRIS.",
                    ),
                },
            ),
            (
                "after-payment",
                {
                    "ru": (
                        "Оплатил, но VPN не работает",
                        "Ключ создаётся в течение пары минут после оплаты. Подождите и запустите автодиагностику ещё"
                        " раз; если через 15 минут ничего не изменилось — напишите в поддержку.",
                    ),
                    "en": (
                        "I paid but the VPN does not work",
                        "Your key is created within a couple of minutes of payment. Wait, then run the"
                        " autodiagnostics again; if nothing changes within 15 minutes, contact support.",
                    ),
                    "hi": (
                        "भुगतान कर दिया, पर VPN नहीं चल रहा",
                        "भुगतान के कुछ ही मिनटों में आपकी की बन जाती है। थोड़ा रुकें, फिर ऑटो-जाँच दोबारा चलाएँ;"
                        " अगर 15 मिनट में कुछ न बदले, तो सपोर्ट से संपर्क करें।",
                    ),
                    "id": (
                        "Saya sudah membayar, tetapi VPN tidak berfungsi",
                        "Kunci Anda dibuat dalam beberapa menit setelah pembayaran. Tunggu, lalu jalankan diagnostik"
                        " otomatis lagi; jika tidak ada perubahan dalam 15 menit, hubungi dukungan.",
                    ),
                },
            ),
            (
                "auto-renew",
                {
                    "ru": ("Как отключить автопродление?", "В «Настройках» выключите автопродление."),
                    "en": ("How do I turn off auto-renewal?", "Switch auto-renewal off in Settings."),
                    "hi": ("ऑटो-रिन्यूअल कैसे बंद करें?", "सेटिंग्स में ऑटो-रिन्यूअल बंद कर दें।"),
                    "id": (
                        "Bagaimana cara mematikan perpanjangan otomatis?",
                        "Matikan perpanjangan otomatis di Pengaturan.",
                    ),
                },
            ),
        ],
    ),
    "trouble": (
        {"ru": "Не работает", "en": "Troubleshooting", "hi": "समस्या का हल", "id": "Mengatasi masalah"},
        [
            (
                "no-connect",
                {
                    "ru": ("VPN не подключается", "Запустите автодиагностику в разделе «Помощь»."),
                    "en": ("The VPN does not connect", "Run the autodiagnostics in Help."),
                    "hi": ("VPN कनेक्ट नहीं हो रहा", "मदद सेक्शन में ऑटो-जाँच चलाएँ।"),
                    "id": ("VPN tidak mau terhubung", "Jalankan diagnostik otomatis di Bantuan."),
                },
            ),
            (
                "server-unavailable",
                {
                    "ru": (
                        "Сервер недоступен — что делать?",
                        "Обычно это ненадолго: мы уже знаем о проблеме. Попробуйте другую локацию в приложении"
                        " или подождите 10–15 минут.",
                    ),
                    "en": (
                        "A server is unavailable — what now?",
                        "It is usually brief and we already know about it. Try another location in your app"
                        " or wait 10–15 minutes.",
                    ),
                    "hi": (
                        "सर्वर उपलब्ध नहीं है — अब क्या करें?",
                        "आमतौर पर यह थोड़ी देर के लिए होता है और हमें इसकी जानकारी है। ऐप में कोई दूसरी लोकेशन"
                        " आज़माएँ या 10–15 मिनट रुकें।",
                    ),
                    "id": (
                        "Server tidak tersedia — lalu bagaimana?",
                        "Biasanya hanya sebentar dan kami sudah mengetahuinya. Coba lokasi lain di aplikasi Anda"
                        " atau tunggu 10–15 menit.",
                    ),
                },
            ),
            (
                "switch-location",
                {
                    "ru": (
                        "Как сменить локацию?",
                        "В приложении откройте список серверов вашей подписки и выберите другой — все они входят"
                        " в подписку.",
                    ),
                    "en": (
                        "How do I switch location?",
                        "In your app, open your subscription's server list and pick another one — they are all"
                        " included.",
                    ),
                    "hi": (
                        "लोकेशन कैसे बदलें?",
                        "अपने ऐप में अपनी सदस्यता की सर्वर सूची खोलें और कोई दूसरा चुनें — सभी सदस्यता में शामिल हैं।",
                    ),
                    "id": (
                        "Bagaimana cara mengganti lokasi?",
                        "Di aplikasi Anda, buka daftar server langganan Anda dan pilih yang lain — semuanya sudah"
                        " termasuk.",
                    ),
                },
            ),
            (
                "refresh-subscription",
                {
                    "ru": (
                        "Как обновить подписку в приложении?",
                        "В приложении найдите подписку и нажмите «Обновить» (значок круговой стрелки)."
                        " Если не помогло — удалите её и добавьте ссылку из «Подключения» заново.",
                    ),
                    "en": (
                        "How do I refresh the subscription in my app?",
                        "Find the subscription in your app and tap “Update” (the circular-arrow icon)."
                        " If that does not help, delete it and add the link from “Connect” again.",
                    ),
                    "hi": (
                        "ऐप में सदस्यता कैसे रिफ़्रेश करें?",
                        "अपने ऐप में सदस्यता ढूँढें और “Update” (गोल तीर वाला आइकन) पर टैप करें। अगर इससे मदद न"
                        " मिले, तो उसे हटाकर “कनेक्ट” से लिंक फिर से जोड़ें।",
                    ),
                    "id": (
                        "Bagaimana cara memperbarui langganan di aplikasi?",
                        "Cari langganan di aplikasi Anda lalu ketuk “Update” (ikon panah melingkar). Jika tidak"
                        " membantu, hapus lalu tambahkan lagi tautan dari “Hubungkan”.",
                    ),
                },
            ),
            (
                "traffic-limit",
                {
                    "ru": (
                        "Закончился трафик",
                        "Когда лимит трафика исчерпан, VPN перестаёт работать до продления."
                        " Продлите подписку или выберите тариф с большим лимитом.",
                    ),
                    "en": (
                        "I ran out of traffic",
                        "Once the traffic allowance is used up, the VPN stops until you renew."
                        " Renew, or choose a plan with a larger allowance.",
                    ),
                    "hi": (
                        "ट्रैफ़िक खत्म हो गया",
                        "ट्रैफ़िक की सीमा पूरी होने पर VPN रिन्यू होने तक रुक जाता है। सदस्यता रिन्यू करें या"
                        " ज़्यादा ट्रैफ़िक वाला प्लान चुनें।",
                    ),
                    "id": (
                        "Kuota saya habis",
                        "Begitu kuota habis, VPN berhenti sampai Anda memperpanjang. Perpanjang langganan, atau pilih"
                        " paket dengan kuota lebih besar.",
                    ),
                },
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
        for position, (item_slug, texts) in enumerate(items):
            session.add_all(
                FaqItem(
                    category_id=category.id,
                    slug=item_slug,
                    language=language,
                    question=question,
                    answer=answer,
                    sort_order=position,
                )
                for language, (question, answer) in texts.items()
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
