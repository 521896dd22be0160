from __future__ import annotations

import dataclasses
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecar.core.events import CallEvent, Sink
from sidecar.core.usage import Usage
from sidecar.store import sqlite as sqlite_store
from sidecar.store.base import EventStore
from sidecar.store.sqlite import SQLiteStore
from sidecar.store.sqlite_schema import EVENT_COLUMNS, MIGRATIONS
from sidecar.telemetry.recorder import Recorder


def minimal_event(event_id: str = "ev-min", started_at: float = 1_700_000_000.0, **kw: object) -> CallEvent:
    base: dict[str, object] = {
        "event_id": event_id,
        "started_at": started_at,
        "app": "default",
        "session_id": "s-1",
        "session_source": "generated",
        "method": "GET",
        "path": "/v1/models",
        "operation": "models",
        "stream": False,
    }
    base.update(kw)
    return CallEvent(**base)  # type: ignore[arg-type]


def full_event() -> CallEvent:
    # Every field set to a non-default value, floats chosen to have no short decimal form.
    return CallEvent(
        event_id="ev-full",
        started_at=1_712_345_678.123456789,
        app="billing",
        session_id="sess-42",
        session_source="header",
        method="POST",
        path="/v1/messages",
        operation="chat",
        stream=True,
        model="claude-sonnet-4-5",
        model_canonical="claude-sonnet-4-5-20250929",
        request_id="req_011CPxyz",
        status=529,
        outcome="upstream_error",
        error_type="overloaded_error",
        stop_reason="tool_use",
        usage=Usage(
            input_tokens=3,
            output_tokens=777,
            cache_read_input_tokens=12_345,
            cache_creation_input_tokens=2_000,
            cache_creation_5m=500,
            cache_creation_1h=1_500,
            web_search_requests=2,
            web_fetch_requests=1,
            service_tier="priority",
            inference_geo="us",
            speed="fast",
        ),
        cost_usd=0.1 + 0.2,  # 0.30000000000000004: REAL must keep every bit
        cache_savings_usd=1 / 3,
        response_cache_savings_usd=2 / 3,
        ttfb_s=0.123456789012345,
        ttft_s=0.2,
        duration_s=12.000000000000002,
        overhead_s=0.000123,
        tool_use_ids=("toolu_01", "toolu_02"),
        tool_uses=("get_weather", "search ü"),
        cache_breakpoint_injected=True,
        system_hash="sha256:abcd",
        retry_count=2,
        key_fingerprint="fp:0123",
        request_bytes=123_456,
        response_bytes=654_321,
        provider="bedrock",
        cloud_region="us",
        cache_outcome="miss",
        cache_miss_reason="system_changed",
        cache_miss_detail="system block 1 changed at char 2,184 (digit run, timestamp-like)",
        cache_missed_tokens=12_346,
        cache_miss_cost_usd=0.042590000000000006,
        api_cache_miss_reason="system_changed",
        agent_id="agent-sub-ü7",
        parent_agent_id="agent-main-1",
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "nested" / "dir" / "events.db")
    s.open()
    yield s
    s.close()


def test_full_and_minimal_events_round_trip_exactly(store: SQLiteStore) -> None:
    full, minimal = full_event(), minimal_event()
    store.write_events([full, minimal])
    got_min, got_full = store.events()  # oldest first: minimal started in 2023, full in 2024
    assert got_full == full
    assert got_min == minimal
    assert got_full.cost_usd == 0.30000000000000004
    assert got_full.cache_savings_usd == 1 / 3
    assert got_full.started_at == 1_712_345_678.123456789
    assert got_full.usage.cache_creation_5m == 500 and got_full.usage.cache_creation_1h == 1_500
    assert got_full.tool_uses == ("get_weather", "search ü") and got_full.stream is True
    assert got_min.cost_usd is None
    assert got_min.usage.cache_creation_5m is None and got_min.usage.cache_creation_1h is None
    assert got_min.tool_uses == () and got_min.stream is False


def test_every_callevent_field_has_a_column(store: SQLiteStore) -> None:
    # Fields left out of comparisons (the answer's rate-limit headers) are not stored either.
    expected = {f.name for f in dataclasses.fields(CallEvent) if f.name != "usage" and f.compare}
    expected |= {f.name for f in dataclasses.fields(Usage)}
    assert set(EVENT_COLUMNS) == expected
    with sqlite3.connect(store.path) as conn:
        cols = {row[1]: (row[2], row[3]) for row in conn.execute("PRAGMA table_info(events)")}
    assert set(cols) == expected
    assert cols["cost_usd"] == ("REAL", 0)  # nullable
    assert cols["cache_creation_5m"] == ("INTEGER", 0)
    assert cols["input_tokens"] == ("INTEGER", 1)


def test_write_is_idempotent_by_event_id(store: SQLiteStore) -> None:
    first = minimal_event("ev-1", status=200)
    store.write_events([first])
    store.write_events([first, minimal_event("ev-1", status=500)])
    assert store.events() == [first]


def test_events_filters_and_orders_oldest_first(store: SQLiteStore) -> None:
    evs = [
        minimal_event("c", 300.0, session_id="a"),
        minimal_event("a", 100.0, session_id="a"),
        minimal_event("b", 200.0, session_id="b"),
        minimal_event("d", 300.0, session_id="b"),
    ]
    store.write_events(evs)

    def ids(got: list[CallEvent]) -> list[str]:
        return [e.event_id for e in got]

    assert ids(store.events()) == ["a", "b", "c", "d"]
    assert ids(store.events(since=200.0)) == ["b", "c", "d"]
    assert ids(store.events(until=300.0)) == ["a", "b"]
    assert ids(store.events(session_id="b")) == ["b", "d"]
    assert ids(store.events(since=150.0, session_id="a")) == ["c"]
    assert ids(store.events(limit=2)) == ["a", "b"]
    assert store.events(limit=0) == []
    with pytest.raises(ValueError):
        store.events(limit=-1)


def test_open_twice_and_reopen_apply_no_migration(store: SQLiteStore) -> None:
    store.open()
    store.close()
    store.open()
    with sqlite3.connect(store.path) as conn:
        rows = conn.execute("SELECT version, applied_at FROM schema_migrations").fetchall()
    assert [r[0] for r in rows] == [v for v, _ in MIGRATIONS]
    reopened = SQLiteStore(store.path)
    reopened.open()
    reopened.close()
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("SELECT version, applied_at FROM schema_migrations").fetchall() == rows


@pytest.mark.parametrize("with_empty_migrations_table", [False, True])
def test_database_at_version_zero_is_migrated(tmp_path: Path, with_empty_migrations_table: bool) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE unrelated (x INTEGER)")
        conn.execute("INSERT INTO unrelated VALUES (7)")
        if with_empty_migrations_table:
            conn.execute(
                "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
            )
    conn.close()
    s = SQLiteStore(path)
    s.open()
    s.write_events([minimal_event()])
    assert len(s.events()) == 1
    s.close()
    with sqlite3.connect(path) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations")]
        assert versions == [v for v, _ in MIGRATIONS]
        assert conn.execute("SELECT x FROM unrelated").fetchall() == [(7,)]
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    conn.close()
    assert {"events_started_at", "events_session_started_at", "events_app_started_at"} <= names


def test_wal_mode_is_on(store: SQLiteStore) -> None:
    conn = sqlite3.connect(store.path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        conn.close()


def test_parent_directories_are_created(tmp_path: Path) -> None:
    s = SQLiteStore.from_url(f"sqlite:///{tmp_path}/a/b/c.db")  # absolute: four slashes in total
    s.open()
    s.close()
    assert (tmp_path / "a" / "b" / "c.db").is_file()


def test_from_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = SQLiteStore.from_url("sqlite:///data/e.db", retention_days=7)
    assert store.path == tmp_path / "data" / "e.db" and store.retention_days == 7
    with pytest.raises(ValueError):
        SQLiteStore.from_url("sqlite:///:memory:")


def test_purge_and_hourly_maybe_purge(tmp_path: Path) -> None:
    day = 86_400.0
    now = 1_700_000_000.0
    s = SQLiteStore(tmp_path / "p.db", retention_days=2)
    s.open()
    s.write_events([minimal_event(f"e{i}", now - i * day) for i in range(5)])  # ages 0..4 days
    assert s.maybe_purge(now) == 2  # cutoff now - 2 days: ages 3 and 4 are older; age 2 is exactly at it
    assert [e.event_id for e in s.events()] == ["e2", "e1", "e0"]
    s.write_events([minimal_event("old", now - 10 * day)])
    assert s.maybe_purge(now + 3599) is None  # at most once an hour
    # An hour later the cutoff (now + 1 h - 2 days) has passed e2 too: "old" and e2 go.
    assert s.maybe_purge(now + 3600) == 2
    assert [e.event_id for e in s.events()] == ["e1", "e0"]
    assert s.purge(older_than=now + 1) == 2
    assert s.events() == []
    s.close()
    keep = SQLiteStore(tmp_path / "k.db", retention_days=0)
    keep.open()
    assert keep.maybe_purge(now) is None  # retention disabled
    keep.close()


def test_use_before_open_raises(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "x.db")
    with pytest.raises(RuntimeError):
        s.write_events([minimal_event()])
    with pytest.raises(RuntimeError):
        s.events()
    s.close()  # idempotent even when never opened


def test_reads_while_another_thread_writes(store: SQLiteStore) -> None:
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for b in range(50):
                store.write_events([minimal_event(f"w{b}-{i}", float(b * 10 + i)) for i in range(10)])
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=writer)
    t.start()
    seen = 0
    while t.is_alive():
        got = store.events()
        assert len(got) >= seen and len(got) % 10 == 0  # batches are atomic
        seen = len(got)
    t.join()
    assert errors == []
    assert len(store.events()) == 500


def test_store_is_an_event_store_and_a_recorder_sink(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "r.db")
    assert isinstance(store, EventStore)
    sink: Sink = store
    assert sink.name == "sqlite"
    store.open()
    rec = Recorder([store], batch_size=100, flush_interval_s=0.01)
    rec.start()
    sent = [minimal_event(f"r{i}", float(i)) for i in range(1000)]
    for e in sent:
        rec.submit(e)
    rec.stop()  # drains, then closes the store
    reopened = SQLiteStore(tmp_path / "r.db")
    reopened.open()
    assert reopened.events() == sent
    reopened.close()


def test_a_batch_larger_than_one_chunk_is_one_transaction(store: SQLiteStore) -> None:
    """Rows go in chunks (the writer yields the core between them) in one transaction per batch; a row
    that cannot be stored, even in the last chunk, costs only itself (the batch is written again row by
    row, not left half-committed)."""
    from sidecar.core.events import PartialWrite

    batch = [minimal_event(f"ev-{i:04d}", started_at=1_700_000_000.0 + i) for i in range(150)]
    store.write_events(batch)
    assert [e.event_id for e in store.events()] == [e.event_id for e in batch]

    bad = [minimal_event(f"ev-b{i:04d}", started_at=1_800_000_000.0 + i) for i in range(150)]
    bad[-1] = dataclasses.replace(bad[-1], request_bytes=object())  # type: ignore[arg-type]
    with pytest.raises(PartialWrite):
        store.write_events(bad)
    stored = [e.event_id for e in store.events(limit=1000)]
    assert len(stored) == 299 and len(set(stored)) == 299  # each once: the first attempt was rolled back
    assert "ev-b0149" not in stored


@pytest.mark.parametrize(
    "bad",
    [
        {"model": "claude-\ud800"},  # a lone surrogate: not encodable as UTF-8
        {"retry_count": 2**70},  # past SQLite's 64-bit integers
    ],
)
def test_one_unstorable_event_costs_only_itself_and_is_counted(
    store: SQLiteStore, bad: dict[str, object], caplog: pytest.LogCaptureFixture
) -> None:
    from sidecar.core.events import PartialWrite

    batch = [minimal_event(f"ev-{i}") for i in range(5)]
    batch[2] = minimal_event("ev-bad", **bad)
    with caplog.at_level("ERROR", logger="sidecar.store.sqlite"), pytest.raises(PartialWrite) as raised:
        store.write_events(batch)
    assert raised.value.failed == 1
    assert sorted(e.event_id for e in store.events()) == ["ev-0", "ev-1", "ev-3", "ev-4"]
    logged = [r for r in caplog.records if r.getMessage().startswith("event could not be stored")]
    assert [r.fields["event_id"] for r in logged] == ["ev-bad"]  # type: ignore[attr-defined]

    # Through the recorder: 4 counted as written, 1 as an error, and the store keeps working.
    results: dict[tuple[str, str], int] = {}

    def on_result(sink: str, outcome: str, n: int) -> None:
        results[(sink, outcome)] = results.get((sink, outcome), 0) + n

    from sidecar.telemetry.recorder import RecorderHooks

    rec = Recorder([store], flush_interval_s=0.01, hooks=RecorderHooks(on_sink_result=on_result))
    rec.start()
    for event in [minimal_event("ev-5"), minimal_event("ev-bad-2", **bad), minimal_event("ev-6")]:
        rec.submit(event)
    assert rec.flush(5)
    rec.stop()
    store.open()  # the recorder closed its sinks on stop
    assert results == {(store.name, "ok"): 2, (store.name, "error"): 1}
    assert {"ev-5", "ev-6"} <= {e.event_id for e in store.events()}


def test_a_purge_stops_quietly_when_the_store_closes_between_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shutdown closes the store while the housekeeping purge may be between two chunks: the purge ends
    with what it deleted (the rest waits for the next start) instead of raising on a closed store."""
    store = SQLiteStore(tmp_path / "events.db")
    store.open()
    base = full_event()
    # Ten past sessions of one call each: a chunk deletes whole sessions, three at a time here.
    store.write_events(
        [
            dataclasses.replace(base, event_id=f"e{i}", session_id=f"s{i}", started_at=1000.0 + i)
            for i in range(10)
        ]
    )
    store.purge_chunk_rows = 3
    monkeypatch.setattr(sqlite_store.PurgePacer, "after", lambda self, took: store.close())
    assert store.purge(2000.0) == 3  # one chunk, then the store was closed
    store.open()
    assert len(store.events()) == 7  # nothing lost beyond the committed chunk
    store.close()
