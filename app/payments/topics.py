"""Outbox topics of the payments domain that other domains queue (kept apart to avoid import cycles)."""

CANCEL_RECURRING_TOPIC = "payments.cancel_recurring"
