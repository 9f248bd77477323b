"""Outbox topics of the payments domain that other domains queue (kept apart to avoid import cycles)."""

CANCEL_RECURRING_TOPIC = "payments.cancel_recurring"
# The demo provider delivering its notification to our webhook, like a real provider would (queued by its pay page).
DEMO_DELIVER_TOPIC = "demo_payments.deliver"
