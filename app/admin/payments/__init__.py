"""Payments in the admin: the list (filters, keyset pages, CSV), one payment's page, and the JSON API."""
