"""/admin/promo and /api/admin/promo: promo codes, their redemptions, revenue and discount."""
