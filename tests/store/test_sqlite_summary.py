"""``summary`` and per-tool statistics on SQLite (SPEC R-RS-3): windows with partial hours and whole days
against the aggregate of the window's events, percentiles as the bucket edge of the exact value."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.core.events import CallEvent
from sidecar.core.report import is_success
from sidecar.core.sessions import is_model_call, model_name, tool_stats
from sidecar.core.sessions import percentile as exact_percentile
from sidecar.store.latency_buckets import UPPER, bucket_of
from sidecar.store.sqlite_purge import hour_of
from sidecar.store.sqlite_reads import SQLiteReads
from tests.store.reads_support import (
    EVENTS,
    SPAN_S,
    T0,
    bucketed_percentile,
    expected_hourly,
    open_reads,
    sample_events,
)


@pytest.fixture(scope="module")
def reads(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SQLiteReads]:
    r = open_reads(tmp_path_factory.mktemp("summary") / "events.db", [EVENTS])
    yield r
    r.close()


def expected_summary(since: float, until: float, group_by: str) -> dict[Any, dict[str, Any]]:
    inside = [e for e in EVENTS if since <= e.started_at < until]
    keyed: dict[Any, list[CallEvent]] = {}
    for e in inside:
        hour = hour_of(e.started_at)
        key = {"app": e.app, "model": model_name(e), "hour": hour, "day": hour // 86400 * 86400}[group_by]
        keyed.setdefault(key, []).append(e)
    out: dict[Any, dict[str, Any]] = {}
    for key, evs in keyed.items():
        flat = [replace(e, app="", started_at=T0, model=None, model_canonical=None) for e in evs]
        (sums,) = expected_hourly(flat).values()
        sums["measured_tool_results"] = sums.pop("tool_results")
        ok = [e for e in evs if is_success(e)]
        sums["duration_p95_s"] = bucketed_percentile([e.duration_s for e in ok], 95)
        sums["ttft_p50_s"] = bucketed_percentile([e.ttft_s for e in ok if e.ttft_s is not None], 50)
        out[key] = sums
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    since=st.integers(0, SPAN_S * 4).map(lambda s: T0 - 600 + s / 4),
    length=st.integers(0, SPAN_S * 4).map(lambda s: s / 4),
    group_by=st.sampled_from(["app", "model", "hour", "day"]),
)
def test_summary_equals_the_window_aggregate(
    reads: SQLiteReads, since: float, length: float, group_by: str
) -> None:
    doc = reads.summary(since, since + length, group_by)
    want = expected_summary(since, since + length, group_by)
    rows = {r.get("key_ts", r["key"]): r for r in doc["rows"]}
    assert set(rows) == set(want)
    for key, w in want.items():
        assert {k: rows[key][k] for k in w} == w
    assert doc["totals"]["requests"] == sum(1 for e in EVENTS if since <= e.started_at < since + length)


def test_summary_percentiles_are_the_bucket_edge_of_the_exact_value(reads: SQLiteReads) -> None:
    doc = reads.summary(T0, T0 + SPAN_S, "app")
    ok = [e.duration_s for e in EVENTS if is_success(e)]
    p95 = exact_percentile(ok, 95)
    assert p95 is not None and doc["totals"]["duration_p95_s"] == UPPER[bucket_of(p95)]
    assert p95 <= doc["totals"]["duration_p95_s"] <= p95 * 1.045 + 1e-3


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(since=st.integers(0, SPAN_S).map(lambda s: T0 - 60 + s), length=st.integers(0, SPAN_S))
def test_tool_summary_equals_tool_stats_of_the_window(reads: SQLiteReads, since: float, length: int) -> None:
    inside = [e for e in EVENTS if since <= e.started_at < since + length]
    want = tool_stats(inside)
    got = reads.tool_summary(since, since + length)
    assert set(got) == set(want)
    for name, w in want.items():
        lat = [r.latency_s for e in inside for r in e.tool_results if r.name == name]
        assert got[name]["count"] == w["count"] and got[name]["measured"] == w["measured"]
        assert got[name]["errors"] == w["errors"] and got[name]["total_s"] == pytest.approx(w["total_s"])
        assert got[name]["p50_s"] == bucketed_percentile(lat, 50)
        assert got[name]["p95_s"] == bucketed_percentile(lat, 95)


DAYS = sample_events(17, 1500, span_s=4 * 86400)


@pytest.fixture(scope="module")
def days(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SQLiteReads]:
    r = open_reads(tmp_path_factory.mktemp("days") / "events.db", [DAYS])
    yield r
    r.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    since=st.integers(0, 4 * 86400).map(lambda s: T0 - 600 + s + 0.25),
    length=st.integers(0, 4 * 86400),
    group_by=st.sampled_from(["app", "model", "day"]),
)
def test_summaries_over_days_read_whole_days_at_the_daily_level(
    days: SQLiteReads, since: float, length: int, group_by: str
) -> None:
    doc = days.summary(since, since + length, group_by)
    inside = [e for e in DAYS if since <= e.started_at < since + length]
    rows = {r.get("key_ts", r["key"]): r for r in doc["rows"]}
    for key, row in rows.items():
        keyed = [
            e
            for e in inside
            if key
            == {"app": e.app, "model": model_name(e), "day": hour_of(e.started_at) // 86400 * 86400}[group_by]
        ]
        ok = [e for e in keyed if is_success(e)]
        assert row["model_calls"] == sum(1 for e in keyed if is_model_call(e))
        assert row["duration_p50_s"] == bucketed_percentile([e.duration_s for e in ok], 50)
        assert row["ttft_p95_s"] == bucketed_percentile([e.ttft_s for e in ok if e.ttft_s is not None], 95)
    assert sum(r["requests"] for r in rows.values()) == len(inside)
