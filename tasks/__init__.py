"""Background jobs. Importing this package registers every job on `app.kit.jobs.registry`."""

from tasks import backups, broadcasts, maintenance, outbox, panels, payments, subscriptions  # noqa: F401  (registers their jobs)
