"""Background jobs. Importing this package registers every job on `app.kit.jobs.registry`."""

from tasks import admin_customers, backups, broadcasts, maintenance, outbox, panels, payments, stats, subscriptions  # noqa: F401  (registers their jobs)
