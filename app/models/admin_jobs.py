"""Long staff operations that outlive one request: bulk actions over customers (previewed by a dry run, then run
by a job with progress and a report) and Excel exports (built by a job, then downloaded)."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, LargeBinary, String, Text, func, text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigId, CreatedMixin, IdMixin, str_enum
from app.models.panels import VpnAccount
from app.models.payments import Payment
from app.models.subscriptions import Subscription
from app.models.users import User


class JobState(enum.StrEnum):
    PREVIEWED = "previewed"  # a bulk action's dry run, not started
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class BulkRun(IdMixin, CreatedMixin, Base):
    """A bulk action: the dry run fixes exactly whom it acts on (`user_ids`); the real run acts on those only."""

    __tablename__ = "bulk_runs"

    staff_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("staff.id", ondelete="SET NULL"))
    action: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The table's filters (or the selection) it came from, as URL parameters: shown in the report.
    source: Mapped[dict[str, Any]] = mapped_column(default=dict)
    user_ids: Mapped[list[Any]]
    # The dry run's verdict per customer: {"<user id>": "change" | "skip: <why>"}.
    preview: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[JobState] = mapped_column(str_enum(JobState, "admin_job_state"))
    processed: Mapped[int] = mapped_column(Integer, default=0)
    changed: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    # {"<user id>": "changed" | "skipped: …" | "failed: …"} as the run goes.
    report: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_bulk_runs_staff_created", "staff_id", "created_at"),)


class ExportFile(IdMixin, CreatedMixin, Base):
    """An Excel export: the filters it was asked with, and the file once the job has built it."""

    __tablename__ = "export_files"

    staff_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("staff.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(32))  # customers | payments
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[JobState] = mapped_column(str_enum(JobState, "export_state"))
    row_count: Mapped[int] = mapped_column(Integer, default=0)
    file_name: Mapped[str | None] = mapped_column(String(128))
    content: Mapped[bytes | None] = mapped_column(LargeBinary)
    error: Mapped[str | None] = mapped_column(Text)
    finished_at: Mapped[datetime | None]
    # Asked to send the file to the staff member's Telegram too: that chat, and when the bot delivered it.
    telegram_chat_id: Mapped[int | None] = mapped_column(BigInteger)
    sent_to_telegram_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_export_files_staff_created", "staff_id", "created_at"),)


# The customers table's search box finds a customer by a panel username or a payment's id pasted from the
# provider's dashboard; the existing unique constraints lead with the server / provider, so they cannot serve it.
# Declared here, beside the admin's other schema, so the domains' model files stay as they are.
Index("ix_vpn_accounts_panel_username", VpnAccount.panel_username)
Index("ix_payments_external_id", Payment.external_id)
# Jobs and reports find subscriptions by their end.
Index("ix_subscriptions_ends_at", Subscription.ends_at)
# The customers table sorted by end date walks the users' copy of it (a keyset on end, id).
Index("ix_users_current_ends_at", User.current_ends_at, User.id)
# The "blocked" filter and segment: a few hundred customers among 100,000, newest first, without a scan of all.
# Partial on the literal condition the query spells, so PostgreSQL can prove it.
BLOCKED = text("is_blocked IS true")
Index("ix_users_blocked_created_at", User.created_at, User.id, postgresql_where=BLOCKED, sqlite_where=BLOCKED)
# The search box's @username, matched case-insensitively. PostgreSQL only: SQLite's lower() is replaced by ours
# (app/db.py, for Cyrillic), and an index must not depend on a function the connection defines.
Index("ix_users_username_lower", func.lower(User.username)).ddl_if(dialect="postgresql")
# A customer's current subscription (the one ending last, pending checkouts aside) as a top-1 read of this index,
# for each row the customers table passes. Partial on a literal condition, which the query repeats literally, so
# PostgreSQL can prove it even in a generic plan.
NOT_PENDING = text("status <> 'pending'")
Index(
    "ix_subscriptions_user_current",
    Subscription.user_id,
    Subscription.ends_at,
    Subscription.id,
    postgresql_where=NOT_PENDING,
    sqlite_where=NOT_PENDING,
)
