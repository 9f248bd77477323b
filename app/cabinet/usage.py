"""Usage statistics (SPEC §3.8): traffic per day for the chart, the period's total, last connection and last
config fetch. Daily rows come from the panel sync (usage_daily); days without a row are zero."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.kit.clock import utcnow
from app.models import UsageDaily, User, VpnAccount

CHART_HEIGHT = 100


@dataclass(frozen=True, slots=True)
class DayUsage:
    day: date
    upload_bytes: int
    download_bytes: int

    @property
    def total(self) -> int:
        return self.upload_bytes + self.download_bytes


@dataclass(frozen=True, slots=True)
class Bar:
    index: int
    height: int  # 0..CHART_HEIGHT
    usage: DayUsage


@dataclass(slots=True)
class UsageReport:
    days: list[DayUsage]
    last_connection: datetime | None
    last_config_fetch: datetime | None
    has_account: bool

    @property
    def total(self) -> int:
        return sum(day.total for day in self.days)

    @property
    def peak(self) -> int:
        return max((day.total for day in self.days), default=0)

    def bars(self) -> list[Bar]:
        peak = self.peak or 1
        return [
            Bar(i, round(CHART_HEIGHT * day.total / peak) if day.total else 0, day) for i, day in enumerate(self.days)
        ]


async def usage_report(session: AsyncSession, user: User, *, days: int, zone: tzinfo) -> UsageReport:
    """The last `days` days of traffic, ending today in the shop's time zone."""
    today = utcnow().astimezone(zone).date()
    first = today - timedelta(days=days - 1)
    rows = await session.execute(
        select(UsageDaily.day, func.sum(UsageDaily.upload_bytes), func.sum(UsageDaily.download_bytes))
        .where(UsageDaily.user_id == user.id, UsageDaily.day >= first)
        .group_by(UsageDaily.day)
    )
    by_day = {day: (int(up or 0), int(down or 0)) for day, up, down in rows}
    series = [DayUsage(first + timedelta(days=i), *by_day.get(first + timedelta(days=i), (0, 0))) for i in range(days)]
    account = (
        await session.execute(
            select(
                func.max(VpnAccount.online_at), func.max(VpnAccount.sub_updated_at), func.count(VpnAccount.id)
            ).where(VpnAccount.user_id == user.id)
        )
    ).one()
    return UsageReport(series, account[0], account[1], bool(account[2]))
