"""Why the prompt cache missed (SPEC R-CD-1, R-CD-5): the verdict on one call, and what a miss cost.

:func:`~sidecar.core.prefix_changes.first_change` says what changed since the session's previous call;
:func:`diagnose` then reads the usage: ``hit`` when the call read at least what the previous one had
cached (±1 %), ``write`` for a first write, ``none`` without cache activity (or a prompt too short to
cache), else ``miss`` — whose reason is the first change found, else ``ttl_expired`` when the session idled
longer than the previous entry's TTL, else ``evicted``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sidecar.core.prefix_changes import Change
from sidecar.core.pricing import PriceTable
from sidecar.core.prompt_fingerprint import PromptFingerprint
from sidecar.core.usage import Usage

HIT, WRITE, MISS, NONE = "hit", "write", "miss", "none"
OUTCOMES = (HIT, WRITE, MISS, NONE)
REASONS = (
    "ttl_expired",
    "model_changed",
    "system_changed",
    "tools_changed",
    "messages_changed",
    "breakpoint_moved",
    "evicted",
)
TTL_SECONDS = {"5m": 300.0, "1h": 3600.0}
HIT_TOLERANCE = 0.01


@dataclass(frozen=True, slots=True)
class PreviousCall:
    """What a session's last completed messages call left behind (no prompt text)."""

    fingerprint: PromptFingerprint
    cached_tokens: int  # read + written: the prefix the cache holds after it
    ended_at: float  # unix seconds, when its answer ended
    response_id: str | None


@dataclass(frozen=True, slots=True)
class Diagnosis:
    outcome: str
    reason: str | None = None
    detail: str | None = None
    missed_tokens: int = 0
    cost_usd: float = 0.0


def format_idle(seconds: float) -> str:
    """``400`` → ``6m40s``, ``300`` → ``5m``, ``42`` → ``42s``, ``3900`` → ``1h05m``."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        m, r = divmod(s, 60)
        return f"{m}m{r:02d}s" if r else f"{m}m"
    h, r = divmod(s, 3600)
    return f"{h}h{r // 60:02d}m"


def outcome_of(prev_cached: int, usage: Usage, min_tokens: int | None = None) -> str:
    """``hit`` / ``write`` / ``miss`` / ``none`` for a call whose session previously cached
    ``prev_cached`` tokens (0: nothing, or no previous call). A call whose whole prompt is below the
    model's minimum cacheable length (``min_tokens``) could cache nothing: ``none``, not a miss."""
    read, written = usage.cache_read_input_tokens, usage.cache_creation_input_tokens
    if not read and not written and min_tokens is not None and usage.total_input < min_tokens:
        return NONE
    if prev_cached > 0 and read < prev_cached * (1 - HIT_TOLERANCE):
        return MISS
    if read > 0:
        return HIT
    return WRITE if written > 0 else NONE


def missed_tokens(prev_cached: int, usage: Usage) -> int:
    """Tokens the previous call had cached that this call paid to write or as input (never more than
    this call's prompt held beyond what it read)."""
    return max(0, min(prev_cached, usage.total_input) - usage.cache_read_input_tokens)


def miss_cost_usd(prices: PriceTable, model: str | None, usage: Usage, missed: int, at: float) -> float:
    """What ``missed`` tokens cost this call (written at its 1h then 5m rate, the rest as input, in the
    order the API bills the prefix) minus what reading them would have cost; 0 for an unpriced model."""
    if missed <= 0 or model is None:
        return 0.0
    rates = prices.effective_rates(model, usage, at)
    if rates is None:
        return 0.0
    w5, w1h = usage.write_buckets()
    in_1h = min(missed, max(0, w1h))
    in_5m = min(missed - in_1h, max(0, w5))
    as_input = missed - in_1h - in_5m
    paid = in_1h * rates.cache_write_1h + in_5m * rates.cache_write_5m + as_input * rates.input
    return paid - missed * rates.cache_read


def diagnose(
    prev: PreviousCall | None,
    change: Change | None,
    usage: Usage,
    *,
    started_at: float,
    prices: PriceTable,
    model: str | None,
    priced_at: float,
) -> Diagnosis:
    """The verdict on one finished call. ``change`` is :func:`first_change` against ``prev``;
    ``started_at`` is when the call was sent (same clock as ``prev.ended_at``)."""
    cached = prev.cached_tokens if prev is not None else 0
    minimum = prices.min_cacheable_tokens(model) if model is not None else None
    outcome = outcome_of(cached, usage, minimum)
    if outcome != MISS or prev is None:
        return Diagnosis(outcome)
    if change is not None:
        reason, detail = change.reason, change.detail
    else:
        last = prev.fingerprint.last_breakpoint
        ttl = last.ttl if last is not None else "5m"
        idle = max(0.0, started_at - prev.ended_at)
        if idle > TTL_SECONDS[ttl]:
            reason, detail = "ttl_expired", f"idle {format_idle(idle)} > ttl {ttl}"
        else:
            reason, detail = "evicted", f"same prefix, idle {format_idle(idle)} < ttl {ttl}"
    missed = missed_tokens(cached, usage)
    cost = miss_cost_usd(prices, model, usage, missed, priced_at)
    return Diagnosis(MISS, reason, detail, missed, cost)


def as_fields(d: Diagnosis) -> dict[str, Any]:
    """The event's fields for a diagnosis (``cache_miss_*`` only for a miss)."""
    miss = d.outcome == MISS
    return {
        "cache_outcome": d.outcome,
        "cache_miss_reason": d.reason if miss else None,
        "cache_miss_detail": d.detail if miss else None,
        "cache_missed_tokens": d.missed_tokens if miss else None,
        "cache_miss_cost_usd": d.cost_usd if miss else None,
    }
