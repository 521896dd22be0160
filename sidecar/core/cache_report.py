"""The ``report`` section on cache misses (SPEC R-CD-3): misses by reason, dollars lost, worst sessions.

Pure over events: each call the cache diagnosis named a miss counts once under its reason, with its missed
tokens and ``cache_miss_cost_usd`` (what was paid above reading the prefix from the cache).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

from sidecar.core.events import CallEvent


def cache_miss_section(events: Iterable[CallEvent], *, limit: int) -> dict[str, Any]:
    """``{"misses", "cost_usd", "by_reason": {reason: {misses, missed_tokens, cost_usd}}, "worst_sessions":
    [{session_id, app, misses, cost_usd, top_reason}]}`` — sessions by dollars lost, at most ``limit``."""
    by_reason: dict[str, dict[str, Any]] = {}
    per_session: dict[str, list[CallEvent]] = defaultdict(list)
    for e in events:
        if e.cache_miss_reason is None:
            continue
        row = by_reason.setdefault(e.cache_miss_reason, {"misses": 0, "missed_tokens": 0, "cost": []})
        row["misses"] += 1
        row["missed_tokens"] += e.cache_missed_tokens or 0
        row["cost"].append(e.cache_miss_cost_usd or 0.0)
        if e.session_id:
            per_session[e.session_id].append(e)
    reasons = {
        reason: {"misses": r["misses"], "missed_tokens": r["missed_tokens"], "cost_usd": math.fsum(r["cost"])}
        for reason, r in sorted(by_reason.items(), key=lambda item: -math.fsum(item[1]["cost"]))
    }
    lost = {s: math.fsum(e.cache_miss_cost_usd or 0.0 for e in calls) for s, calls in per_session.items()}
    worst = [
        {
            "session_id": session,
            "app": per_session[session][0].app,
            "misses": len(per_session[session]),
            "cost_usd": lost[session],
            "top_reason": Counter(e.cache_miss_reason for e in per_session[session]).most_common(1)[0][0],
        }
        for session in sorted(lost, key=lambda s: (-lost[s], s))[: max(0, limit)]
    ]
    return {
        "misses": sum(r["misses"] for r in reasons.values()),
        "cost_usd": math.fsum(r["cost_usd"] for r in reasons.values()),
        "by_reason": reasons,
        "worst_sessions": worst,
    }
