"""Database backups and restores (SPEC §12, §13.5): pg_dump's custom format for PostgreSQL, SQLite's online
backup API for the demo, each file published atomically beside a JSON manifest with its checksum."""
