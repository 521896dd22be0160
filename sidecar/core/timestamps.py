"""Unix timestamps as the text our APIs and notifications show. Pure."""

from __future__ import annotations

from datetime import UTC, datetime


def iso_utc(ts: float) -> str:
    """Unix seconds as ISO 8601 UTC with milliseconds and a ``Z`` suffix (``2026-01-01T00:01:01.250Z``)."""
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
