"""Every `vpnshop` command given what an operator gets wrong: one line on stderr, a non-zero exit code, never a
traceback (an exception escaping the command is what a real process would print as one), and nothing started.

The databases are real: a PostgreSQL that refuses connections (port 1), one without the database, a SQLite file
without tables. `serve` must refuse before uvicorn starts, so uvicorn.run is replaced by a tripwire that fails
the case instead of serving forever."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy.engine import make_url

from app.cli import main
from tests.conftest import POSTGRES_URL, REDIS_URL, TEST_ENCRYPTION_KEY, TEST_SECRET

PASSWORD = "a-long-enough-password"
MISSING_DATABASE = make_url(POSTGRES_URL).set(database="vpnshop_cli_no_such_database").render_as_string(False)
DATABASE_DOWN = "postgresql://postgres@127.0.0.1:1/vpnshop"

# (case, arguments, environment, what the line must say)
CASES: list[tuple[str, list[str], dict[str, str], str]] = [
    ("unknown command", ["nosuch"], {}, "No such command 'nosuch'"),
    ("unknown option", ["migrate", "--bogus"], {}, "No such option '--bogus'"),
    ("not a number", ["broadcast", "show", "first"], {}, "'first' is not a valid integer"),
    ("bad setting", ["migrate"], {"PORT": "eighty"}, "PORT"),
    ("migrate to an unknown revision", ["migrate", "--revision", "nope"], {}, "Can't locate revision"),
    ("downgrade to an unknown revision", ["migrate", "--downgrade", "nope"], {}, "Can't locate revision"),
    ("migrate, database down", ["migrate"], {"DATABASE_URL": DATABASE_DOWN}, "cannot connect to the database"),
    ("migrate, no such database", ["migrate"], {"DATABASE_URL": MISSING_DATABASE}, "does not exist"),
    ("staff create, not migrated", ["staff", "create", "--username", "boss"], {}, "run `vpnshop migrate` first"),
    (
        "staff create, no such database",
        ["staff", "create", "--username", "boss"],
        {"DATABASE_URL": MISSING_DATABASE},
        "does not exist",
    ),
    (
        "staff create, database down",
        ["staff", "create", "--username", "boss"],
        {"DATABASE_URL": DATABASE_DOWN},
        "DATABASE_URL",
    ),
    ("staff create, unknown role", ["staff", "create", "--username", "boss", "--role", "king"], {}, "'king'"),
    (
        "broadcast test without ENCRYPTION_KEY",
        ["broadcast", "test", "1", "--telegram-id", "5"],
        {"DEMO_MODE": "true", "ENCRYPTION_KEY": ""},
        "ENCRYPTION_KEY",
    ),
    ("broadcast start without a bot", ["broadcast", "start", "1"], {"BOT_TOKEN": ""}, "no bot is configured"),
    ("broadcast list, not migrated", ["broadcast", "list"], {}, "run `vpnshop migrate` first"),
    ("serve with a malformed OIDC provider", ["serve"], {"OIDC_PROVIDERS": '[{"name": "corp"}]'}, "OIDC_PROVIDERS[0]"),
    ("serve with OIDC_PROVIDERS not JSON", ["serve"], {"OIDC_PROVIDERS": "[{name: corp}"}, "OIDC_PROVIDERS"),
    ("serve in production without Redis", ["serve"], {"REDIS_URL": ""}, "REDIS_URL"),
    (
        "serve with a proxy that is no address",
        ["serve"],
        {"YOOKASSA_SHOP_ID": "1", "YOOKASSA_SECRET_KEY": "s", "YOOKASSA_TRUSTED_PROXIES": "10.0.0.0/8,proxy"},
        "'proxy' does not appear to be an IPv4 or IPv6",
    ),
    ("worker without Redis", ["worker"], {"REDIS_URL": ""}, "REDIS_URL"),
    ("bot with a malformed token", ["bot"], {"BOT_TOKEN": "not-a-token"}, "BOT_TOKEN"),
    ("bot without a token", ["bot"], {"BOT_TOKEN": ""}, "BOT_TOKEN"),
    ("restore of a missing file", ["restore", "/nonexistent/backup.tar.gz"], {}, "nonexistent"),
]


@pytest.fixture(autouse=True)
def _no_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a developer's .env must not change what the commands see


@pytest.fixture(autouse=True)
def _uvicorn_tripwire(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    def started(*args: object, **kwargs: object) -> None:
        raise AssertionError("serve started the server instead of refusing")

    monkeypatch.setattr(uvicorn, "run", started)


def _environment(tmp_path: Path, overrides: dict[str, str]) -> dict[str, str]:
    """A production configuration that is fine apart from `overrides`, on an empty (unmigrated) SQLite file."""
    return {
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'empty.sqlite3'}",
        "SECRET_KEY": TEST_SECRET,
        "ENCRYPTION_KEY": TEST_ENCRYPTION_KEY,
        "DEMO_MODE": "false",
        "REDIS_URL": REDIS_URL,
        "BOT_TOKEN": "4242:cli-test-token",
        "TELEGRAM_API_URL": "http://127.0.0.1:1",
        "OIDC_PROVIDERS": "",
        "VPNSHOP_STAFF_PASSWORD": PASSWORD,
        "PORT": "8000",
        **overrides,
    }


@pytest.mark.parametrize(
    ("arguments", "environment", "expected"), [case[1:] for case in CASES], ids=[c[0] for c in CASES]
)
async def test_a_mistake_is_one_line_and_a_non_zero_exit(
    tmp_path: Path, arguments: list[str], environment: dict[str, str], expected: str
) -> None:
    (tmp_path / "empty.sqlite3").touch()
    # The commands run their own event loop, so they run in a thread of their own here.
    result = await asyncio.to_thread(CliRunner().invoke, main, arguments, env=_environment(tmp_path, environment))

    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert "Traceback" not in result.output


async def test_serve_says_plainly_what_is_not_configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    started: list[dict[str, object]] = []
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: started.append(kwargs))
    environment = _environment(tmp_path, {"BOT_TOKEN": ""})

    result = await asyncio.to_thread(CliRunner().invoke, main, ["serve"], env=environment)

    assert result.exit_code == 0, result.output
    assert len(started) == 1  # a panel or a provider may still be added in the admin: it starts, having said so
    # One log line each (JSON lines, as every process logs).
    warnings = [line for line in result.stderr.strip().splitlines() if '"level": "WARNING"' in line]
    assert len(warnings) == 3, result.stderr
    assert "no payment provider" in warnings[0] and "no VPN panel" in warnings[1] and "BOT_TOKEN" in warnings[2]
