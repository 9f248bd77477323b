"""Column encryption with ENCRYPTION_KEY (Fernet), with key rotation: the first key encrypts, every key decrypts."""

from __future__ import annotations

import hashlib
import hmac

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class DecryptionError(Exception):
    """A stored value cannot be decrypted with any configured key."""


class Cipher:
    def __init__(self, keys: list[str], fingerprint_secret: str) -> None:
        if not keys:
            raise ValueError("at least one encryption key is required")
        self._fernet = MultiFernet([Fernet(key.encode()) for key in keys])
        # Fingerprints must survive key rotation, so they are keyed by SECRET_KEY, not ENCRYPTION_KEY.
        self._fingerprint_key = hashlib.sha256(b"vpnshop-fingerprint:" + fingerprint_secret.encode()).digest()

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise DecryptionError("value cannot be decrypted with the configured ENCRYPTION_KEY") from None

    def rotate(self, token: str) -> str:
        """Re-encrypt a stored value with the current (first) key."""
        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken:
            raise DecryptionError("value cannot be decrypted with the configured ENCRYPTION_KEY") from None

    def fingerprint(self, plaintext: str) -> str:
        """A keyed hash for unique constraints over encrypted values (encryption itself is randomized)."""
        return hmac.new(self._fingerprint_key, plaintext.encode(), hashlib.sha256).hexdigest()


def new_key() -> str:
    return Fernet.generate_key().decode()


_cipher: Cipher | None = None


def configure_cipher(keys: list[str], fingerprint_secret: str) -> Cipher:
    global _cipher
    _cipher = Cipher(keys, fingerprint_secret)
    return _cipher


def cipher() -> Cipher:
    """The process cipher set up at start-up from ENCRYPTION_KEY."""
    if _cipher is None:
        raise RuntimeError("encryption is not configured: call configure_cipher() at start-up")
    return _cipher


def token_hash(token: str) -> str:
    """How a bearer secret (a session cookie, an API token) is stored: its SHA-256, never the secret itself."""
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_token(session_token: str, secret_key: str, *, label: bytes) -> str:
    """A CSRF token derived from a session token; the label keeps one area's tokens from fitting another's."""
    return hmac.new(secret_key.encode(), label + session_token.encode(), hashlib.sha256).hexdigest()


def csrf_valid(submitted: str | None, session_token: str, secret_key: str, *, label: bytes) -> bool:
    return bool(submitted) and hmac.compare_digest(str(submitted), csrf_token(session_token, secret_key, label=label))
