"""/admin/referrals: the referral program's figures, top referrers, suspicious patterns and each referrer's friends."""
