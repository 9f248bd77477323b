"""Runtime settings: the business values staff change in the admin (/admin/settings) without a restart.

Not to be confused with `app.config.Settings` (environment, read once per process): each value here takes its
default from that object and may be overridden by a `SystemSetting` row. Readers ask `service.current(...)`
for a snapshot; every process (web workers, the worker, the bot) reads the table itself, so a change is seen
everywhere at the next use, never cached past `service.CACHE_SECONDS`."""
