"""Budget counters of a session and of an app's UTC day, and the admission rule over them. Pure.

Admission rule (R-CC-4). Per ceiling, a call is refused only when ``used + reserved >= ceiling``, where
``reserved`` is what *other* calls in flight reserved; its own estimate never refuses it. An admitted call
then reserves an upper bound of its cost (``estimate_call``), released when it is reconciled with the
real amount. Claim: if every estimate is at least the real amount, the final usage stays below
``ceiling + a``, where ``a`` is the real amount of one call. Proof: let ``k`` be the last admission. Just
before it, ``used + reserved < ceiling``. Every call admitted earlier is in that sum, by its real amount
if it was reconciled, else by its reservation; reconciling replaces a reservation by a real amount that
is no larger, so those calls finally add up to less than ``ceiling``. No call is admitted after ``k``, so
the final usage is below ``ceiling + a_k``. Sequential calls see ``reserved == 0``: they are refused
exactly once ``used >= ceiling``. Model calls reserve 1 each, so that ceiling is never overshot. Tool
calls are only known from responses: refused once ``tool_calls >= ceiling``, so a burst can add the tool
calls of the calls in flight.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from sidecar.core.budget_config import (
    APP_DAILY_USD,
    NANOS,
    SESSION_MODEL_CALLS,
    SESSION_TOKENS,
    SESSION_TOOL_CALLS,
    SESSION_USD,
)


@functools.lru_cache(maxsize=8)
def _day_of(day_number: int) -> str:
    return datetime.fromtimestamp(day_number * 86400, tz=UTC).strftime("%Y-%m-%d")


def utc_day(ts: float) -> str:
    """``YYYY-MM-DD`` of unix time ``ts`` in UTC: the key of the daily app ceiling."""
    return _day_of(int(ts // 86400))  # unix days are exactly 86,400 s (no leap seconds)


def threshold(cap: int) -> int:
    """The soft-warning level: the smallest integer usage ``u`` with ``u >= 0.8 * cap``."""
    return (4 * cap + 4) // 5


@dataclass(slots=True)
class Counts:
    """Counters of one scope (a session, or an app's UTC day: only the USD fields)."""

    used_nanos: int = 0
    used_tokens: int = 0
    model_calls: int = 0
    tool_calls: int = 0
    reserved_nanos: int = 0
    reserved_tokens: int = 0
    reserved_calls: int = 0

    def copy(self) -> Counts:
        # Spelled out: dataclasses.replace costs several times more, and this runs on every call.
        return Counts(
            self.used_nanos,
            self.used_tokens,
            self.model_calls,
            self.tool_calls,
            self.reserved_nanos,
            self.reserved_tokens,
            self.reserved_calls,
        )


@dataclass(frozen=True, slots=True)
class Breach:
    """A ceiling a call would break: ``used + reserved >= ceiling`` (counter units)."""

    limit: str
    ceiling: int
    used: int
    reserved: int = 0


def breaches(caps: Mapping[str, int], session: Counts | None, app_day: Counts) -> list[Breach]:
    """Every ceiling that refuses a new call now (the admission rule above), in a fixed order."""
    if not caps:
        return []
    rows: list[tuple[str, int, int]] = []
    if session is not None:
        s = session
        rows += [
            (SESSION_USD, s.used_nanos, s.reserved_nanos),
            (SESSION_TOKENS, s.used_tokens, s.reserved_tokens),
            (SESSION_MODEL_CALLS, s.model_calls, s.reserved_calls),
            (SESSION_TOOL_CALLS, s.tool_calls, 0),
        ]
    rows.append((APP_DAILY_USD, app_day.used_nanos, app_day.reserved_nanos))
    return [
        Breach(name, caps[name], used, reserved)
        for name, used, reserved in rows
        if name in caps and used + reserved >= caps[name]
    ]


def reached(caps: Mapping[str, int], session: Counts | None, app_day: Counts) -> list[str]:
    """Ceilings whose *used* amount is at or above 80 % (soft warning)."""
    if not caps:
        return []
    used = {APP_DAILY_USD: app_day.used_nanos}
    if session is not None:
        used |= {
            SESSION_USD: session.used_nanos,
            SESSION_TOKENS: session.used_tokens,
            SESSION_MODEL_CALLS: session.model_calls,
            SESSION_TOOL_CALLS: session.tool_calls,
        }
    return [name for name, cap in caps.items() if name in used and used[name] >= threshold(cap)]


def remaining_usd(caps: Mapping[str, int], session: Counts | None, app_day: Counts) -> float | None:
    """USD left under the tightest USD ceiling (never negative); ``None`` when none applies."""
    left = [caps[APP_DAILY_USD] - app_day.used_nanos] if APP_DAILY_USD in caps else []
    if session is not None and SESSION_USD in caps:
        left.append(caps[SESSION_USD] - session.used_nanos)
    return max(0, min(left)) / NANOS if left else None
