"""Broadcasts: news and promotions to an audience segment, sent at Telegram's limits, pausable, resumable after a
crash without sending anything twice (SPEC §9, §10.5).

markup.py    the Telegram-HTML check of a body
segments.py  who gets it (SQL: counted and materialized without Python loops)
rendering.py what each language's recipients see (text and button)
service.py   create, preview, test send, start / pause / resume / cancel, progress (no HTTP)
lease.py     one sender at a time: the lease, its renewal, handover, takeover from a dead worker
sender.py    run_broadcast: claim a group, send it, record its outcomes, repeat
cli.py       `vpnshop broadcast ...`
"""
