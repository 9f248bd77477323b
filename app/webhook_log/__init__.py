"""The record of webhooks received (payment providers and panels) with our verdict, shown in /admin/system."""
