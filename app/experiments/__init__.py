"""A/B experiments on a plan's price or a text (SPEC §10.5, issue 14).

assignment.py which variant a customer gets: a stable hash of the experiment's key and the customer's id,
              recorded at first exposure (insert-on-conflict, so the recorded variant is final)
service.py    create, start, stop (audited), and what checkout and texts read: the customer's price or text
stats.py      conversion per variant (exposed → paid within N days), its Wilson interval, P(beats control)
"""
