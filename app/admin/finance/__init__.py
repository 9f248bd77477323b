"""/admin/finance: revenue, MRR, churn, LTV, cohorts and conversion, from app/stats/finance.py."""
