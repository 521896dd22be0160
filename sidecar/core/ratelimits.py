"""Rate-limit headroom as Anthropic reports it on every answer (SPEC R-RL-1): values only.

Two header families: the API-key limits ``anthropic-ratelimit-{requests,tokens,input-tokens,
output-tokens}-{limit,remaining,reset}``, and the subscription family ``anthropic-ratelimit-unified-*``
(a status, and per window — ``5h``, ``7d``, and others as they appear — a utilization from 0 to 1 and a
reset time). ``sidecar.sansio.ratelimit`` reads them from header bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

STANDARD_TYPES = ("requests", "tokens", "input_tokens", "output_tokens")
UNIFIED_STATUSES = ("allowed", "allowed_warning", "rejected")


@dataclass(frozen=True, slots=True)
class StandardLimit:
    """One API-key limit: ``kind`` is one of :data:`STANDARD_TYPES`; ``reset`` in unix seconds (not read
    from headers yet)."""

    kind: str
    limit: float | None = None
    remaining: float | None = None
    reset: float | None = None


@dataclass(frozen=True, slots=True)
class UnifiedWindow:
    """One subscription window (``5h``, ``7d``, ``7d_opus`` …): ``utilization`` from 0 to 1."""

    name: str
    utilization: float | None = None
    reset: float | None = None


@dataclass(frozen=True, slots=True)
class RateLimits:
    """What one answer said about rate limits; empty tuples and ``None`` for what it did not say."""

    standard: tuple[StandardLimit, ...] = ()
    status: str | None = None  # allowed | allowed_warning | rejected (others kept as sent, if short)
    windows: tuple[UnifiedWindow, ...] = ()
    reset: float | None = None
    representative_claim: str | None = None  # the window that governs, e.g. ``five_hour``
    overage_status: str | None = None

    @property
    def unified(self) -> bool:
        return self.status is not None or bool(self.windows)
