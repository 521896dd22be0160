"""The budget's messages: refusals, blocks and 80 % warnings, naming the ceiling, the limit and the
amount used (R-CC-2)."""

from __future__ import annotations

from sidecar.budget import SESSION_SCOPE, Reservation, Snapshot
from sidecar.core.budget_config import APP_DAILY_USD, BLOCKED, NANOS, SESSION_USD
from sidecar.core.budget_counts import Breach
from sidecar.core.money import format_usd


def _amount(limit: str, n: int) -> str:
    return format_usd(n / NANOS) if limit in (SESSION_USD, APP_DAILY_USD) else str(n)


def refusal_message(breach: Breach, session_id: str, app: str, day: str) -> str:
    """Names the ceiling, the limit and the amount used (R-CC-2)."""
    used = _amount(breach.limit, breach.used)
    if breach.reserved:
        used += f" + {_amount(breach.limit, breach.reserved)} reserved by calls in flight"
    head = f"{breach.limit} limit {_amount(breach.limit, breach.ceiling)}, used {used}"
    if breach.limit == APP_DAILY_USD:
        return f"App budget exceeded: {head} (app {app[:200]}, UTC day {day})"
    return f"Session budget exceeded: {head} (session {session_id[:200]})"


def threshold_message(limit: str, res: Reservation, snapshot: Snapshot) -> str:
    caps = res.limits.caps()
    if limit == APP_DAILY_USD:
        used, who = snapshot.app_day.used_nanos, f"App {res.app[:200]} (UTC day {res.day})"
    else:
        s = snapshot.session
        assert s is not None
        values = {"session_usd": s.used_nanos, "session_tokens": s.used_tokens}
        used = values.get(limit, s.model_calls if limit == "session_model_calls" else s.tool_calls)
        who = f"Session {res.session_id[:200]}"
    ceiling = _amount(limit, caps[limit])
    return f"{who} reached 80 % of its {limit} ceiling: used {_amount(limit, used)} of {ceiling}"


def blocked_message(scope: str | None, session_id: str, app: str) -> str:
    name = session_id if scope == SESSION_SCOPE else app
    return f"{str(scope).capitalize()} {name[:200]} is blocked by an administrator (limit {BLOCKED})"
