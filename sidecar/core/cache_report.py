"""The ``report`` section on cache misses (SPEC R-CD-3): misses by reason, dollars lost, worst sessions.

Pure over the window's misses grouped by session and reason (:class:`MissGroup`, as the stores' query
layer aggregates them): each call the cache diagnosis named a miss counts once under its reason, with its
missed tokens and ``cache_miss_cost_usd`` (what was paid above reading the prefix from the cache).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class MissGroup:
    """The cache misses of one session (``""``: calls of no session) and reason over a window.
    ``first_at``: when the first of them started; ``app``: that first call's app."""

    session_id: str
    reason: str
    misses: int
    missed_tokens: int
    cost_usd: float
    first_at: float
    app: str


def _worst(groups: list[MissGroup]) -> dict[str, Any]:
    first = min(groups, key=lambda g: (g.first_at, g.reason))
    # The most frequent reason; a tie goes to the reason seen first.
    top = min(groups, key=lambda g: (-g.misses, g.first_at, g.reason))
    return {
        "session_id": first.session_id,
        "app": first.app,
        "misses": sum(g.misses for g in groups),
        "cost_usd": math.fsum(g.cost_usd for g in groups),
        "top_reason": top.reason,
    }


def cache_miss_section(groups: Iterable[MissGroup], *, limit: int) -> dict[str, Any]:
    """``{"misses", "cost_usd", "by_reason": {reason: {misses, missed_tokens, cost_usd}}, "worst_sessions":
    [{session_id, app, misses, cost_usd, top_reason}]}`` — reasons and sessions by dollars lost (ties:
    the one seen first), at most ``limit`` sessions."""
    by_reason: dict[str, list[MissGroup]] = defaultdict(list)
    per_session: dict[str, list[MissGroup]] = defaultdict(list)
    for g in groups:
        by_reason[g.reason].append(g)
        if g.session_id:
            per_session[g.session_id].append(g)
    rows = {
        reason: (
            min(g.first_at for g in gs),
            {
                "misses": sum(g.misses for g in gs),
                "missed_tokens": sum(g.missed_tokens for g in gs),
                "cost_usd": math.fsum(g.cost_usd for g in gs),
            },
        )
        for reason, gs in by_reason.items()
    }
    order = sorted(rows, key=lambda r: (-rows[r][1]["cost_usd"], rows[r][0], r))
    reasons = {reason: rows[reason][1] for reason in order}
    sessions = [_worst(gs) for gs in per_session.values()]
    sessions.sort(key=lambda s: (-s["cost_usd"], s["session_id"]))
    return {
        "misses": sum(r["misses"] for r in reasons.values()),
        "cost_usd": math.fsum(r["cost_usd"] for r in reasons.values()),
        "by_reason": reasons,
        "worst_sessions": sessions[: max(0, limit)],
    }
