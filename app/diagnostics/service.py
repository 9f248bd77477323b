"""Customer autodiagnostics (SPEC §3.6): what stands between a customer and a working VPN. Each finding comes with
advice and the FAQ entries that explain it, and the whole report has a plain-text summary to hand to support.

Unlike the pages, this asks the panel and the nodes directly, because "does it work right now" is the whole
question. Every outside call is bounded in time, and a failure becomes a finding, never an exception. Nothing
here writes: drift is reported, and repairing it is the sync jobs' business.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.kit.clock import ensure_utc, utcnow
from app.kit.crypto import DecryptionError, cipher
from app.models import Node, Server, Subscription, SubscriptionStatus, User, VpnAccount
from app.panels.base import AccountNotFound, AccountRef, PanelAccount, VpnPanel
from app.provisioning.service import should_be_enabled

log = logging.getLogger(__name__)

Outcome = Literal["ok", "warn", "fail", "skipped"]
Probe = Callable[[str, int, float], Awaitable[bool]]
Translate = Callable[..., str]

CHECK_CODES = ("subscription", "account", "link", "server", "client")
PANEL_TIMEOUT = 5.0
PROBE_BUDGET = 3.0
EXPIRY_TOLERANCE = timedelta(minutes=1)
ENDING_SOON = timedelta(days=3)
IDLE_AFTER = timedelta(days=3)

_SEVERITY: dict[Outcome, int] = {"skipped": 0, "ok": 1, "warn": 2, "fail": 3}


@dataclass(frozen=True, slots=True)
class Check:
    """One finding. `message_key` and `advice_key` are catalog keys (diag.*) formatted with `params`, which
    never hold secrets: the summary for support prints them."""

    code: str
    outcome: Outcome
    message_key: str
    params: dict[str, Any] = field(default_factory=dict)
    advice_key: str | None = None
    faq_slugs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Report:
    user_id: int
    telegram_id: int
    checked_at: datetime
    checks: tuple[Check, ...]

    @property
    def outcome(self) -> Outcome:
        """The worst finding; "ok" when nothing was worse."""
        worst = max((check.outcome for check in self.checks), key=_SEVERITY.__getitem__, default="ok")
        return "ok" if worst == "skipped" else worst

    @property
    def faq_slugs(self) -> tuple[str, ...]:
        """Every FAQ entry the findings point to, once each, in check order."""
        return tuple(dict.fromkeys(slug for check in self.checks for slug in check.faq_slugs))

    def check(self, code: str) -> Check:
        return next(check for check in self.checks if check.code == code)

    def summary(self, translate: Translate | None = None) -> str:
        """Plain text for support: who, when, and each check's outcome. Translated sentences when given a
        translator, else catalog keys with their parameters (language-neutral, for staff)."""
        if translate is None:
            lines = [
                f"autodiagnostics {_plain(self.checked_at)}",
                f"user {self.user_id}, telegram {self.telegram_id}",
                f"result: {self.outcome}",
            ]
            for check in self.checks:
                details = "".join(f" {key}={_plain(value)}" for key, value in check.params.items())
                lines.append(f"[{check.outcome}] {check.code}: {check.message_key}{details}")
            return "\n".join(lines)
        lines = [
            translate("diag.summary.title", at=self.checked_at),
            translate("diag.summary.user", user_id=self.user_id, telegram_id=self.telegram_id),
            translate("diag.summary.result", outcome=translate(f"diag.outcome.{self.outcome}")),
        ]
        lines += [
            f"[{check.outcome}] {translate(f'diag.check.{check.code}')}: {translate(check.message_key, **check.params)}"
            for check in self.checks
        ]
        return "\n".join(lines)


class PanelSource(Protocol):
    """What diagnose needs of the PanelRegistry."""

    def for_server(self, server: Server) -> VpnPanel: ...


@dataclass(frozen=True, slots=True)
class _LinkView:
    """What a VPN client importing the link we relay gets: `links` (None: the link is dead), or nothing known
    (`answered` False: no stored link, or the panel did not answer)."""

    answered: bool = False
    links: list[str] | None = None
    stored: bool = True  # we have a link to relay at all


@dataclass(frozen=True, slots=True)
class _PanelView:
    """What the panel said: the account, or that it has none (`missing`), or nothing at all (unreachable)."""

    account: PanelAccount | None = None
    missing: bool = False

    @property
    def reachable(self) -> bool:
        return self.account is not None or self.missing


async def tcp_probe(host: str, port: int, timeout: float) -> bool:  # noqa: ASYNC109 - each probe's own bound
    """Whether a TCP connection to host:port opens within `timeout` seconds."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError, ValueError):  # ValueError: a host name IDNA cannot encode
        return False
    writer.close()
    with contextlib.suppress(OSError, TimeoutError):  # the connection opened, which is all we asked
        await asyncio.wait_for(writer.wait_closed(), timeout)
    return True


async def skip_probe(host: str, port: int, timeout: float) -> bool:  # noqa: ASYNC109
    """Opens nothing and leaves the verdict to the panel's node flags (the demo panel's nodes do not exist)."""
    return True


async def diagnose(
    session: AsyncSession,
    user: User,
    panels: PanelSource,
    *,
    probe: Probe = tcp_probe,
    now: datetime | None = None,
    panel_timeout: float = PANEL_TIMEOUT,
    probe_budget: float = PROBE_BUDGET,
) -> Report:
    """Run the checks in order; a later check that an earlier failure makes pointless is "skipped"."""
    now = now or utcnow()
    subscription = await _current_subscription(session, user.id, now)
    checks = [_check_subscription(subscription, now)]
    if subscription is None or checks[0].outcome == "fail":
        return _report(user, now, checks)
    account = await session.scalar(select(VpnAccount).where(VpnAccount.subscription_id == subscription.id))
    if account is None:
        checks.append(_not_ready())
        return _report(user, now, checks)
    server = await session.get_one(Server, account.server_id)
    query = select(Node).where(Node.server_id == server.id, Node.is_enabled).order_by(Node.id)
    nodes = (await session.scalars(query)).all()
    # The panel, the link and the nodes are asked at once, so the slowest of them bounds the wait, not their sum.
    view, link, reachable = await asyncio.gather(
        _ask_panel(panels, server, account, panel_timeout),
        _ask_link(panels, server, account, panel_timeout),
        _probe_nodes(nodes, probe, probe_budget),
    )
    checks += [
        _check_account(account, subscription, server, view),
        _check_link(account, view, link),
        _check_server(server, nodes, reachable, view),
        _check_client(account, view, now),
    ]
    return _report(user, now, checks)


# --- data ----------------------------------------------------------------------------------------------------------


async def _current_subscription(session: AsyncSession, user_id: int, now: datetime) -> Subscription | None:
    """The subscription that matters now: a running one, else one awaiting payment, else the latest to end."""
    rows = (await session.scalars(select(Subscription).where(Subscription.user_id == user_id))).all()

    def rank(subscription: Subscription) -> tuple[int, datetime, int]:
        tier = 2 if should_be_enabled(subscription, now) else int(subscription.status == SubscriptionStatus.PENDING)
        return tier, subscription.ends_at, subscription.id

    return max(rows, key=rank, default=None)


async def _ask_panel(panels: PanelSource, server: Server, account: VpnAccount, limit: float) -> _PanelView:
    try:
        panel = panels.for_server(server)
        ref = AccountRef(account.panel_username, account.panel_id)
        return _PanelView(await asyncio.wait_for(panel.get_account(ref), limit))
    except AccountNotFound:
        return _PanelView(missing=True)
    except Exception as exc:
        # Down, slow, refusing our credentials or answering nonsense: to the customer it is all "the panel did
        # not answer", and the report must render whatever the adapter raised.
        log.warning("diagnostics: panel of server %s did not answer for account %s: %r", server.name, account.id, exc)
        return _PanelView()


async def _ask_link(panels: PanelSource, server: Server, account: VpnAccount, limit: float) -> _LinkView:
    """Open the link our /sub mirror relays, as a client would (read-only: no device, no fetch recorded). Panels
    sign a fresh URL into every answer (Marzban), so comparing URLs would cry wolf; what the link serves is
    what matters."""
    if account.subscription_url_encrypted is None:
        return _LinkView(stored=False)
    try:
        url = cipher().decrypt(account.subscription_url_encrypted)
    except DecryptionError:
        return _LinkView(answered=True)  # encrypted with a key since retired: the mirror cannot relay it either
    try:
        panel = panels.for_server(server)
        return _LinkView(answered=True, links=await asyncio.wait_for(panel.subscription_links(url), limit))
    except Exception as exc:
        log.warning("diagnostics: the link of account %s could not be read: %r", account.id, exc)
        return _LinkView()


async def _probe_nodes(nodes: Sequence[Node], probe: Probe, budget: float) -> dict[int, bool]:
    """TCP reachability by node id, for the nodes with an address and a port."""
    tasks = {
        node.id: asyncio.ensure_future(probe(node.address, node.port, budget))
        for node in nodes
        if node.address and node.port
    }
    if not tasks:
        return {}
    # Probes bound themselves; the outer limit guards against one that does not.
    done, pending = await asyncio.wait(tasks.values(), timeout=budget)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return {
        node_id: task in done and not task.cancelled() and task.exception() is None and task.result() is True
        for node_id, task in tasks.items()
    }


def _report(user: User, now: datetime, checks: list[Check]) -> Report:
    done = {check.code for check in checks}
    rest = [Check(code, "skipped", "diag.skipped") for code in CHECK_CODES if code not in done]
    return Report(user_id=user.id, telegram_id=user.telegram_id, checked_at=now, checks=(*checks, *rest))


# --- checks --------------------------------------------------------------------------------------------------------


def _check_subscription(subscription: Subscription | None, now: datetime) -> Check:
    def fail(key: str, advice: str, **params: Any) -> Check:
        return Check("subscription", "fail", key, params, advice, ("how-pay",))

    if subscription is None:
        return fail("diag.subscription.none", "diag.advice.buy")
    if subscription.status == SubscriptionStatus.PENDING:
        return fail("diag.subscription.pending", "diag.advice.finish_payment")
    if subscription.status == SubscriptionStatus.CANCELLED:
        return fail("diag.subscription.cancelled", "diag.advice.buy", until=subscription.ends_at)
    if not should_be_enabled(subscription, now):  # expired, or still marked live past its end
        return fail("diag.subscription.expired", "diag.advice.renew", until=subscription.ends_at)
    left = subscription.ends_at - now
    params = {"until": subscription.ends_at, "count": math.ceil(left / timedelta(days=1))}
    if left <= ENDING_SOON:
        return Check("subscription", "warn", "diag.subscription.ending_soon", params, "diag.advice.renew", ("how-pay",))
    trial = subscription.status == SubscriptionStatus.TRIAL
    return Check("subscription", "ok", "diag.subscription.trial" if trial else "diag.subscription.active", params)


def _not_ready(**params: Any) -> Check:
    advice, faq = "diag.advice.wait_provisioning", ("after-payment",)
    return Check("account", "warn", "diag.account.not_ready", params, advice, faq)


def _check_account(account: VpnAccount, subscription: Subscription, server: Server, view: _PanelView) -> Check:
    params: dict[str, Any] = {"server": server.name, "username": account.panel_username}
    if view.missing:
        # Never provisioned: the create is still queued. Provisioned once: it vanished from the panel.
        if account.provisioned_at is None:
            return _not_ready(**params)
        return Check("account", "fail", "diag.account.not_in_panel", params, "diag.advice.support", ("no-connect",))
    if view.account is None:
        advice, faq = "diag.advice.retry_later", ("server-unavailable",)
        return Check("account", "warn", "diag.account.panel_unreachable", params, advice, faq)
    found = view.account
    params["status"] = found.status
    if found.status == "limited":
        return Check("account", "fail", "diag.account.limited", params, "diag.advice.traffic", ("traffic-limit",))
    if found.status in ("disabled", "expired"):
        advice, faq = "diag.advice.wait_sync", ("no-connect",)
        return Check("account", "fail", f"diag.account.{found.status}", params, advice, faq)
    panel_until = None if found.expire_at is None else ensure_utc(found.expire_at)
    if panel_until is None or abs(panel_until - subscription.ends_at) > EXPIRY_TOLERANCE:
        params |= {"until": subscription.ends_at, "panel_until": panel_until}
        return Check("account", "warn", "diag.account.expiry_drift", params, "diag.advice.wait_sync")
    return Check("account", "ok", "diag.account.ok", params)


def _check_link(account: VpnAccount, view: _PanelView, link: _LinkView) -> Check:
    if view.missing:
        return Check("link", "skipped", "diag.skipped")
    if view.account is None:
        return Check("link", "skipped", "diag.link.unverified")
    if not account.sub_token or not view.account.subscription_url:
        return Check("link", "fail", "diag.link.none", {}, "diag.advice.support", ("no-connect",))
    if not link.stored:
        return Check("link", "warn", "diag.link.not_ready", {}, "diag.advice.wait_provisioning", ("after-payment",))
    if not link.answered:
        return Check("link", "skipped", "diag.link.unverified")
    if link.links is None:
        # Our /sub mirror relays the stored URL, and it is dead (revoked, or from a key since retired).
        return Check("link", "fail", "diag.link.stale", {}, "diag.advice.support", ("refresh-subscription",))
    if view.account.status != "active":
        return Check("link", "skipped", "diag.skipped")  # no configs for an inactive account; the account says why
    if not link.links:
        return Check("link", "fail", "diag.link.empty", {}, "diag.advice.support", ("no-connect",))
    if view.account.links and not set(view.account.links) & set(link.links):
        # The panel lists this account's configs (Marzban, demo): the link serves someone else's.
        return Check("link", "fail", "diag.link.foreign", {}, "diag.advice.support", ("refresh-subscription",))
    return Check("link", "ok", "diag.link.ok")


def _check_server(server: Server, nodes: Sequence[Node], reachable: dict[int, bool], view: _PanelView) -> Check:
    # A node counts as up when the panel says so and, where we could probe it, it accepts a connection.
    down = [node.name for node in nodes if not (node.is_online and reachable.get(node.id, True))]
    params: dict[str, Any] = {"server": server.name, "up": len(nodes) - len(down), "total": len(nodes)}
    if down:
        params["down"] = ", ".join(down)
        if len(down) == len(nodes):
            advice, faq = "diag.advice.server_down", ("server-unavailable",)
            return Check("server", "fail", "diag.server.all_down", params, advice, faq)
        advice, faq = "diag.advice.switch_location", ("switch-location",)
        return Check("server", "warn", "diag.server.some_down", params, advice, faq)
    if not nodes and not view.reachable:
        advice, faq = "diag.advice.retry_later", ("server-unavailable",)
        return Check("server", "warn", "diag.server.panel_down", params, advice, faq)
    if not server.is_enabled:
        return Check("server", "warn", "diag.server.maintenance", params, "diag.advice.retry_later")
    return Check("server", "ok", "diag.server.ok" if nodes else "diag.server.ok_single", params)


def _check_client(account: VpnAccount, view: _PanelView, now: datetime) -> Check:
    if view.missing:
        return Check("client", "skipped", "diag.skipped")
    # The panel's answer is freshest; our synced copy stands in while the panel is unreachable.
    found = view.account
    fetched = _latest(account.sub_updated_at, found.sub_updated_at if found else None)
    online = _latest(account.online_at, found.online_at if found else None)
    params: dict[str, Any] = {"fetched_at": fetched, "online_at": online}
    if online is None:
        if fetched is None:
            faq: tuple[str, ...] = ("how-connect", "import-link")
            return Check("client", "warn", "diag.client.never_fetched", params, "diag.advice.import_link", faq)
        faq = ("no-connect", "switch-location")
        return Check("client", "warn", "diag.client.never_connected", params, "diag.advice.turn_on", faq)
    if now - online > IDLE_AFTER:
        params["count"] = (now - online).days
        faq = ("refresh-subscription", "no-connect")
        return Check("client", "warn", "diag.client.idle", params, "diag.advice.refresh", faq)
    return Check("client", "ok", "diag.client.ok", params)


def _latest(*moments: datetime | None) -> datetime | None:
    return max((ensure_utc(moment) for moment in moments if moment), default=None)


def _plain(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return ensure_utc(value).strftime("%Y-%m-%d %H:%M UTC")
    return str(value)
