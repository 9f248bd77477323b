"""The `vpnshop` command: demo, serve, worker, bot, migrate, staff.

A mistake of whoever runs it (a bad option, a wrong setting, a database that is down, missing or not migrated, an
unknown revision) is one line on stderr and a non-zero exit code, never a traceback: tracebacks are for our bugs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import socket
import sys
from pathlib import Path
from typing import Any

import click
from alembic.util.exc import CommandError as AlembicCommandError
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError

from app.config import DEMO_DATABASE_URL, ConfigError, Settings, load_settings
from app.kit.crypto import new_key
from app.kit.logging import configure_logging, logging_config
from app.kit.metrics import share_metrics_between_workers
from app.kit.sentry import init_sentry

DEMO_SECRETS_FILE = Path("var/demo-secrets.json")

log = logging.getLogger("vpnshop.cli")


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**overrides)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)


def _demo_secrets() -> dict[str, Any]:
    """Keys for the demo, made once and kept beside the demo database so encrypted columns stay readable."""
    if DEMO_SECRETS_FILE.exists():
        return json.loads(DEMO_SECRETS_FILE.read_text())
    DEMO_SECRETS_FILE.parent.mkdir(parents=True, exist_ok=True)
    values = {"secret_key": secrets.token_urlsafe(48), "encryption_key": [new_key()]}
    DEMO_SECRETS_FILE.write_text(json.dumps(values))
    DEMO_SECRETS_FILE.chmod(0o600)
    return values


def _first_line(error: object) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def explain(exc: BaseException) -> tuple[str, int] | None:
    """The one line (and exit code) for a failure that is the operator's to fix; None for our own bugs. A
    database error is told by the driver's first line only: the SQL and its parameters (customers' data) never
    reach the terminal."""
    if isinstance(exc, ConfigError):
        return str(exc), 2
    if isinstance(exc, AlembicCommandError):
        return f"error: {_first_line(exc)}", 2
    if isinstance(exc, DBAPIError):
        reason = _first_line(exc.orig)
        lowered = reason.lower()
        if "no such table" in lowered or ("relation" in lowered and "does not exist" in lowered):
            return "error: the database has no tables yet: run `vpnshop migrate` first", 1
        if "database" in lowered and "does not exist" in lowered:
            return f"error: {reason} (DATABASE_URL): create the database first", 1
        return f"error: the database refused: {reason} (DATABASE_URL)", 1
    if isinstance(exc, RedisError):
        return f"error: Redis (REDIS_URL): {_first_line(exc)}", 1
    # Refused, unresolvable or timed out; a bare OSError is asyncio's "Multiple exceptions" of a failed connect.
    # Other OSErrors (a missing file, a permission) are not the database and keep their traceback.
    if isinstance(exc, ConnectionError | TimeoutError | socket.gaierror) or type(exc) is OSError:
        return f"error: cannot connect to the database (DATABASE_URL): {_first_line(exc) or 'timed out'}", 1
    return None


class _Commands(click.Group):
    """The top-level group: usage errors and the operator's mistakes (`explain`) as one line on stderr."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            return super().main(*args, **kwargs)
        except click.exceptions.NoArgsIsHelpError as exc:
            exc.show()  # `vpnshop` alone: the help, as click shows it
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            hint = f" (see: {exc.ctx.command_path} --help)" if isinstance(exc, click.UsageError) and exc.ctx else ""
            click.echo(f"error: {exc.format_message()}{hint}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("aborted", err=True)
            sys.exit(1)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            explained = explain(exc)
            if explained is None:
                raise
            click.echo(explained[0], err=True)
            sys.exit(explained[1])


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """vpnshop: a VPN-subscription business in a box."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="Port.")
@click.option("--database", default=DEMO_DATABASE_URL, show_default=True, help="SQLite database URL.")
def demo(host: str, port: int, database: str) -> None:
    """Run the embedded demo: SQLite, in-process jobs, demo panel and demo payments."""
    import uvicorn

    from app.demo.bootstrap import prepare_demo
    from app.main import create_app

    settings = _settings(
        demo_mode=True,
        database_url=database,
        redis_url="",
        public_base_url=f"http://{host}:{port}",
        demo_payments_enabled=True,
        log_json=False,
        **_demo_secrets(),
    )
    configure_logging(settings.log_level, json_lines=False)
    summary = asyncio.run(prepare_demo(settings))
    base = settings.public_base_url
    click.echo(f"vpnshop demo: {summary}")
    click.echo(f"  Open the shop:   {base}/")
    click.echo(f"  Health:          {base}/healthz")
    click.echo(f"  API docs:        {base}/api/docs")
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning", access_log=False)


@main.command()
@click.option("--host", default=None, help="Interface (default: HOST).")
@click.option("--port", default=None, type=click.IntRange(1, 65535), help="Port (default: PORT).")
@click.option("--workers", default=None, type=click.IntRange(1, 64), help="Processes (default: SERVE_WORKERS).")
def serve(host: str | None, port: int | None, workers: int | None) -> None:
    """Run the web app for production (uvicorn; configure with environment variables)."""
    import uvicorn

    settings = _settings()
    configure_logging(settings.log_level, json_lines=settings.log_json)
    _check_production(settings)
    init_sentry(settings, component="web")
    share_metrics_between_workers(workers or settings.serve_workers)
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers or settings.serve_workers,
        # X-Forwarded-* only from the configured proxies: from anyone else they are the client's own words.
        proxy_headers=bool(settings.forwarded_allow_ips),
        forwarded_allow_ips=settings.forwarded_allow_ips or None,
        log_level=settings.log_level.lower(),
        access_log=False,
        # Each worker process configures its logging from this, uvicorn's loggers included.
        log_config=logging_config(settings.log_level, json_lines=settings.log_json),
        # uvicorn kills a worker that does not answer its supervisor's ping within this; importing the app
        # takes longer than the default 5 s on a busy 2-core host, and workers were then killed in a loop.
        timeout_worker_healthcheck=60,
    )


def _check_production(settings: Settings) -> None:
    """Refuse what would make production misbehave, before any worker process starts (each would fail on its
    own, with a traceback); say plainly what is missing but may be added later (logged, so a log collector that
    reads JSON lines gets them too)."""
    from app.auth.oidc import providers_from_settings
    from app.payments.registry import PaymentRegistry

    if settings.demo_mode:
        return
    if not settings.redis_url:
        raise ConfigError(
            "config error: REDIS_URL: expected redis://host:port/db (production: without it every web worker "
            "runs every scheduled job itself, so each runs several times; run `vpnshop worker` beside it)"
        )
    try:
        providers_from_settings(settings)
    except ValueError as exc:
        raise ConfigError(f"config error: {exc}") from None
    try:
        registry = PaymentRegistry.from_settings(settings)
    except ValueError as exc:  # e.g. YOOKASSA_TRUSTED_PROXIES with something that is not an address
        raise ConfigError(f"config error: a payment provider's settings: {exc}") from None
    enabled = [provider.name for provider in registry]
    asyncio.run(registry.aclose())
    if not enabled and not settings.demo_payments_enabled:
        log.warning("no payment provider is configured (YOOKASSA_*, WATA_*, STARS_ENABLED, …): nobody can pay")
    if not (settings.marzban_api_url or settings.remnawave_api_url):
        log.warning(
            "no VPN panel in the environment (MARZBAN_* / REMNAWAVE_*): add a server in the admin, "
            "else paying customers get no VPN"
        )
    if not settings.bot_token:
        log.warning("no bot token (BOT_TOKEN): Telegram sign-in, Stars, notifications and broadcasts are off")


@main.command()
def worker() -> None:
    """Run the ARQ worker: outbox dispatch, sync, reminders, renewals, broadcasts, backups."""
    from app.kit.jobs import run_arq_worker
    from tasks.worker import build_worker_settings

    settings = _settings()
    if not settings.redis_url:
        click.echo("config error: REDIS_URL: expected redis://host:port/db (the worker needs Redis)", err=True)
        sys.exit(2)
    configure_logging(settings.log_level, json_lines=settings.log_json)
    init_sentry(settings, component="worker")
    run_arq_worker(build_worker_settings(settings))


@main.command()
def bot() -> None:
    """Run the Telegram bot (webhook or long polling)."""
    from aiogram.utils.token import TokenValidationError, validate_token

    from bot.main import run

    settings = _settings()
    try:
        validate_token(settings.bot_token)
    except TokenValidationError:
        click.echo("config error: BOT_TOKEN: expected the token from @BotFather (123456:ABC-DEF…)", err=True)
        sys.exit(2)
    if settings.bot_webhook_url and not settings.bot_webhook_secret:
        click.echo("config error: BOT_WEBHOOK_SECRET: required with BOT_WEBHOOK_URL (the secret_token)", err=True)
        sys.exit(2)
    configure_logging(settings.log_level, json_lines=settings.log_json)
    init_sentry(settings, component="bot")
    asyncio.run(run(settings))


@main.command()
@click.option("--revision", default="head", show_default=True, help="Target revision to upgrade to.")
@click.option("--downgrade", "downgrade_to", default=None, help="Downgrade to this revision instead.")
def migrate(revision: str, downgrade_to: str | None) -> None:
    """Apply database migrations (or downgrade with --downgrade REV), then add panels configured by env."""
    from app import migrate as migrations

    settings = _settings()
    if downgrade_to:
        asyncio.run(migrations.downgrade(settings.database_url, downgrade_to))
        click.echo(f"database downgraded to {downgrade_to}")
    else:
        asyncio.run(migrations.upgrade(settings.database_url, revision))
        click.echo(f"database upgraded to {revision}")
        created = asyncio.run(_bootstrap_servers(settings))
        for name in created:
            click.echo(f"panel server {name!r} added from the environment")


async def _bootstrap_servers(settings: Settings) -> list[str]:
    """Servers named by MARZBAN_*/REMNAWAVE_* are created once, here rather than in every web process."""
    from app.db import standalone_transaction
    from app.kit.crypto import configure_cipher
    from app.panels.registry import bootstrap_servers

    configure_cipher(settings.encryption_key, settings.secret_key)
    async with standalone_transaction(settings) as session:
        return [server.name for server in await bootstrap_servers(session, settings)]


@main.group()
def staff() -> None:
    """Manage staff accounts."""


@staff.command("create")
@click.option("--username", required=True, help="Login name (3–64 characters).")
@click.option(
    "--role",
    type=click.Choice(["owner", "admin", "support", "marketing"]),
    default="admin",
    show_default=True,
    help="Role and its permissions.",
)
@click.option("--telegram-id", type=int, default=None, help="Telegram id, for /admin in the bot.")
@click.password_option(envvar="VPNSHOP_STAFF_PASSWORD", help="Password (prompted if not given).")
def staff_create(username: str, role: str, telegram_id: int | None, password: str) -> None:
    """Create a staff account."""
    from app.staff.service import StaffError, create_staff

    settings = _settings()
    try:
        created = asyncio.run(create_staff(settings, username, password, role, telegram_id))
    except StaffError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(f"staff account {created.username!r} created with role {created.role.value}")


from app.backups import cli as backups_cli  # noqa: E402  (after `main`, which it does not import)

main.add_command(backups_cli.backup)
main.add_command(backups_cli.restore)

from app.broadcasts.cli import broadcast  # noqa: E402  (after `main`, which it does not import)

main.add_command(broadcast)


if __name__ == "__main__":
    main()
