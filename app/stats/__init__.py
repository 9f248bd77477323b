"""Business figures, each defined once (ADMIN.md "Numbers that must be right"): the daily activity record, the
daily rollup the worker maintains, revenue per currency and in the reporting currency, and the dashboard's live
figures and alerts. Pages and the JSON API read figures from here and never count anything themselves."""
