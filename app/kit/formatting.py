"""Display formatting shared by templates: dates in the shop's time zone, byte sizes, per language."""

from __future__ import annotations

from datetime import date, datetime, tzinfo

_MONTHS_EN = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_UNITS = {"ru": ("Б", "КБ", "МБ", "ГБ", "ТБ"), "en": ("B", "KB", "MB", "GB", "TB")}


def format_date(value: datetime | None, zone: tzinfo, language: str, *, with_time: bool = False) -> str:
    if value is None:
        return "—"
    local = value.astimezone(zone)
    if language == "ru":
        text = local.strftime("%d.%m.%Y")
    else:
        text = f"{_MONTHS_EN[local.month - 1]} {local.day}, {local.year}"
    return f"{text} {local:%H:%M}" if with_time else text


def format_bytes(value: int | None, language: str) -> str:
    units = _UNITS.get(language, _UNITS["en"])
    amount = float(value or 0)
    for unit in units:
        if amount < 1024 or unit == units[-1]:
            # One decimal only where it carries information (2.5 GB), none on round or large figures.
            text = f"{amount:.1f}".removesuffix(".0") if amount < 10 and unit != units[0] else f"{amount:.0f}"
            if language == "ru":
                text = text.replace(".", ",")
            return f"{text} {unit}"
        amount /= 1024
    raise AssertionError("unreachable")


def format_date_only(value: date, language: str) -> str:
    """A calendar day (already local), short: the chart's labels."""
    return f"{value:%d.%m}" if language == "ru" else f"{_MONTHS_EN[value.month - 1]} {value.day}"
