"""The admission rule, soft warnings and remaining dollars over budget counters."""

from __future__ import annotations

from datetime import UTC, datetime

from sidecar.core.budget_config import (
    APP_DAILY_USD,
    SESSION_MODEL_CALLS,
    SESSION_TOKENS,
    SESSION_TOOL_CALLS,
    SESSION_USD,
    Limits,
)
from sidecar.core.budget_counts import Breach, Counts, breaches, reached, remaining_usd, threshold, utc_day


def test_refused_only_when_used_plus_others_reservations_reach_the_ceiling() -> None:
    caps = Limits(session_usd=0.10).caps()
    assert caps == {SESSION_USD: 100_000_000}
    assert breaches(caps, Counts(used_nanos=99_999_999), Counts()) == []
    assert breaches(caps, Counts(used_nanos=60_000_000, reserved_nanos=39_999_999), Counts()) == []
    assert breaches(caps, Counts(used_nanos=60_000_000, reserved_nanos=40_000_000), Counts()) == [
        Breach(SESSION_USD, 100_000_000, 60_000_000, 40_000_000)
    ]


def test_every_ceiling_in_order() -> None:
    caps = Limits(0.1, 1000, 5, 3, 1.0).caps()
    session = Counts(100_000_000, 1000, 4, 3, 0, 0, 1)
    app_day = Counts(used_nanos=999_000_000, reserved_nanos=1_000_000)
    assert [b.limit for b in breaches(caps, session, app_day)] == [
        SESSION_USD,
        SESSION_TOKENS,
        SESSION_MODEL_CALLS,  # 4 used + 1 in flight
        SESSION_TOOL_CALLS,
        APP_DAILY_USD,
    ]
    # With no session, only the app's day applies.
    assert [b.limit for b in breaches(caps, None, app_day)] == [APP_DAILY_USD]


def test_threshold_is_eighty_percent_rounded_up() -> None:
    assert threshold(100_000_000) == 80_000_000
    assert threshold(5) == 4  # 0.8 * 5 = 4
    assert threshold(3) == 3  # 0.8 * 3 = 2.4: 2 is below 80 %
    caps = Limits(session_usd=0.10, session_tool_calls=3).caps()
    assert reached(caps, Counts(used_nanos=79_999_999, tool_calls=2), Counts()) == []
    assert reached(caps, Counts(used_nanos=80_000_000, tool_calls=3), Counts()) == [
        SESSION_USD,
        SESSION_TOOL_CALLS,
    ]


def test_remaining_is_the_tightest_usd_ceiling() -> None:
    caps = Limits(session_usd=0.50, app_daily_usd=10.0).caps()
    assert remaining_usd(caps, Counts(used_nanos=120_000_000), Counts(used_nanos=9_700_000_000)) == 0.3
    assert remaining_usd(caps, Counts(used_nanos=120_000_000), Counts(used_nanos=1_000_000_000)) == 0.38
    assert remaining_usd(caps, Counts(used_nanos=600_000_000), Counts()) == 0.0
    assert remaining_usd(Limits(session_tokens=5).caps(), Counts(), Counts()) is None


def test_utc_day() -> None:
    assert utc_day(datetime(2026, 11, 20, 23, 59, 59, tzinfo=UTC).timestamp()) == "2026-11-20"
    assert utc_day(datetime(2026, 11, 21, 0, 0, 0, tzinfo=UTC).timestamp()) == "2026-11-21"
