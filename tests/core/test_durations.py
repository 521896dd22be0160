"""The one duration syntax: configuration, admin query parameters and ``report`` flags all read it."""

from __future__ import annotations

import pytest

from sidecar.core.durations import format_duration, parse_duration


def test_plain_seconds_and_single_units() -> None:
    texts = ("90", "1.5", "0", "45s", "30m", "1h", "7d", "2w", "250ms", "1.5h", " 2H ", "1 h", "1e3")
    assert [parse_duration(t) for t in texts] == [
        90.0, 1.5, 0.0, 45.0, 1800.0, 3600.0, 604800.0, 1209600.0, 0.25, 5400.0, 7200.0, 3600.0, 1000.0
    ]  # fmt: skip


def test_compound_durations() -> None:
    assert parse_duration("1h30m") == 5400.0
    assert parse_duration("1d12h") == 129600.0
    assert parse_duration("1m30s500ms") == 90.5


@pytest.mark.parametrize(
    "bad", ["", "1x", "h", "-1h", "-5", "1 h 2", "1h 30m", "nan", "inf", "-inf", "1.h", ".5h", "m30"]
)
def test_rejects(bad: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(bad)


def test_format_duration() -> None:
    assert [format_duration(s) for s in (3600, 5400, 86400, 1800, 45, 0, 1.5)] == [
        "1h", "90m", "1d", "30m", "45s", "0s", "1.5s"
    ]  # fmt: skip
    for seconds in (3600, 5400, 86400, 1800, 45, 0, 1.5):
        assert parse_duration(format_duration(seconds)) == seconds
