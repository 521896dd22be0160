"""The read side on ClickHouse (a real engine: chDB) answers as SQLite does on the same events."""

from __future__ import annotations

import dataclasses
import importlib.util
import math
from collections.abc import Iterator
from operator import attrgetter
from typing import Any

import pytest

from sidecar.store.chdb_client import ChdbClient
from sidecar.store.clickhouse import ClickHouseStore
from sidecar.store.clickhouse_reads import ClickHouseReads
from sidecar.store.clickhouse_rows import EVENT_COLUMNS, event_to_row
from sidecar.store.clickhouse_schema import SchemaOptions, migrate
from sidecar.store.queries import ORDERS, SessionFilters, SessionQuery
from sidecar.store.sqlite import SQLiteStore
from sidecar.store.sqlite_reads import SQLiteReads
from sidecar.store.sqlite_schema import CACHE_DIAGNOSIS_COLUMNS as CACHE_COLUMNS
from tests.conftest import require_service
from tests.store.reads_support import SPAN_S, T0, expected_sessions, sample_events

NOW = T0 + SPAN_S + 300.0
IDLE = 900.0
EVENTS = sample_events(21, 500, sessions=("", *(f"s-{k:02d}" for k in range(30)), "t-1"))
SCHEMA = SchemaOptions(database="sidecar", ttl_days=0)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChdbClient]:
    # One embedded engine per process and data directory: the module's tests share it.
    require_service(importlib.util.find_spec("chdb") is not None, "chdb (pip install chdb)")
    client = ChdbClient(tmp_path_factory.mktemp("chdb"))
    yield client
    client.close()


@pytest.fixture(scope="module")
def both(
    engine: ChdbClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[SQLiteReads, ClickHouseReads]]:
    tmp = tmp_path_factory.mktemp("parity")
    client = engine
    ch = ClickHouseStore(client.borrow, SCHEMA)
    ch.open()
    lite = SQLiteStore(tmp / "events.db")
    lite.open()
    for store in (ch, lite):
        store.write_events(EVENTS[:250])
        store.write_events(EVENTS[250:])
        store.write_events(EVENTS[250:])  # a retried batch: stored and rolled up once
    lite.close()
    ch.close()
    sqlite_reads = SQLiteReads(tmp / "events.db")
    yield sqlite_reads, ClickHouseReads(client, SCHEMA)
    sqlite_reads.close()


def same(a: Any, b: Any, where: str = "") -> None:
    """Equal, floats within 1e-9 (ClickHouse and SQLite may add in another order)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), where
        for k in a:
            same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9), (where, a, b)
    else:
        assert a == b, (where, a, b)


FILTERS = [
    SessionFilters(),
    SessionFilters(since=T0 + 3600, until=T0 + 7200),
    SessionFilters(app="app-2", state="open"),
    SessionFilters(model="claude-b", min_cost_usd=100.0),
    SessionFilters(q="s-1", state="closed"),
]


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("f", FILTERS)
def test_sessions_pages_are_the_same(both: tuple[SQLiteReads, ClickHouseReads], order: str, f: Any) -> None:
    lite, ch = both
    cursor_a = cursor_b = None
    pages = 0
    while True:
        pa = lite.list_sessions(SessionQuery(NOW, IDLE, f, order, 6, cursor_a))
        pb = ch.list_sessions(SessionQuery(NOW, IDLE, f, order, 6, cursor_b))
        same(pa.sessions, pb.sessions, f"page {pages}")
        assert (pa.next_cursor is None) == (pb.next_cursor is None)
        pages += 1
        if pa.next_cursor is None:
            break
        cursor_a, cursor_b = pa.next_cursor, pb.next_cursor
    assert pages >= 1


def test_session_detail_is_the_same(both: tuple[SQLiteReads, ClickHouseReads]) -> None:
    lite, ch = both
    for sid in ("s-03", "t-1"):
        after_a = after_b = None
        while True:
            a = lite.session_detail(sid, now=NOW, idle_timeout_s=IDLE, calls_limit=5, calls_after=after_a)
            b = ch.session_detail(sid, now=NOW, idle_timeout_s=IDLE, calls_limit=5, calls_after=after_b)
            assert a is not None and b is not None
            same(a, b, sid)
            after_a, after_b = a["next_calls_after"], b["next_calls_after"]
            if after_a is None:
                break
    assert ch.session_detail("nope", now=NOW, idle_timeout_s=IDLE) is None


@pytest.mark.parametrize("group_by", ["app", "model", "hour", "day"])
@pytest.mark.parametrize("window", [(T0, T0 + SPAN_S), (T0 + 1234.5, T0 + 9000.25), (T0 + 10.0, T0 + 20.0)])
def test_summary_is_the_same(
    both: tuple[SQLiteReads, ClickHouseReads], group_by: str, window: tuple[float, float]
) -> None:
    lite, ch = both
    a, b = lite.summary(*window, group_by), ch.summary(*window, group_by)
    same(a, b)
    assert window[1] - window[0] < 60 or a["totals"]["duration_p95_s"] is not None


@pytest.mark.parametrize("window", [(T0, T0 + SPAN_S), (T0 + 1234.5, T0 + 9000.25)])
def test_tool_summary_is_the_same(
    both: tuple[SQLiteReads, ClickHouseReads], window: tuple[float, float]
) -> None:
    lite, ch = both
    a = lite.tool_summary(*window)
    same(a, ch.tool_summary(*window))
    assert a and all(t["measured"] + t["count"] > 0 for t in a.values())


def test_session_agent_ids_and_providers_are_the_same(both: tuple[SQLiteReads, ClickHouseReads]) -> None:
    lite, ch = both
    query = SessionQuery(NOW, IDLE, limit=1000)
    same(lite.list_sessions(query).sessions, ch.list_sessions(query).sessions)


def test_the_rollup_lists_the_agent_ids_and_providers_of_the_events(engine: ChdbClient) -> None:
    o = SchemaOptions(database="agents", ttl_days=0)
    evs = sample_events(31, 300, sessions=("", *(f"s-{k:02d}" for k in range(12))), agents=True)
    store = ClickHouseStore(engine.borrow, o)
    store.open()
    store.write_events(evs[:150])
    store.write_events(evs[150:])
    store.write_events(evs[150:])  # a retried batch: nothing counts twice
    store.close()
    reads = ClickHouseReads(engine, o)
    got = {s["session_id"]: s for s in reads.list_sessions(SessionQuery(NOW, IDLE, limit=1000)).sessions}
    want = expected_sessions(evs, now=NOW, idle_timeout_s=IDLE)
    same(got, want)  # every field, agent ids and providers included
    assert any(len(s["agent_ids"]) == 3 for s in got.values())
    assert any(len(s["providers"]) == 3 for s in got.values())
    detail = reads.session_detail("s-03", now=NOW, idle_timeout_s=IDLE)
    assert detail is not None and detail["calls"]
    by_time = sorted((e for e in evs if e.session_id == "s-03"), key=lambda e: (e.started_at, e.event_id))
    assert [(c["agent_id"], c["parent_agent_id"], c["provider"]) for c in detail["calls"]] == [
        (e.agent_id, e.parent_agent_id, e.provider) for e in by_time
    ]


def test_sessions_rolled_up_before_migration_8_gain_agents_from_new_calls(engine: ChdbClient) -> None:
    o = SchemaOptions(database="before_agents", ttl_days=0)
    assert migrate(engine, o, T0, upto=7) == [1, 2, 3, 4, 5, 6, 7]
    old = sample_events(32, 30, sessions=["s-x"], agents=True)
    engine.insert("before_agents.events", [event_to_row(e) for e in old], EVENT_COLUMNS)
    assert migrate(engine, o, T0) == [8]
    reads = ClickHouseReads(engine, o)
    query = SessionQuery(NOW, IDLE, SessionFilters(q="s-x"))
    (row,) = reads.list_sessions(query).sessions
    assert row["agent_ids"] == [] and row["providers"] == []  # not collected before the migration
    assert row["events"] == len(old)
    late = dataclasses.replace(old[1], event_id="late", agent_id="sub-9", provider="vertex")
    engine.insert("before_agents.events", [event_to_row(late)], EVENT_COLUMNS)
    (row,) = reads.list_sessions(query).sessions
    assert row["agent_ids"] == ["sub-9"] and row["providers"] == ["vertex"]
    assert row["events"] == len(old) + 1
    detail = reads.session_detail("s-x", now=NOW, idle_timeout_s=IDLE)
    assert detail is not None
    assert {c["agent_id"] for c in detail["calls"]} == {e.agent_id for e in [*old, late]}


def test_start_up_reads_are_the_same(both: tuple[SQLiteReads, ClickHouseReads]) -> None:
    lite, ch = both
    since = T0 + SPAN_S - 3600
    same(
        [dataclasses.asdict(c) for c in lite.session_counters(since)],
        [dataclasses.asdict(c) for c in ch.session_counters(since)],
    )
    assert lite.unpriced_calls(T0, T0 + 3600) == ch.unpriced_calls(T0, T0 + 3600)


@pytest.mark.parametrize("window", [(T0, T0 + SPAN_S), (T0 + 1234.5, T0 + 9000.25)])
def test_report_reads_are_the_same(
    both: tuple[SQLiteReads, ClickHouseReads], window: tuple[float, float]
) -> None:
    lite, ch = both
    key = attrgetter("session_id", "reason")
    groups = sorted(lite.cache_miss_groups(*window), key=key)
    same(
        [dataclasses.asdict(g) for g in groups],
        [dataclasses.asdict(g) for g in sorted(ch.cache_miss_groups(*window), key=key)],
    )
    # The reference, from the events: every miss in the window once, under its session and reason.
    since, until = window
    missed = [e for e in EVENTS if since <= e.started_at < until and e.cache_miss_reason is not None]
    assert sum(g.misses for g in groups) == len(missed) > 10
    assert sum(g.missed_tokens for g in groups) == sum(e.cache_missed_tokens or 0 for e in missed)
    first = min(missed, key=lambda e: e.started_at)
    (g0,) = [g for g in groups if (g.session_id, g.reason) == (first.session_id, first.cache_miss_reason)]
    assert (g0.first_at, g0.app) == (first.started_at, first.app)
    hits = [e for e in EVENTS if since <= e.started_at < until and e.outcome == "cache_hit"]
    expected = (len(hits), math.fsum(e.response_cache_savings_usd for e in hits))
    assert lite.response_cache_hits(*window) == ch.response_cache_hits(*window) == expected


def test_sessions_written_before_migration_3_still_list(engine: ChdbClient) -> None:
    o = SchemaOptions(database="legacy", ttl_days=0)
    assert migrate(engine, o, T0, upto=2) == [1, 2]
    old = sample_events(5, 40, sessions=["s-old"])
    # Rows as a version-2 writer sent them: without the columns migrations 4 and 5 add.
    later = (
        "provider",
        "cloud_region",
        "response_cache_savings_usd",
        *CACHE_COLUMNS,
        "agent_id",
        "parent_agent_id",
    )
    keep = [i for i, c in enumerate(EVENT_COLUMNS) if c not in later]
    rows = [tuple(event_to_row(e)[i] for i in keep) for e in old]
    engine.insert("legacy.events", rows, tuple(EVENT_COLUMNS[i] for i in keep))
    assert migrate(engine, o, T0) == [3, 4, 5, 6, 7, 8]
    new = [dataclasses.replace(e, event_id=f"new-{i}") for i, e in enumerate(sample_events(6, 10))]
    engine.insert("legacy.events", [event_to_row(e) for e in new], EVENT_COLUMNS)
    reads = ClickHouseReads(engine, o)
    (row,) = reads.list_sessions(SessionQuery(NOW, IDLE, SessionFilters(q="s-old"))).sessions
    model = [e for e in old if e.operation == "chat" and e.outcome != "refused"]
    assert row["model_calls"] == len(model)
    assert row["tokens"] == sum(e.usage.total_input + e.usage.output_tokens for e in model)
    assert row["started_at_ts"] == pytest.approx(min(e.started_at for e in old), abs=1e-6)
    assert row["models"] == []  # not known for rows rolled up before the migration
    assert row["session_source"] == ""  # nor the source
