"""What the console should print for a value (SPEC R-UI-5), written independently of its JavaScript:
the tests compare the page's text with these applied to the API's numbers."""

from __future__ import annotations

import math
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

VIEWER_ZONE = "America/Sao_Paulo"  # the browser's zone in the tests: not the machine's, not UTC


def usd(x: float | None) -> str:
    """Cents from $1 up; below, three significant digits without trailing zeros ($0.000106, $0.036, $0.10)."""
    if x is None:
        return "—"
    a = abs(x)
    if a == 0:
        text = "0.00"
    elif a >= 1:
        text = f"{a:,.2f}"
    else:
        text = f"{a:.{2 - math.floor(math.log10(a))}f}".rstrip("0").rstrip(".")
        whole, _, frac = text.partition(".")
        text = f"{whole}.{frac.ljust(2, '0')}"
    return ("-$" if x < 0 else "$") + text


def integer(n: int | None) -> str:
    return "—" if n is None else f"{n:,}"


def pct(r: float | None) -> str:
    """One decimal, a tie rounded up as JavaScript's ``toFixed`` does (Python's format rounds it to even)."""
    if r is None:
        return "—"
    return f"{Decimal(r * 100).quantize(Decimal('0.1'), ROUND_HALF_UP)}%"


def secs(s: float | None) -> str:
    if s is None:
        return "—"
    if s < 0.00005:
        return "0 ms"
    if s < 0.01:
        return f"{s * 1000:.1f} ms"
    if s < 1:
        return f"{round(s * 1000)} ms"
    if s < 60:
        return f"{s:.2f} s"
    if s < 3600:
        return f"{int(s // 60)}m {int(s % 60):02d}s"
    if s < 86400:
        return f"{int(s // 3600)}h {int(s % 3600 // 60):02d}m"
    hours = int(s % 86400 // 3600)
    return f"{int(s // 86400)}d" + (f" {hours}h" if hours else "")


def when(ts: float) -> str:
    """The viewer's local date and time, as en-US short month, day and 24-hour clock."""
    d = datetime.fromtimestamp(ts, ZoneInfo(VIEWER_ZONE))
    return f"{d:%b} {d.day}, {d:%H:%M:%S}"


def time_of_day(ts: float) -> str:
    return f"{datetime.fromtimestamp(ts, ZoneInfo(VIEWER_ZONE)):%H:%M:%S}"


def tokens(o: dict[str, int]) -> int:
    return sum(
        o[k]
        for k in ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
    )
