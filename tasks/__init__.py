"""Background jobs. Importing this package registers every job on `app.kit.jobs.registry`."""

# Imported for what importing them does: each module registers its jobs (admin_payments, an export kind).
from tasks import (  # noqa: F401
    admin_customers,
    admin_payments,
    backups,
    broadcasts,
    maintenance,
    outbox,
    panels,
    payments,
    stats,
    subscriptions,
)
