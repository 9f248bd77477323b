"""The referral program as the customer sees it: links, counts, bonus days, history, leaderboard."""
