"""Settings: wrong or missing values stop start-up with one line naming the variable."""

from __future__ import annotations

import subprocess
import sys

import pytest

from app.config import ConfigError, load_settings
from tests.conftest import TEST_ENCRYPTION_KEY, TEST_SECRET

GOOD = {"_env_file": None, "secret_key": TEST_SECRET, "encryption_key": [TEST_ENCRYPTION_KEY]}


def settings_error(**values: object) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(**(GOOD | values))
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_production_requires_a_long_secret_key() -> None:
    assert settings_error(secret_key="short").startswith("config error: SECRET_KEY:")


def test_production_requires_an_encryption_key() -> None:
    assert "ENCRYPTION_KEY" in settings_error(encryption_key=[])


def test_encryption_key_must_be_fernet_keys() -> None:
    assert settings_error(encryption_key="not-a-key").startswith("config error: ENCRYPTION_KEY:")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("database_url", "mysql://x"),
        ("redis_url", "localhost:6379"),
        ("timezone", "Mars/Olympus"),
        ("telegram_api_url", "api.telegram.org"),
        ("port", 70000),
        ("trial_days", -1),
        ("oidc_providers", "{not json"),
        ("default_language", "de"),
    ],
)
def test_bad_values_name_their_variable(variable: str, value: object) -> None:
    assert settings_error(**{variable: value}).startswith(f"config error: {variable.upper()}:")


def test_environment_is_read_and_normalized(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://user:pw@db:5432/vpn")
    monkeypatch.setenv("ENCRYPTION_KEY", f"{TEST_ENCRYPTION_KEY}, {TEST_ENCRYPTION_KEY}")
    monkeypatch.setenv("YOOKASSA_TRUSTED_PROXIES", "10.0.0.1,10.0.0.2")
    monkeypatch.setenv("TELEGRAM_API_URL", "http://127.0.0.1:8081/")
    settings = load_settings(_env_file=None, secret_key=TEST_SECRET)
    assert settings.database_url == "postgresql+asyncpg://user:pw@db:5432/vpn"
    assert settings.encryption_key == [TEST_ENCRYPTION_KEY, TEST_ENCRYPTION_KEY]
    assert settings.yookassa_trusted_proxies == ["10.0.0.1", "10.0.0.2"]
    assert settings.telegram_api_url == "http://127.0.0.1:8081"


def test_demo_mode_needs_no_secrets() -> None:
    settings = load_settings(_env_file=None, demo_mode=True)
    assert settings.is_sqlite


def test_cli_prints_one_line_and_exits_2_on_bad_config(tmp_path) -> None:
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": "mysql://nope", "SECRET_KEY": TEST_SECRET}
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "migrate"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "config error: DATABASE_URL: expected postgresql://… or sqlite+aiosqlite:///path"
    ]
