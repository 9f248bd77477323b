"""The catalog check: every customer-facing key in every language (the staff pages only in ru and en), the same
placeholders in every translation, every plural entry with the categories its language's counts reach (from
CLDR through Babel), and no key that nothing uses."""

from __future__ import annotations

import re
import string
from pathlib import Path
from typing import Any

from babel import Locale

from app.kit.i18n import ADMIN_LANGUAGES, available_languages, catalog, integer_plural_forms

ROOT = Path(__file__).resolve().parent.parent.parent
CUSTOMER_LANGUAGES = ("ru", "en", "hi", "id")
# Texts only staff read (the admin, staff alerts in the bot, broadcast bookkeeping): ru and en are enough.
STAFF_ONLY_PREFIXES = ("admin.", "admin_", "staff.", "broadcast.status.", "broadcast.segment.")
# Where the code and templates use keys: every key must be spelt out somewhere here, or built from one of the
# DYNAMIC_PREFIXES below.
SOURCES = ("app/**/*.py", "bot/**/*.py", "tasks/**/*.py", "webapp/templates/**/*.html", "webapp/static/*.js")
# Keys built at run time from a prefix and a value, each with where it is built. A prefix that no source spells
# any more fails test_dynamic_prefixes_are_still_built, so this list cannot outlive the code.
DYNAMIC_PREFIXES = {
    "bot.command.": "bot/main.py: the command menu, one entry per command",
    "checkout.error.": "app/checkout/pages.py: a refused payment's error code",
    "checkout.promo.": "app/checkout/pages.py, checkout/plan.html: a refused promo code's reason",
    "checkout.method.": "app/checkout/pages.py, views.py: provider and provider.method",
    "checkout.paid_with.": "app/checkout/pages.py: the method a payment went through",
    "checkout.failed.title.": "checkout/payment.html: the payment's status",
    "checkout.failed.text.": "checkout/payment.html: the payment's status",
    "checkout.result.title.": "checkout/result.html: the payment's status",
    "checkout.result.text.": "checkout/result.html: the payment's status",
    "checkout.currency.": "checkout/plans.html: the currency switch's labels",
    "connect.platform.": "app/connect/clients.py, connect/index.html: the platform code",
    "connect.store.": "components/connect_guides.html, connect/index.html: the store kind",
    "connect.step.": "app/connect/clients.py: a guide's steps by kind, client and platform",
    "connect.img.": "app/connect/clients.py: a guide step's picture",
    "demo_pay.status.": "checkout/demo_pay.html: the demo invoice's status",
    "diag.account.": "app/diagnostics/service.py: the panel account's status",
    "diag.check.": "app/diagnostics/service.py, help/index.html: a check's code",
    "diag.outcome.": "app/diagnostics/service.py, help/index.html: a check's outcome",
    "diag.overall.": "help/index.html: the report's outcome",
    "error.title.": "error.html: an error's code",
    "error.code.": "error.html: an error's code",
    "home.status.": "cabinet/home.html: the subscription's status",
    "login.error.": "auth/login.html: a failed sign-in's code",
    "nav.": "components/ui.html: the navigation's sections",
    "notify.": "app/notifications/texts.py, app/outbox/service.py: the notification's kind",
    "referral.board.period.": "referrals/index.html: the leaderboard's periods",
    "referral.history.": "referrals/index.html: a history row's kind",
    "settings.language.": "cabinet/settings.html: each language's own name",
    "staff.": "app/notifications/handlers.py: a staff alert's kind",
    "admin.audit.": "admin/audit/list.html: filters and actions",
    "admin_referrals.refused_reason.": "admin/referrals/index.html: why a referral was refused",
    "admin.nav.": "admin/base.html: the sidebar's sections",
    "admin.role.": "admin/base.html, staff pages: a staff member's role",
    "admin_payments.status.": "admin/payments templates: a payment's status",
    "admin_payments.filter.": "admin/payments/list.html: the filter fields",
    "admin_users.status.": "admin/users templates: a subscription's status",
    "admin_users.segment.": "admin/users/list.html: the segments",
    "admin_users.flag.": "admin/users/list.html: the flags",
    "admin_users.col.": "admin/users/list.html: the columns",
    "admin_users.field.": "admin/users/bulk.html: the bulk form's fields",
    "admin_users.bulk.do.": "admin/users templates: the bulk actions",
    "admin_users.sort_note.": "admin/users/list.html: the sort notes",
    "admin_payments.refund_status.": "admin/payments/detail.html: a refund's status",
    "admin_broadcasts.count.": "admin/broadcasts/progress.html: the live figures",
    "admin_broadcasts.segment.": "admin/broadcasts/new.html: the segments",
    "admin_broadcasts.status.": "admin/broadcasts list and detail: a broadcast's status",
    "admin_experiments.done.": "app/admin/experiments/pages.py: the toast after start or stop",
    "admin_experiments.state.": "admin/experiments list and detail: an experiment's state",
    "admin_providers.field.": "admin/providers/list.html: a provider's credential and option fields",
    "admin_providers.source.": "admin/providers/list.html: where a value comes from",
    "admin_providers.verdict.": "admin/providers/list.html: a connection test's verdict",
    "admin_finance.by.": "admin/finance/index.html: the breakdown links",
    "admin_finance.granularity.": "app/admin/finance/views.py: the revenue card's period",
    "admin_promo.redemption.": "admin/promo/edit.html: a redemption's status",
    "admin_servers.orphans.": "admin/servers/orphans.html: ours or foreign",
    "admin_settings.group.": "admin/settings/index.html: the setting groups",
    "admin_settings.help.": "admin/settings/index.html: a setting's hint",
    "admin_settings.key.": "admin/settings/index.html: a setting's label",
    "admin_system.source.": "admin/system/index.html: a webhook's source",
    "admin_system.status.": "admin/system/index.html: an outbox message's status",
    "admin_system.verdict.": "admin/system/index.html: a webhook's verdict",
}
# Staff texts kept for admin sections built alongside this one (broadcasts' statuses and segments by value, a
# shared Cancel button); take each off once a merged page spells or builds it.
RESERVED = ("admin.cancel", "broadcast.status.", "broadcast.segment.")
_FORMATTER = string.Formatter()


def _placeholders(entry: Any) -> set[str]:
    texts = entry.values() if isinstance(entry, dict) else [entry]
    return {name for text in texts for _, name, _, _ in _FORMATTER.parse(text) if name is not None}


def _customer_keys() -> set[str]:
    return {key for key in catalog("en") if not key.startswith(STAFF_ONLY_PREFIXES)}


def test_every_language_is_there() -> None:
    assert set(CUSTOMER_LANGUAGES) <= set(available_languages())
    assert set(ADMIN_LANGUAGES) <= set(CUSTOMER_LANGUAGES)


def test_staff_languages_have_the_same_keys() -> None:
    assert set(catalog("ru")) == set(catalog("en"))


def test_every_customer_text_in_every_language() -> None:
    wanted = _customer_keys()
    for language in CUSTOMER_LANGUAGES:
        missing = sorted(wanted - set(catalog(language)))
        assert not missing, f"{language} lacks {missing}"
        extra = sorted(set(catalog(language)) - set(catalog("en")))
        assert not extra, f"{language} has keys English does not: {extra}"


def test_every_translation_has_the_same_placeholders() -> None:
    english = catalog("en")
    for language in CUSTOMER_LANGUAGES:
        for key, entry in catalog(language).items():
            assert _placeholders(entry) == _placeholders(english[key]), f"{language}: {key}"


def test_plural_entries_have_the_categories_their_language_needs() -> None:
    for language in CUSTOMER_LANGUAGES:
        needed = integer_plural_forms(language)
        known = set(Locale.parse(language).plural_form.tags) | {"other"}
        for key, entry in catalog(language).items():
            if isinstance(entry, dict):
                assert needed <= entry.keys(), f"{language}: {key} lacks {sorted(needed - entry.keys())}"
                assert entry.keys() <= known, f"{language}: {key} has {sorted(entry.keys() - known)}"
                assert all(isinstance(text, str) and text for text in entry.values()), f"{language}: {key}"


def test_the_categories_come_from_cldr() -> None:
    assert integer_plural_forms("ru") == {"one", "few", "many"}
    assert integer_plural_forms("en") == integer_plural_forms("hi") == {"one", "other"}
    assert integer_plural_forms("id") == {"other"}


def _source_text() -> str:
    return "\n".join(path.read_text(encoding="utf-8") for pattern in SOURCES for path in sorted(ROOT.glob(pattern)))


def test_no_unused_keys() -> None:
    literals = set(re.findall(r"""["']([A-Za-z_][\w.\-]*)["']""", _source_text()))
    keys = set().union(*(catalog(language) for language in available_languages()))
    unused = sorted(key for key in keys if key not in literals and not key.startswith((*DYNAMIC_PREFIXES, *RESERVED)))
    assert not unused, f"keys nothing uses: {unused}"


def test_dynamic_prefixes_are_still_built() -> None:
    text = _source_text()
    stale = [prefix for prefix in DYNAMIC_PREFIXES if f'"{prefix}' not in text and f"'{prefix}" not in text]
    assert not stale, f"no source builds keys from {stale}: take them off DYNAMIC_PREFIXES"
