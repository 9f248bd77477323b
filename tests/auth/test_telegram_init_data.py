"""initData verification: valid, tampered, reordered, expired, missing hash, duplicate key, other bot."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlencode

import pytest

from app.auth.telegram import InitDataExpired, InitDataInvalid, sign_init_data, verify_init_data

TOKEN = "123456:AAE-test-token"
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
USER = {"id": 777, "first_name": "Ann", "username": "ann", "language_code": "en"}


def fields(auth_date: datetime = NOW, **extra: str) -> dict[str, str]:
    return {"auth_date": str(int(auth_date.timestamp())), "user": json.dumps(USER), "query_id": "AAH", **extra}


def verify(raw: str, token: str = TOKEN, now: datetime = NOW):
    return verify_init_data(raw, token, max_age_seconds=86400, now=now)


def test_valid_init_data_is_accepted() -> None:
    data = verify(sign_init_data(fields(start_param="ref_abc"), TOKEN))
    assert data.user.id == 777 and data.user.language_code == "en"
    assert data.start_param == "ref_abc"
    assert data.auth_date == NOW


def test_field_order_does_not_matter() -> None:
    raw = sign_init_data(fields(), TOKEN)
    reordered = urlencode(list(reversed(parse_qsl(raw))))
    assert verify(reordered).user.id == 777


def test_a_tampered_value_is_rejected() -> None:
    raw = sign_init_data(fields(), TOKEN)
    tampered = raw.replace("%22id%22%3A+777", "%22id%22%3A+778")
    assert tampered != raw
    with pytest.raises(InitDataInvalid):
        verify(tampered)


def test_another_bots_token_is_rejected() -> None:
    with pytest.raises(InitDataInvalid):
        verify(sign_init_data(fields(), "999:other-bot"))


def test_missing_hash_is_rejected() -> None:
    with pytest.raises(InitDataInvalid):
        verify(urlencode(fields()))


def test_duplicate_key_is_rejected_even_if_signed() -> None:
    raw = sign_init_data(fields(), TOKEN) + "&user=" + json.dumps({"id": 1})
    with pytest.raises(InitDataInvalid):
        verify(raw)


def test_expired_and_future_auth_dates_are_rejected() -> None:
    with pytest.raises(InitDataExpired):
        verify(sign_init_data(fields(NOW - timedelta(hours=24, seconds=1)), TOKEN))
    with pytest.raises(InitDataExpired):
        verify(sign_init_data(fields(NOW + timedelta(minutes=5)), TOKEN))
    # Just inside the window is fine.
    assert verify(sign_init_data(fields(NOW - timedelta(hours=23)), TOKEN)).user.id == 777


@pytest.mark.parametrize("raw", ["", "garbage", "a=1&&b", "hash=abc"])
def test_malformed_input_is_rejected(raw: str) -> None:
    with pytest.raises(InitDataInvalid):
        verify(raw)


def test_signed_but_userless_data_is_rejected() -> None:
    with pytest.raises(InitDataInvalid):
        verify(sign_init_data({"auth_date": str(int(NOW.timestamp()))}, TOKEN))
