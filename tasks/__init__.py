"""Background jobs. Importing this package registers every job on `app.kit.jobs.registry`."""

from tasks import maintenance, outbox, panels, payments  # noqa: F401  (registers their jobs)
