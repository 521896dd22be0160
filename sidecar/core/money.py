"""Dollars for people and for JSON: no float noise, and small amounts with their meaningful digits.

Sums of prices carry binary noise (``0.00010599999999999999``); a fixed number of decimals hides small
amounts (``$0.0001`` for $0.000106, ``$0.0000`` for a cheap call). Everything that shows money goes through
these two functions.
"""

from __future__ import annotations

import math

JSON_DECIMALS = 12  # well below a millionth of a dollar, well above a double's noise on sums of prices


def clean_usd(value: float) -> float:
    """``value`` rounded to 1e-12: the number a hand calculation gives, for JSON answers."""
    return round(value, JSON_DECIMALS)


def format_usd(value: float, significant: int = 3) -> str:
    """``$1,234.56`` from a dollar up; below it, at least ``significant`` digits (``$0.000106``,
    ``$0.0123``, ``$0.50``); ``$0`` for nothing."""
    value = clean_usd(value)
    if value == 0:
        return "$0"
    sign = "-" if value < 0 else ""
    magnitude = abs(value)
    if magnitude >= 1:
        return f"{sign}${magnitude:,.2f}"
    decimals = max(2, significant - 1 - math.floor(math.log10(magnitude)))
    text = f"{magnitude:.{decimals}f}".rstrip("0")
    whole, _, fraction = text.partition(".")
    return f"{sign}${whole}.{fraction.ljust(2, '0')}"
