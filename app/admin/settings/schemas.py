"""Inputs of the settings section that are not registry values: an exchange rate (page form and API)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from pydantic import BaseModel, Field


class RateIn(BaseModel):
    currency: str = Field(min_length=3, max_length=8, description="the currency converted from, e.g. USD")
    valid_from: date = Field(description="the first day the rate holds")
    rate: Decimal = Field(description="units of the reporting currency one unit of `currency` is worth")
