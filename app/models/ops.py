"""Operational tables: the outbox of external side effects, the audit log, job runs, A/B experiments."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.kit.clock import utcnow
from app.models.base import Base, BigId, CreatedMixin, IdMixin, str_enum


class OutboxStatus(enum.StrEnum):
    PENDING = "pending"
    DONE = "done"
    DEAD = "dead"


class OutboxMessage(IdMixin, CreatedMixin, Base):
    """An external side effect (panel call, Telegram message, provider charge) written in the same
    transaction as the state change that caused it, and dispatched until done."""

    __tablename__ = "outbox"

    topic: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]]
    # Messages with the same ordering key run one at a time, oldest first (e.g. "account:42").
    ordering_key: Mapped[str | None] = mapped_column(String(128))
    dedupe_key: Mapped[str | None] = mapped_column(String(191), unique=True)
    status: Mapped[OutboxStatus] = mapped_column(str_enum(OutboxStatus, "outbox_status"))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    available_at: Mapped[datetime] = mapped_column(default=utcnow)
    locked_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    done_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_outbox_due", "status", "available_at"),
        Index("ix_outbox_ordering", "ordering_key", "id"),
    )


class AuditLog(IdMixin, CreatedMixin, Base):
    __tablename__ = "audit_log"

    actor_type: Mapped[str] = mapped_column(String(16))  # staff | user | system | provider
    actor_id: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    entity_type: Mapped[str] = mapped_column(String(64))
    entity_id: Mapped[str | None] = mapped_column(String(64))
    before: Mapped[dict[str, Any] | None]
    after: Mapped[dict[str, Any] | None]
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))

    __table_args__ = (
        Index("ix_audit_log_entity", "entity_type", "entity_id"),
        Index("ix_audit_log_created_at", "created_at"),
        # The admin's audit page filters by staff member and by action (issue 12).
        Index("ix_audit_log_actor", "actor_type", "actor_id", "created_at"),
        Index("ix_audit_log_action", "action", "created_at"),
    )


class JobRun(IdMixin, Base):
    __tablename__ = "job_runs"

    job_name: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    outcome: Mapped[str] = mapped_column(String(16))  # running | ok | failed
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_job_runs_name_started", "job_name", "started_at"),)


class ExperimentKind(enum.StrEnum):
    PRICE = "price"  # target: a plan's code; a variant's params: {"prices": {"RUB": 19900, ...}} (minor units)
    TEXT = "text"  # target: a text key; a variant's params: {"text": {"ru": ..., "en": ...}}


class WebhookReceipt(IdMixin, Base):
    """One webhook delivery from a payment provider or a panel and our verdict on it: accepted, refused (bad
    signature, stale, malformed: and why) or failed (we could not finish; the sender retries). Written in its
    own transaction, so a refusal is kept although the request's work is rolled back (/admin/system)."""

    __tablename__ = "webhook_receipts"

    source: Mapped[str] = mapped_column(String(16))  # payment | panel
    sender: Mapped[str] = mapped_column(String(64))  # the provider's name, or the server's id
    verdict: Mapped[str] = mapped_column(String(16))  # accepted | refused | failed
    status_code: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_webhook_receipts_received_at", "received_at"),)


class Experiment(IdMixin, CreatedMixin, Base):
    """An A/B experiment (app/experiments/). The first variant is the control. Draft until started (started_at
    set, is_active true), running until stopped (is_active false, ended_at set); never restarted, so the
    assignments of one run are never mixed with another's."""

    __tablename__ = "experiments"

    key: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[ExperimentKind] = mapped_column(str_enum(ExperimentKind, "experiment_kind"))
    target: Mapped[str] = mapped_column(String(128))
    variants: Mapped[list[Any]]  # [{"key": "a", "weight": 50, "params": {...}}, ...]
    # A conversion: a payment that succeeded within this many days of the customer's first exposure.
    conversion_days: Mapped[int] = mapped_column(Integer, default=14)
    is_active: Mapped[bool] = mapped_column(default=False)
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_experiments_kind_target", "kind", "target"),)


class ExperimentAssignment(IdMixin, Base):
    __tablename__ = "experiment_assignments"

    experiment_id: Mapped[int] = mapped_column(BigId, ForeignKey("experiments.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"))
    variant: Mapped[str] = mapped_column(String(32))
    assigned_at: Mapped[datetime] = mapped_column(default=utcnow)
    converted_at: Mapped[datetime | None]

    __table_args__ = (UniqueConstraint("experiment_id", "user_id"),)
