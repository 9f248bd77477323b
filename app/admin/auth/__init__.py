"""The admin's sign-in: password (+ TOTP), Telegram initData, bearer tokens for the JSON API."""
