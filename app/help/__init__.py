"""The FAQ and the customer's Help page (SPEC §3.6)."""
