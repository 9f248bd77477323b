"""Column encryption: round trip, randomized ciphertexts, key rotation, wrong key."""

from __future__ import annotations

import pytest

from app.kit.crypto import Cipher, DecryptionError, new_key


def test_round_trip_and_randomized_ciphertext() -> None:
    cipher = Cipher([new_key()], "secret")
    first, second = cipher.encrypt("vless://token"), cipher.encrypt("vless://token")
    assert first != second
    assert cipher.decrypt(first) == cipher.decrypt(second) == "vless://token"


def test_rotation_keeps_old_values_readable_and_rewrites_them_with_the_new_key() -> None:
    old_key, new = new_key(), new_key()
    stored = Cipher([old_key], "s").encrypt("pm_123")
    rotated_cipher = Cipher([new, old_key], "s")
    assert rotated_cipher.decrypt(stored) == "pm_123"
    rewritten = rotated_cipher.rotate(stored)
    # Once rewritten, the old key can be dropped.
    assert Cipher([new], "s").decrypt(rewritten) == "pm_123"
    with pytest.raises(DecryptionError):
        Cipher([new], "s").decrypt(stored)


def test_wrong_key_or_garbage_raises_a_clear_error() -> None:
    stored = Cipher([new_key()], "s").encrypt("x")
    with pytest.raises(DecryptionError, match="ENCRYPTION_KEY"):
        Cipher([new_key()], "s").decrypt(stored)
    with pytest.raises(DecryptionError):
        Cipher([new_key()], "s").decrypt("not a token")


def test_fingerprint_is_stable_across_key_rotation_and_keyed_by_the_secret() -> None:
    key = new_key()
    assert Cipher([key], "s").fingerprint("pm") == Cipher([new_key(), key], "s").fingerprint("pm")
    assert Cipher([key], "s").fingerprint("pm") != Cipher([key], "other").fingerprint("pm")
