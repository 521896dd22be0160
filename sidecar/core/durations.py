"""Durations as people write them (configuration, query parameters, command-line flags) and as we write
them back. Pure."""

from __future__ import annotations

import math
import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")
_WHOLE = re.compile(rf"(?:{_PART.pattern})+")


def parse_duration(text: str) -> float:
    """Seconds from a plain number of seconds (``90``, ``1.5``) or numbers with units ``ms``, ``s``,
    ``m``, ``h``, ``d``, ``w``, one after another (``45s``, ``30m``, ``1h30m``, ``250ms``, ``2w``).

    Case and surrounding blanks are ignored, as is a blank between a number and its unit (``1 h``);
    blanks between parts are not (``1h 30m``). Raises ``ValueError`` for anything else, and for a
    negative or infinite value or NaN. Zero is a valid duration: callers that need more say so.
    """
    cleaned = text.strip().lower()
    try:
        value = float(cleaned)
    except ValueError:
        if not _WHOLE.fullmatch(cleaned):
            raise ValueError(f"not a duration: {text!r} (use e.g. 90, 30s, 10m, 1h30m, 7d)") from None
        value = sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(cleaned))
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"not a duration: {text!r} (must be finite and not negative)")
    return value


def format_duration(seconds: float) -> str:
    """``3600`` → ``1h``, ``5400`` → ``90m``, ``86400`` → ``1d``: the largest unit that divides evenly,
    so :func:`parse_duration` reads back the same number."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
