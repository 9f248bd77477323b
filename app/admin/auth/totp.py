"""TOTP second factor (RFC 6238, 30-second steps, 6 digits) with pyotp. The secret is stored encrypted, and
the last accepted step is remembered so a code seen over someone's shoulder cannot be used again."""

from __future__ import annotations

import hashlib
import hmac

import pyotp

from app.kit.clock import utcnow
from app.kit.crypto import cipher

ISSUER = "vpnshop admin"
# One step either side: phones whose clocks are up to 30 s off still work.
VALID_WINDOW = 1
ENROL_TICKET_SECONDS = 15 * 60


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, username: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=ISSUER)


def encrypt_secret(secret: str) -> str:
    return cipher().encrypt(secret)


def decrypt_secret(stored: str) -> str:
    return cipher().decrypt(stored)


def matching_step(secret: str, code: str, *, after: int | None) -> int | None:
    """The time step `code` belongs to (within the window), if it is later than `after`; else None."""
    code = (code or "").strip().replace(" ", "")
    if not (code.isdigit() and len(code) == 6):
        return None
    generator = pyotp.TOTP(secret)
    now_step = int(utcnow().timestamp()) // generator.interval
    for step in range(now_step - VALID_WINDOW, now_step + VALID_WINDOW + 1):
        if (after is None or step > after) and hmac.compare_digest(generator.generate_otp(step), code):
            return step
    return None


def current_code(secret: str) -> str:
    """The code an authenticator app shows now (tests, and the demo's hint)."""
    generator = pyotp.TOTP(secret)
    return generator.generate_otp(int(utcnow().timestamp()) // generator.interval)


# --- enrolment tickets: the not-yet-confirmed secret travels in the form, signed, so nothing is stored -------


def enrol_ticket(staff_id: int, secret: str, secret_key: str, *, now: float | None = None) -> str:
    expires = int((now or utcnow().timestamp()) + ENROL_TICKET_SECONDS)
    mac = hmac.new(secret_key.encode(), f"totp-enrol:{staff_id}:{secret}:{expires}".encode(), hashlib.sha256)
    return f"{staff_id}.{expires}.{mac.hexdigest()}"


def check_ticket(ticket: str, secret: str, secret_key: str, *, now: float | None = None) -> int | None:
    """The staff id a valid, unexpired ticket was issued to for `secret`; None otherwise."""
    try:
        staff_id, expires, mac = ticket.split(".")
        staff, until = int(staff_id), int(expires)
    except ValueError:
        return None
    expected = hmac.new(secret_key.encode(), f"totp-enrol:{staff}:{secret}:{until}".encode(), hashlib.sha256)
    if not hmac.compare_digest(expected.hexdigest(), mac) or until < (now or utcnow().timestamp()):
        return None
    return staff
