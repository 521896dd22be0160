"""Timestamps as the APIs and notifications show them."""

from __future__ import annotations

from sidecar.core.timestamps import iso_utc

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def test_iso_utc() -> None:
    assert iso_utc(T0) == "2026-01-01T00:00:00.000Z"
    assert iso_utc(T0 + 61.25) == "2026-01-01T00:01:01.250Z"
