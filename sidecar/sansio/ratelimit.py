"""Anthropic's rate-limit response headers (SPEC R-RL-1), bytes in, :class:`RateLimits` out.

Both families are read generically: ``anthropic-ratelimit-<type>-<limit|remaining|reset>`` for the four
API-key types, and ``anthropic-ratelimit-unified-<field>`` where a field ending in ``-utilization`` or
``-reset`` names a window (``5h``, ``7d``, ``7d_opus`` …), so windows Anthropic adds later show up
without a change here. Values that do not parse are skipped; window and status words are kept only
when short and plain (they become metric labels). Subscription reset times become unix seconds (sent as
epoch seconds, or RFC 3339); the API-key families' resets are not read (nothing uses them yet).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from datetime import datetime

from sidecar.core.ratelimits import STANDARD_TYPES, RateLimits, StandardLimit, UnifiedWindow

_PREFIX = b"anthropic-ratelimit-"
_UNIFIED = b"unified-"
_WORD = re.compile(r"^[a-z0-9][a-z0-9_]{0,31}$")
# Every API-key header by its exact (lower-case) name: one dict lookup per header on the hot path.
_STANDARD = {
    f"anthropic-ratelimit-{t.replace('_', '-')}-{field}".encode(): (t, field)
    for t in STANDARD_TYPES
    for field in ("limit", "remaining", "reset")
}
_UNIFIED_PREFIX = _PREFIX + _UNIFIED
_MAX_WINDOWS = 16


def _number(value: bytes) -> float | None:
    try:
        n = float(value.strip())
    except ValueError:
        return None
    return n if math.isfinite(n) and n >= 0 else None


_EPOCH = re.compile(r"^[0-9]{1,12}(?:\.[0-9]{1,9})?$")


def _time(value: bytes) -> float | None:
    """Unix seconds from epoch seconds or RFC 3339; None for anything else (never raises)."""
    text = value.strip().decode("latin-1")
    if _EPOCH.match(text):
        return float(text)
    try:
        stamp = datetime.fromisoformat(text).timestamp()
    except (ValueError, OverflowError, OSError):
        return None
    return stamp if math.isfinite(stamp) else None


def _word(value: bytes | str) -> str | None:
    text = (value.decode("latin-1") if isinstance(value, bytes) else value).strip().lower()
    text = text.replace("-", "_")
    return text if _WORD.match(text) else None


def _unified(
    rest: str, value: bytes, fields: dict[str, object], windows: dict[str, dict[str, float]]
) -> None:
    if rest in ("status", "representative-claim", "overage-status"):
        fields[rest] = _word(value)
    elif rest == "reset":
        fields[rest] = _time(value)
    elif rest.endswith(("-utilization", "-reset")) and not rest.startswith("overage"):
        window, _, field = rest.rpartition("-")
        name = _word(window)
        parsed = _number(value) if field == "utilization" else _time(value)
        if name is None or parsed is None or (name not in windows and len(windows) >= _MAX_WINDOWS):
            return
        windows.setdefault(name, {})[field] = parsed


def parse_ratelimits(headers: Iterable[tuple[bytes, bytes]]) -> RateLimits | None:
    """The rate limits an answer's headers report; None when it carries none of the family."""
    standard: dict[str, dict[str, float | None]] = {}
    fields: dict[str, object] = {}
    windows: dict[str, dict[str, float]] = {}
    for name, value in headers:
        # Most headers are something else: reject them on length and first letter before lowering.
        if len(name) <= len(_PREFIX) or name[0] not in b"aA":
            continue
        low = name.lower()
        known = _STANDARD.get(low)
        if known is not None:
            kind, field = known
            entry = standard.setdefault(kind, {})
            # Resets are not read: nothing exports them yet, and parsing a date costs.
            if field != "reset" and (number := _number(value)) is not None:
                entry[field] = number
        elif low.startswith(_UNIFIED_PREFIX):
            _unified(low[len(_UNIFIED_PREFIX) :].decode("latin-1"), value, fields, windows)
    if not standard and not fields and not windows:
        return None
    status, reset = fields.get("status"), fields.get("reset")
    claim, overage = fields.get("representative-claim"), fields.get("overage-status")
    return RateLimits(
        standard=tuple(
            StandardLimit(k, v.get("limit"), v.get("remaining"), v.get("reset"))
            for k, v in sorted(standard.items())
        ),
        status=status if isinstance(status, str) else None,
        windows=tuple(
            UnifiedWindow(n, min(1.0, w["utilization"]) if "utilization" in w else None, w.get("reset"))
            for n, w in sorted(windows.items())
        ),
        reset=reset if isinstance(reset, float) else None,
        representative_claim=claim if isinstance(claim, str) else None,
        overage_status=overage if isinstance(overage, str) else None,
    )
