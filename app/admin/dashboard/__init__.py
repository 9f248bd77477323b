"""The dashboard at /admin: today's figures (refreshing themselves), growth charts, server status, the latest
payments and alerts. The figures come from app/stats; this package only arranges them for the page."""
