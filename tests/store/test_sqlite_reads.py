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

from sidecar.core.sessions import group_sessions, is_model_call, session_summary
from sidecar.store.queries import (
    ORDER_FIELDS,
    ORDERS,
    InvalidQuery,
    SessionFilters,
    SessionQuery,
    encode_cursor,
)
from sidecar.store.sqlite import SQLiteStore
from sidecar.store.sqlite_reads import SQLiteReads
from tests.store.reads_support import EVENTS, SPAN_S, T0, open_reads, sample_events
from tests.store.test_sqlite_rollup import assert_rollups_match

NOW = T0 + SPAN_S + 300.0
IDLE = 900.0


@pytest.fixture(scope="module")
def reads(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SQLiteReads]:
    r = open_reads(tmp_path_factory.mktemp("reads") / "events.db", [EVENTS[:400], EVENTS[300:]])
    yield r
    r.close()


def expected_list(order: str, f: SessionFilters) -> list[dict[str, Any]]:
    sessions = []
    for evs in group_sessions(EVENTS).values():
        s = session_summary(evs, now=NOW, idle_timeout_s=IDLE, with_calls=False)
        model = [e for e in evs if is_model_call(e)]
        s["tokens"] = sum(e.usage.total_input + e.usage.output_tokens for e in model)
        s["models"] = sorted({m for e in model if (m := e.model_canonical or e.model)})
        s.pop("cache_misses_by_reason")  # in the session detail only
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
