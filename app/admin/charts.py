"""The data shape admin/components/chart.html hands to uPlot: shared x values (unix seconds) and named series."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo


def series_data(
    days: Sequence[date | datetime],
    series: Sequence[tuple[str, Sequence[float | int | None]]],
    *,
    zone: ZoneInfo,
    unit: str = "",
) -> dict[str, Any]:
    """Days (local dates, placed at local midnight) or instants, and (label, values) pairs of the same length."""
    xs = [int((d if isinstance(d, datetime) else datetime.combine(d, time(), tzinfo=zone)).timestamp()) for d in days]
    for label, values in series:
        if len(values) != len(xs):
            raise ValueError(f"series {label!r} has {len(values)} values for {len(xs)} days")
    return {"x": xs, "series": [{"label": label, "values": list(values)} for label, values in series], "unit": unit}
