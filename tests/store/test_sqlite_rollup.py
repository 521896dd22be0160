"""SQLite rollups (SPEC R-RS-1): after any sequence of inserts, duplicates, retried batches, purges and
restarts, every rollup row equals the aggregate of the events still stored."""

from __future__ import annotations

import re
import sqlite3
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.core.events import CallEvent, PartialWrite
from sidecar.store.latency_buckets import UPPER
from sidecar.store.queries import SessionFilters, SessionQuery
from sidecar.store.sqlite import SQLiteStore
from sidecar.store.sqlite_purge import purge_chunk
from sidecar.store.sqlite_reads import SQLiteReads
from sidecar.store.sqlite_rollup_batch import INSERT_TRIGGERS, STATEMENTS
from sidecar.store.sqlite_schema import (
    AGENT_COLUMNS,
    CACHE_DIAGNOSIS_COLUMNS,
    EVENT_COLUMNS,
    MIGRATIONS,
    migrate,
)
from sidecar.store.sqlite_schema import event_to_row as sqlite_row
from tests.store.reads_support import (
    SPAN_S,
    T0,
    event_pool,
    expected_hist,
    expected_hourly,
    expected_sessions,
    first_wins,
    sample_events,
)

NOW = T0 + SPAN_S + 600.0
IDLE = 900.0
# An operation: ("write", indices into the pool) | ("purge", offset from T0) | ("reopen",).
_ops = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.lists(st.integers(0, 39), min_size=1, max_size=12)),
        st.tuples(st.just("purge"), st.integers(0, SPAN_S)),
        st.tuples(st.just("purge"), st.just(SPAN_S * 30)),  # past every event: every day emptied
        st.tuples(st.just("reopen")),
    ),
    min_size=1,
    max_size=12,
)


def rollup_rows(path: Path, table: str) -> list[dict[str, Any]]:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(f"SELECT * FROM {table}")]
    finally:
        conn.close()


def assert_rollups_match(path: Path, kept: list[CallEvent]) -> None:
    reads = SQLiteReads(path)
    try:
        page = reads.list_sessions(SessionQuery(now=NOW, idle_timeout_s=IDLE, limit=1000))
    finally:
        reads.close()
    expected = expected_sessions(kept, now=NOW, idle_timeout_s=IDLE)
    assert {s["session_id"]: s for s in page.sessions} == expected  # agent ids and providers included
    hourly = {(r.pop("hour"), r.pop("app"), r.pop("model")): r for r in rollup_rows(path, "hourly_rollup")}
    want = expected_hourly(kept)
    assert set(hourly) == set(want)
    for key, row in want.items():
        got = hourly[key]
        assert {k: got[k] for k in row} == row, key
        assert all(v == 0 for k, v in got.items() if k not in row), key
    hist = {
        (r["hour"], r["app"], r["model"], r["metric"], r["bucket"]): r["n"]
        for r in rollup_rows(path, "latency_hist")
    }
    assert hist == expected_hist(kept)
    daily = {
        (r["day"], r["app"], r["model"], r["metric"], r["bucket"]): r["n"]
        for r in rollup_rows(path, "latency_hist_daily")
    }
    assert daily == expected_hist(kept, 86400)


def _apply(path: Path, pool: list[CallEvent], ops: list[tuple[Any, ...]], chunk: int) -> list[CallEvent]:
    """Run ``ops`` on a new store at ``path``; return the events it keeps."""
    store = SQLiteStore(path)
    store.open()
    store.purge_chunk_rows = chunk
    kept: dict[str, CallEvent] = {}
    for op in ops:
        if op[0] == "write":
            batch = [pool[i % len(pool)] for i in op[1]]
            store.write_events(batch)
            kept = first_wins([list(kept.values()), batch])
        elif op[0] == "purge":
            cutoff = T0 + op[1]
            deleted = store.purge(cutoff)
            assert deleted == sum(1 for e in kept.values() if e.started_at < cutoff)
            kept = {k: e for k, e in kept.items() if e.started_at >= cutoff}
        else:
            store.close()
            store = SQLiteStore(path)
            store.open()
            store.purge_chunk_rows = chunk
    store.close()
    return list(kept.values())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pool=event_pool(), ops=_ops, chunk=st.integers(1, 9))
def test_rollups_equal_the_aggregate_of_the_stored_events(
    pool: list[CallEvent], ops: list[tuple[Any, ...]], chunk: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.db"
        assert_rollups_match(path, _apply(path, pool, ops, chunk))


def test_an_existing_file_is_rolled_up_by_the_migration(tmp_path: Path) -> None:
    # Events of the previous release carry no cache diagnosis (migration 3 adds its columns).
    pool = [replace(e, **dict.fromkeys(CACHE_DIAGNOSIS_COLUMNS)) for e in sample_events(1, 200)]
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    # A file written by the previous release: schema 1 only, events already in it.
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)")
    for statement in MIGRATIONS[0][1]:
        conn.execute(statement)
    conn.execute("INSERT INTO schema_migrations VALUES (1, 0)")
    # Its rows lack the columns later migrations add: they read as Anthropic calls, undiagnosed.
    added = (
        "provider",
        "cloud_region",
        "response_cache_savings_usd",
        *CACHE_DIAGNOSIS_COLUMNS,
        *AGENT_COLUMNS,
    )
    keep = [i for i, c in enumerate(EVENT_COLUMNS) if c not in added]
    names, marks = ", ".join(EVENT_COLUMNS[i] for i in keep), ", ".join("?" * len(keep))
    insert = f"INSERT INTO events ({names}) VALUES ({marks})"
    conn.executemany(insert, [tuple(sqlite_row(e)[i] for i in keep) for e in pool])
    conn.execute("COMMIT")
    assert migrate(conn, T0) == [v for v, _ in MIGRATIONS[1:]]
    conn.close()
    assert_rollups_match(path, pool)
    store = SQLiteStore(path)
    store.open()
    later = replace(sample_events(1, 2)[1], event_id="later", started_at=T0 + 10.0)  # a miss, rolled up
    assert later.cache_miss_cost_usd
    store.write_events([later])
    store.close()
    assert_rollups_match(path, [*pool, later])


def test_an_event_refused_by_sqlite_is_in_no_rollup(tmp_path: Path) -> None:
    pool = sample_events(2, 10)
    bad = replace(pool[0], event_id="bad", usage=replace(pool[0].usage, input_tokens=2**70))
    store = SQLiteStore(tmp_path / "e.db")
    store.open()
    with pytest.raises(PartialWrite):
        store.write_events([*pool[:5], bad, *pool[5:]])
    store.close()
    assert_rollups_match(tmp_path / "e.db", pool)


def test_the_bounds_table_holds_the_python_edges(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "e.db")
    store.open()
    store.close()
    rows = rollup_rows(tmp_path / "e.db", "latency_bounds")
    assert [r["upper"] for r in sorted(rows, key=lambda r: r["bucket"])] == list(UPPER)


def test_models_used_is_a_set_whatever_the_names(tmp_path: Path) -> None:
    names = ['a"b', "a", 'x,"y', "y", "a", 'y"', "[z]", "y"]
    base = sample_events(8, 1)[0]
    evs = [
        replace(
            base,
            event_id=f"m{i}",
            session_id="s",
            operation="chat",
            outcome="ok",
            model=n,
            model_canonical=None,
        )
        for i, n in enumerate(names)
    ]
    store = SQLiteStore(tmp_path / "e.db")
    store.open()
    for e in evs:
        store.write_events([e])
    store.close()
    reads = SQLiteReads(tmp_path / "e.db")
    (row,) = reads.list_sessions(SessionQuery(now=NOW, idle_timeout_s=IDLE)).sessions
    assert row["models"] == sorted(set(names))
    for model, found in [*((n, 1) for n in names), ("x", 0), ('"y', 0), ("b", 0), ("z", 0)]:
        query = SessionQuery(now=NOW, idle_timeout_s=IDLE, filters=SessionFilters(model=model))
        assert len(reads.list_sessions(query).sessions) == found, model
    reads.close()


def test_every_purge_chunk_commits_exact_rollups(tmp_path: Path) -> None:
    path = tmp_path / "e.db"
    store = SQLiteStore(path)
    store.open()
    store.write_events(sample_events(9, 400, span_s=3 * 86400))
    store.close()
    cutoff = T0 + 1.5 * 86400
    conn = sqlite3.connect(path, isolation_level=None)
    chunks = 0
    while True:
        conn.execute("BEGIN IMMEDIATE")
        n = purge_chunk(conn, cutoff, 25)
        conn.execute("COMMIT")
        if n == 0:
            break
        chunks += 1
        reader = SQLiteStore(path)
        reader.open()
        remaining = reader.events()
        reader.close()
        assert_rollups_match(path, remaining)  # after every chunk, not only at the end
    conn.close()
    assert chunks > 3 and all(e.started_at >= cutoff for e in remaining)


def test_the_batch_statements_read_only_the_batch_rows(tmp_path: Path) -> None:
    """Each rollup statement reaches the batch's events by rowid range, never by walking an index of the
    whole history (which would make every write cost what the history costs)."""
    store = SQLiteStore(tmp_path / "events.db")
    store.open()
    store.write_events(sample_events(3, 20))
    store.close()
    conn = sqlite3.connect(tmp_path / "events.db")
    try:
        triggers = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
        assert not triggers & set(INSERT_TRIGGERS)
        for sql in STATEMENTS:
            plan = [r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", {"after": 0, "upto": 20})]
            reads = [step for step in plan if re.match(r"(SCAN|SEARCH) [ef]\b", step)]
            assert reads, plan
            for step in reads:
                by_rowid = "INTEGER PRIMARY KEY (rowid>? AND rowid<?)" in step
                by_id = "INDEX sqlite_autoindex_events_1 (event_id=?)" in step
                assert by_rowid or by_id, (sql[:40], step)
    finally:
        conn.close()


def test_a_file_of_the_previous_schema_gains_agent_ids_and_providers(tmp_path: Path) -> None:
    # A file written at schema 5 (before agent ids): its events, then migration 6 on open.
    pool = sample_events(3, 60)
    path = tmp_path / "v5.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)")
    for version, statements in MIGRATIONS[:5]:
        for statement in statements:
            conn.execute(statement)
        conn.execute("INSERT INTO schema_migrations VALUES (?, 0)", (version,))
    keep = [i for i, c in enumerate(EVENT_COLUMNS) if c not in AGENT_COLUMNS]
    names, marks = ", ".join(EVENT_COLUMNS[i] for i in keep), ", ".join("?" * len(keep))
    rows = [tuple(sqlite_row(e)[i] for i in keep) for e in pool]
    conn.executemany(f"INSERT INTO events ({names}) VALUES ({marks})", rows)
    conn.execute("COMMIT")
    assert migrate(conn, T0) == [6, 7, 8]  # 7 gives the sessions rolled up before their providers
    conn.close()
    assert_rollups_match(path, pool)  # the old sessions still list, exactly
    store = SQLiteStore(path)
    store.open()
    sub = replace(pool[0], event_id="sub", agent_id="sub-1", parent_agent_id="main", provider="bedrock")
    store.write_events([sub])
    stored = {e.event_id: e for e in store.events()}
    store.close()
    assert stored["sub"] == sub and stored[pool[1].event_id] == pool[1]  # old rows: no agent ids
    assert stored[pool[1].event_id].agent_id is None
