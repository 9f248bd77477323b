"""/api/admin/stats: the dashboard's and the finance page's figures as JSON."""
