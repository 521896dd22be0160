"""The read side on SQLite (SPEC R-RS-2..4): every order and filter, cursors, a session's calls in pages,
summaries over windows with partial hours, start-up reads — each checked against the events in Python."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.core.events import CallEvent
from sidecar.core.report import is_success
from sidecar.core.sessions import group_sessions, is_model_call, model_name, session_summary, tool_stats
from sidecar.core.sessions import percentile as exact_percentile
from sidecar.store.latency_buckets import UPPER, bucket_of
from sidecar.store.queries import (
    ORDER_FIELDS,
    ORDERS,
    InvalidQuery,
    SessionFilters,
    SessionQuery,
    encode_cursor,
)
from sidecar.store.sqlite import SQLiteStore
from sidecar.store.sqlite_purge import hour_of
from sidecar.store.sqlite_reads import SQLiteReads
from tests.store.reads_support import SPAN_S, T0, bucketed_percentile, expected_hourly, sample_events
from tests.store.test_sqlite_rollup import assert_rollups_match

NOW = T0 + SPAN_S + 300.0
IDLE = 900.0
EVENTS = sample_events(7, 600, sessions=("", *(f"s-{k:02d}" for k in range(40)), "t-1", "t-2"))


@pytest.fixture(scope="module")
def reads(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SQLiteReads]:
    path = tmp_path_factory.mktemp("reads") / "events.db"
    store = SQLiteStore(path)
    store.open()
    store.write_events(EVENTS[:400])
    store.write_events(EVENTS[300:])  # 100 duplicates
    store.close()
    r = SQLiteReads(path)
    yield r
    r.close()


def expected_list(order: str, f: SessionFilters) -> list[dict[str, Any]]:
    sessions = []
    for evs in group_sessions(EVENTS).values():
        s = session_summary(evs, now=NOW, idle_timeout_s=IDLE, with_calls=False)
        model = [e for e in evs if is_model_call(e)]
        s["tokens"] = sum(e.usage.total_input + e.usage.output_tokens for e in model)
        s["models"] = sorted({m for e in model if (m := e.model_canonical or e.model)})
        checks = (
            f.since is None or s["last_seen_at_ts"] >= f.since,
            f.until is None or s["started_at_ts"] < f.until,
            f.app is None or s["app"] == f.app,
            f.model is None or f.model in s["models"],
            f.min_cost_usd is None or s["cost_usd"] >= f.min_cost_usd,
            f.state is None or s["open"] == (f.state == "open"),
            not f.q or s["session_id"].startswith(f.q),
        )
        if all(checks):
            sessions.append(s)
    field = {"recent": "last_seen_at_ts", "tokens": "tokens", "calls": "model_calls"}.get(order)
    key = field or ORDER_FIELDS[order]
    sessions.sort(key=lambda s: s["session_id"])
    sessions.sort(key=lambda s: s[key], reverse=True)
    return sessions


def page_all(reads: SQLiteReads, order: str, f: SessionFilters, limit: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = reads.list_sessions(
            SessionQuery(now=NOW, idle_timeout_s=IDLE, filters=f, order=order, limit=limit, cursor=cursor)
        )
        assert len(page.sessions) <= limit
        out += page.sessions
        if page.next_cursor is None:
            return out
        assert len(page.sessions) == limit
        cursor = page.next_cursor


_filters = st.builds(
    SessionFilters,
    since=st.none() | st.integers(0, SPAN_S).map(lambda s: T0 + s),
    until=st.none() | st.integers(0, SPAN_S).map(lambda s: T0 + s),
    app=st.none() | st.sampled_from(["app-1", "app-2", "nope"]),
    model=st.none() | st.sampled_from(["claude-a", "claude-x"]),
    min_cost_usd=st.none() | st.sampled_from([0.0, 50.0, 500.0]),
    state=st.none() | st.sampled_from(["open", "closed"]),
    q=st.none() | st.sampled_from(["s-0", "s-1", "t", "x"]),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=st.sampled_from(ORDERS), f=_filters, limit=st.integers(1, 12))
def test_pages_list_every_matching_session_once_in_order(
    reads: SQLiteReads, order: str, f: SessionFilters, limit: int
) -> None:
    got = page_all(reads, order, f, limit)
    want = expected_list(order, f)
    assert [s["session_id"] for s in got] == [s["session_id"] for s in want]
    for g, w in zip(got, want, strict=True):
        assert {k: g[k] for k in w if k != "tokens"} == {k: w[k] for k in w if k != "tokens"}


def test_paging_is_stable_under_concurrent_inserts(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "e.db")
    store.open()
    base = sample_events(11, 300, sessions=[f"s-{k:02d}" for k in range(60)])
    store.write_events(base)
    reads = SQLiteReads(store.path)
    for order in ORDERS:
        seen: list[str] = []
        touched: set[str] = set()
        cursor = None
        extra = iter(sample_events(12 + len(seen), 400, sessions=[f"s-{k:02d}" for k in range(80)]))
        while True:
            q = SessionQuery(now=NOW, idle_timeout_s=IDLE, order=order, limit=7, cursor=cursor)
            page = reads.list_sessions(q)
            seen += [s["session_id"] for s in page.sessions]
            # Between pages, other calls land: in listed sessions, unlisted ones and new ones.
            batch = [replace(next(extra), event_id=f"x-{order}-{len(seen)}-{i}") for i in range(5)]
            store.write_events(batch)
            touched |= {e.session_id for e in batch}
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert len(seen) == len(set(seen)), order  # never twice
        untouched = {e.session_id for e in base} - touched
        assert untouched <= set(seen), order  # every session unchanged meanwhile: exactly once
    reads.close()
    store.close()


def test_session_detail_pages_calls_oldest_first(reads: SQLiteReads) -> None:
    sid = max(group_sessions(EVENTS).items(), key=lambda kv: len(kv[1]))[0]
    want = session_summary(group_sessions(EVENTS)[sid], now=NOW, idle_timeout_s=IDLE, with_calls=True)
    calls: list[dict[str, Any]] = []
    after = None
    while True:
        d = reads.session_detail(sid, now=NOW, idle_timeout_s=IDLE, calls_limit=4, calls_after=after)
        assert d is not None
        assert {k: d[k] for k in want if k != "calls"} == {k: v for k, v in want.items() if k != "calls"}
        calls += d["calls"]
        after = d["next_calls_after"]
        if after is None:
            break
    assert calls == want["calls"] and len(calls) > 4
    whole = reads.session_detail(sid, now=NOW, idle_timeout_s=IDLE)
    assert whole is not None and whole["calls"] == want["calls"] and whole["next_calls_after"] is None
    assert reads.session_detail("nope", now=NOW, idle_timeout_s=IDLE) is None


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


def test_start_up_reads(reads: SQLiteReads) -> None:
    since = T0 + SPAN_S - 1800
    counters = {c.session_id: c for c in reads.session_counters(since)}
    want = {
        sid: session_summary(evs, now=NOW, idle_timeout_s=IDLE, with_calls=False)
        for sid, evs in group_sessions(EVENTS).items()
    }
    assert set(counters) == {sid for sid, s in want.items() if s["last_seen_at_ts"] >= since}
    for sid, c in counters.items():
        assert (c.cost_usd, c.model_calls, c.tool_calls) == (
            want[sid]["cost_usd"],
            want[sid]["model_calls"],
            want[sid]["tool_calls"],
        )
    unpriced = reads.unpriced_calls(T0 + 3600, T0 + 7200)
    expected = sorted(
        (
            e
            for e in EVENTS
            if is_model_call(e) and e.cost_usd is None and T0 + 3600 <= e.started_at < T0 + 7200
        ),
        key=lambda e: (e.started_at, e.event_id),
    )
    assert unpriced == expected and expected


@pytest.mark.parametrize(
    ("make", "param"),
    [
        (lambda: SessionQuery(now=NOW, idle_timeout_s=IDLE, order="price"), "order"),
        (lambda: SessionQuery(now=NOW, idle_timeout_s=IDLE, limit=0), "limit"),
        (lambda: SessionQuery(now=NOW, idle_timeout_s=IDLE, limit=1001), "limit"),
        (lambda: SessionQuery(now=NOW, idle_timeout_s=IDLE, filters=SessionFilters(state="idle")), "state"),
    ],
)
def test_bad_parameters_name_themselves(make: Any, param: str) -> None:
    with pytest.raises(InvalidQuery) as info:
        make()
    assert info.value.param == param


@pytest.mark.parametrize("cursor", ["!!", "e30", encode_cursor("cost", 1.0, "s-01")])
def test_a_cursor_from_elsewhere_is_refused(reads: SQLiteReads, cursor: str) -> None:
    with pytest.raises(InvalidQuery) as info:
        reads.list_sessions(SessionQuery(now=NOW, idle_timeout_s=IDLE, order="recent", cursor=cursor))
    assert info.value.param == "cursor"
    with pytest.raises(InvalidQuery):
        reads.session_detail("s-01", now=NOW, idle_timeout_s=IDLE, calls_after="garbage")
    with pytest.raises(InvalidQuery):
        reads.summary(T0, T0 + 1, "week")


def test_a_write_during_a_chunked_purge_leaves_the_rollups_exact(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "e.db")
    store.open()
    old = sample_events(3, 500)
    store.write_events(old)
    store.purge_chunk_rows = 10
    late = [replace(e, event_id=f"late-{i}", started_at=T0 + SPAN_S) for i, e in enumerate(old[:20])]
    purge = threading.Thread(target=store.purge, args=(T0 + SPAN_S / 2,))
    purge.start()
    store.write_events(late)
    purge.join(timeout=120)
    store.close()
    kept = [e for e in old if e.started_at >= T0 + SPAN_S / 2] + late
    assert_rollups_match(tmp_path / "e.db", kept)


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


def test_threads_read_through_their_own_connections(reads: SQLiteReads) -> None:
    q = SessionQuery(now=NOW, idle_timeout_s=IDLE, order="cost", limit=20)
    expected = (reads.list_sessions(q), reads.summary(T0, T0 + SPAN_S, "hour"))
    results: list[object] = []

    def work() -> None:
        for _ in range(5):
            results.append((reads.list_sessions(q), reads.summary(T0, T0 + SPAN_S, "hour")))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(results) == 20 and all(r == expected for r in results)


DAYS = sample_events(17, 1500, span_s=4 * 86400)


@pytest.fixture(scope="module")
def days(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SQLiteReads]:
    path = tmp_path_factory.mktemp("days") / "events.db"
    store = SQLiteStore(path)
    store.open()
    store.write_events(DAYS)
    store.close()
    r = SQLiteReads(path)
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
