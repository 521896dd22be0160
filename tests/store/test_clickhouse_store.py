"""ClickHouseStore on a real engine (chDB), the clickhouse-connect adapter at its seam, URLs and wiring,
and the shipped Grafana queries."""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import clickhouse_connect
import pytest
from clickhouse_connect.driver.client import Client as ConnectClient
from clickhouse_connect.driver.httpclient import HttpClient

import sidecar
from sidecar.core.events import CallEvent, ToolResult
from sidecar.core.sessions import group_sessions, session_summary, tool_stats
from sidecar.core.usage import Usage
from sidecar.store.chdb_client import ChdbClient
from sidecar.store.clickhouse import (
    ClickHouseConnectClient,
    ClickHouseStore,
    ClickHouseStoreError,
    connect_clickhouse,
    dedup_token,
)
from sidecar.store.clickhouse_rows import EVENT_COLUMNS, event_to_row
from sidecar.store.clickhouse_schema import SchemaOptions
from sidecar.store.factory import (
    StoreConfig,
    build_event_stores,
    parse_clickhouse_url,
    redact_url,
)
from sidecar.store.shipper import ShipperOptions
from sidecar.store.sqlite import SQLiteStore
from tests.conftest import require_service
from tests.store.test_sqlite import full_event, minimal_event

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
DAY = 86400.0
SQL_DIR = Path(sidecar.__file__).parent / "data" / "clickhouse"


@pytest.fixture
def chdb_client(tmp_path: Path) -> Iterator[ChdbClient]:
    require_service(
        importlib.util.find_spec("chdb") is not None, "chdb (in-process ClickHouse: pip install chdb)"
    )
    client = ChdbClient(tmp_path / "chdb")
    yield client
    client.close()


@pytest.fixture
def store(chdb_client: ChdbClient) -> Iterator[ClickHouseStore]:
    s = ClickHouseStore(chdb_client.borrow, SchemaOptions(database="sidecar", ttl_days=0))
    s.open()
    yield s
    s.close()


def chat(event_id: str, started_at: float, session: str, app: str = "support", **kw: Any) -> CallEvent:
    base: dict[str, Any] = {
        "method": "POST",
        "path": "/v1/messages",
        "operation": "chat",
        "stream": True,
        "model": "claude-sonnet-4-5",
        "model_canonical": "claude-sonnet-4-5",
        "status": 200,
        "duration_s": 1.0,
    }
    base.update(kw)
    return minimal_event(event_id, started_at, session_id=session, app=app, **base)


# --- the store on chDB ------------------------------------------------------------------------------


def test_full_and_minimal_events_round_trip_exactly(store: ClickHouseStore) -> None:
    full, minimal = full_event(), minimal_event()
    store.write([full, minimal])  # the Sink name of write_events
    got_min, got_full = store.events()
    assert got_full == full and got_min == minimal
    assert got_full.started_at == 1_712_345_678.123456789 and got_full.cost_usd == 0.30000000000000004
    assert got_full.tool_uses == ("get_weather", "search ü") and got_min.cost_usd is None


def test_a_retried_batch_is_stored_once_everywhere(store: ClickHouseStore, chdb_client: ChdbClient) -> None:
    batch = [
        chat("e1", T0, "s1", cost_usd=0.5, tool_results=(ToolResult("t1", "grep", 2.0, False),)),
        chat("e2", T0 + 1, "s1", cost_usd=0.25),
    ]
    store.write_events(batch)
    store.write_events(batch)  # same ids, same order: same token, dropped by the server
    # No FINAL, no merge: one row per event, and the views were not fed twice either.
    assert chdb_client.query("SELECT count() FROM sidecar.events") == [(2,)]
    assert chdb_client.query("SELECT count() FROM sidecar.tool_calls") == [(1,)]
    assert chdb_client.query("SELECT sum(cost_usd), sum(model_calls) FROM sidecar.sessions_rollup") == [
        (0.75, 2)
    ]
    store.write_events([batch[1], chat("e3", T0 + 2, "s1")])  # overlaps a stored event in a new batch
    assert [e.event_id for e in store.events()] == ["e1", "e2", "e3"]  # FINAL still returns it once


def test_dedup_token_depends_on_the_ids_in_order() -> None:
    a, b = minimal_event("a"), minimal_event("b")
    assert dedup_token([a, b]) == dedup_token([dataclasses.replace(a, status=500), b])
    assert dedup_token([a, b]) != dedup_token([b, a]) != dedup_token([a])
    assert dedup_token([a]).startswith("sidecar-") and len(dedup_token([a])) == len("sidecar-") + 64


def test_events_filters_and_orders_like_sqlite(store: ClickHouseStore) -> None:
    store.write_events(
        [
            minimal_event("c", 300.0, session_id="a"),
            minimal_event("a", 100.0, session_id="a"),
            minimal_event("b", 200.0, session_id="b"),
            minimal_event("d", 300.0, session_id="b"),
        ]
    )

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


def test_purge_deletes_old_events_and_their_tool_calls(
    store: ClickHouseStore, chdb_client: ChdbClient
) -> None:
    old = chat("old", T0, "s1", tool_results=(ToolResult("t1", "grep", 1.0, False),))
    new = chat("new", T0 + DAY, "s1", tool_results=(ToolResult("t2", "grep", 1.0, False),))
    store.write_events([old, new])
    assert store.purge(T0 + 1) == 1
    assert store.events() == [new]
    assert chdb_client.query("SELECT event_id FROM sidecar.tool_calls") == [("new",)]
    assert store.purge(T0 + 1) == 0


def test_read_only_open_needs_an_existing_schema(chdb_client: ChdbClient) -> None:
    reader = ClickHouseStore(chdb_client.borrow, SchemaOptions(database="nothing_here"), migrate=False)
    with pytest.raises(ClickHouseStoreError, match="no sidecar schema"):
        reader.open()
    assert not reader.is_open
    with pytest.raises(RuntimeError):
        reader.events()


def test_ttl_drops_expired_rows(chdb_client: ChdbClient) -> None:
    s = ClickHouseStore(chdb_client.borrow, SchemaOptions(database="short", ttl_days=1))
    s.open()
    s.write_events([chat("ancient", T0 - 400 * DAY, "s1")])  # far past its TTL: gone at insert
    assert s.events() == []
    s.close()


def test_rollup_agrees_with_the_session_summary(store: ClickHouseStore, chdb_client: ChdbClient) -> None:
    evs = grafana_traffic()
    store.write_events(evs[:3])
    store.write_events(evs[3:])  # a session's rows span two inserts: the rollup sums them again
    rows = chdb_client.query(
        "SELECT session_id, sum(model_calls), sum(error_calls), sum(tool_calls), sum(input_tokens), "
        "sum(cost_usd), sum(unpriced_calls), sum(model_time_s), sum(tool_time_s), "
        "toUnixTimestamp64Micro(min(started_at)), toUnixTimestamp64Micro(max(last_seen_at)) "
        "FROM sidecar.sessions_rollup GROUP BY app, session_id ORDER BY session_id"
    )
    for row, (sid, sess) in zip(rows, sorted(group_sessions(evs).items()), strict=True):
        s = session_summary(sess, now=T0 + 3 * DAY, idle_timeout_s=900, with_calls=False)
        keys = ("model_calls", "error_calls", "tool_calls", "input_tokens")
        assert row[:5] == (sid, *(s[k] for k in keys))
        assert row[5] == pytest.approx(s["cost_usd"]) and row[6] == s["unpriced_calls"]
        assert row[7] == pytest.approx(s["model_time_s"]) and row[8] == pytest.approx(s["tool_time_s"])
        assert row[9:] == (round(s["started_at_ts"] * 1e6), round(s["last_seen_at_ts"] * 1e6))


# --- the shipped Grafana queries -------------------------------------------------------------------


def grafana_traffic() -> list[CallEvent]:
    grep, read = "grep", "read"
    return [
        chat("a1", T0 + 3600, "s1", cost_usd=0.5, tool_uses=(grep,), usage=Usage(100, 10)),
        chat("a2", T0 + 3700, "s1", cost_usd=0.25, duration_s=2.0,
             tool_results=(ToolResult("t1", grep, 2.0, False),)),
        chat("a3", T0 + 3800, "s1", operation="count_tokens", path="/v1/messages/count_tokens"),
        chat("b1", T0 + DAY + 100, "s2", "batch", cost_usd=1.0, status=529, outcome="upstream_error",
             tool_results=(ToolResult("t2", grep, 4.0, True), ToolResult("t3", read, 1.0, False))),
        chat("b2", T0 + DAY + 150, "s2", "batch", cost_usd=9.0, outcome="refused", status=429),
        chat("c1", T0 + DAY + 200, "s3", cost_usd=None, tool_results=(ToolResult("t4", grep, 6.0, False),)),
    ]  # fmt: skip


def grafana(client: ChdbClient, name: str, start: float, end: float) -> list[tuple[Any, ...]]:
    """Run a shipped query the way Grafana's ClickHouse data source expands its macros."""
    sql = (SQL_DIR / name).read_text()
    frm, to = f"toDateTime({int(start)})", f"toDateTime({int(end)})"
    sql = sql.replace("$__timeFilter(started_at)", f"started_at >= {frm} AND started_at <= {to}")
    sql = sql.replace("$__fromTime", frm).replace("$__toTime", to)
    assert "$__" not in sql
    client.command("USE sidecar")  # Grafana: the data source's default database
    return client.query(sql)


def test_grafana_cost_by_app_per_day(store: ClickHouseStore, chdb_client: ChdbClient) -> None:
    store.write_events(grafana_traffic())
    rows = grafana(chdb_client, "cost_by_app_per_day.sql", T0, T0 + 2 * DAY)
    # Day 1: support a1 + a2 = 0.75 (a3 is count_tokens). Day 2: batch b1 = 1.0 (b2 was refused),
    # support c1 is unpriced = 0.
    assert rows == [
        ("2026-01-01 00:00:00", "support", 0.75),
        ("2026-01-02 00:00:00", "batch", 1.0),
        ("2026-01-02 00:00:00", "support", 0.0),
    ]
    assert grafana(chdb_client, "cost_by_app_per_day.sql", T0, T0 + DAY - 1) == [rows[0]]


def test_grafana_tool_latency_uses_the_report_percentiles(
    store: ClickHouseStore, chdb_client: ChdbClient
) -> None:
    evs = grafana_traffic()
    store.write_events(evs)
    rows = grafana(chdb_client, "tool_latency_per_tool.sql", T0, T0 + 2 * DAY)
    # grep: 2, 4, 6 s; nearest rank p50 = 2nd of 3 = 4 s, p95 = 3rd = 6 s; one error. read: 1 s once.
    assert rows == [("grep", 3, 1, 4.0, 6.0, 12.0), ("read", 1, 0, 1.0, 1.0, 1.0)]
    stats = tool_stats(evs)
    for tool, measured, errors, p50, p95, total in rows:
        core = stats[tool]
        assert (measured, errors, p50, p95, total) == (
            core["measured"], core["errors"], core["p50_s"], core["p95_s"], core["total_s"]
        )  # fmt: skip


def test_grafana_top_sessions_by_cost(store: ClickHouseStore, chdb_client: ChdbClient) -> None:
    store.write_events(grafana_traffic())
    rows = grafana(chdb_client, "top_sessions_by_cost.sql", T0, T0 + 2 * DAY)
    # (session, app, calls, tools, input tokens, cost, unpriced): b2 was refused, a3 is no model call.
    got = [(r[0], r[1], r[4], r[5], r[6], r[8], r[9]) for r in rows]
    assert got == [
        ("s2", "batch", 1, 0, 0, 1.0, 0),
        ("s1", "support", 2, 1, 100, 0.75, 0),
        ("s3", "support", 1, 0, 0, 0.0, 1),
    ]
    # Only sessions whose last call ended in the range: s1 ended on day 1.
    late = grafana(chdb_client, "top_sessions_by_cost.sql", T0 + DAY, T0 + 2 * DAY)
    assert [r[0] for r in late] == ["s2", "s3"]


# --- clickhouse-connect, at its seam ---------------------------------------------------------------


class RecordingConnectClient:
    """Stands in for ``clickhouse_connect.driver.Client``: same method names and parameters, records
    every call, answers the few queries the store makes."""

    def __init__(self, rows: list[tuple[Any, ...]] | None = None, fail_with: str | None = None) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.version = 0
        self.rows = rows or []
        self.fail_with = fail_with
        self.closed = False

    def command(self, cmd: str, parameters: Any = None, data: Any = None, settings: Any = None) -> str:
        self.calls.append(("command", (cmd,), {"settings": settings}))
        return ""

    def insert(
        self,
        table: str | None = None,
        data: Any = None,
        column_names: Any = "*",
        database: Any = None,
        settings: Any = None,
    ) -> None:
        kw = {"column_names": column_names, "database": database, "settings": settings}
        self.calls.append(("insert", (table, data), kw))
        if self.fail_with:
            raise ConnectionError(self.fail_with)

    def query(self, query: str | None = None, parameters: Any = None, settings: Any = None) -> Any:
        self.calls.append(("query", (query,), {"parameters": parameters}))
        if query and query.startswith("SELECT max(version)"):
            return SimpleNamespace(result_rows=[(self.version,)])
        if query and query.startswith("SELECT engine_full FROM system.tables"):
            return SimpleNamespace(
                result_rows=[("ReplacingMergeTree TTL toDateTime(t) + toIntervalDay(30)",)]
            )
        if query and "FROM system.tables" in query:
            return SimpleNamespace(result_rows=[(1,)])
        if query and "system.columns" in query:
            return SimpleNamespace(result_rows=[(c,) for c in EVENT_COLUMNS])
        return SimpleNamespace(result_rows=self.rows)

    def close(self) -> None:
        self.closed = True


def assert_binds_to_clickhouse_connect(calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]]) -> None:
    for method, args, kwargs in calls:
        inspect.signature(getattr(ConnectClient, method)).bind(None, *args, **kwargs)


URL = "clickhouse://writer:s3cr%40t@ch.internal:8443/analytics?secure=1&verify=0&ca_cert=/etc/ca.pem"


def test_connect_passes_url_settings_to_clickhouse_connect() -> None:
    seen: dict[str, Any] = {}

    def get_client(**kwargs: Any) -> RecordingConnectClient:
        seen.update(kwargs)
        return RecordingConnectClient()

    connect_clickhouse(parse_clickhouse_url(URL), get_client=get_client)
    assert {k: seen[k] for k in ("host", "port", "username", "password", "secure", "verify", "ca_cert")} == {
        "host": "ch.internal", "port": 8443, "username": "writer", "password": "s3cr@t", "secure": True,
        "verify": False, "ca_cert": "/etc/ca.pem",
    }  # fmt: skip
    assert seen["autogenerate_session_id"] is False and seen["query_retries"] == 0
    # Every keyword exists in the real library: get_client's own, or HttpClient's (it hands those on).
    named = inspect.signature(clickhouse_connect.get_client).parameters
    http = inspect.signature(HttpClient.__init__).parameters
    assert [k for k in seen if k not in named and k not in http] == []


def test_store_sends_migrations_inserts_and_parameterised_queries() -> None:
    stored = [full_event(), minimal_event()]
    fake = RecordingConnectClient(rows=[event_to_row(e) for e in stored])
    store = ClickHouseStore(lambda: ClickHouseConnectClient(fake), SchemaOptions(database="analytics"))
    store.open()
    commands = [args[0] for kind, args, _ in fake.calls if kind == "command"]
    assert commands[0] == "CREATE DATABASE IF NOT EXISTS analytics"
    assert commands[1].startswith("CREATE TABLE IF NOT EXISTS analytics.sidecar_schema_migrations")
    assert commands[2].startswith("CREATE TABLE IF NOT EXISTS analytics.events")
    # bootstrap, v1, v2, v3, v4, v5, v6, v7, v8, each followed by its record
    assert len(commands) == 2 + 5 + 1 + 1 + 1 + 2 + 1 + 1 + 1 + 1 + 1 + 2 + 1 + 1 + 1 + 2 + 1
    recorded = [c for c in commands if c.startswith("INSERT INTO analytics.sidecar_schema_migrations")]
    assert len(recorded) == 8
    assert all(f"VALUES ({v}, " in c for v, c in zip((1, 2, 3, 4, 5, 6, 7, 8), recorded, strict=True))
    fake.calls.clear()
    store.write_events(stored)
    ((kind, (table, data), kw),) = fake.calls
    assert (kind, table, kw["database"], kw["column_names"]) == (
        "insert",
        "events",
        "analytics",
        list(EVENT_COLUMNS),
    )
    assert data == [list(event_to_row(e)) for e in stored]
    assert kw["settings"]["insert_deduplication_token"] == dedup_token(stored)
    assert kw["settings"]["insert_deduplicate"] == 1 and kw["settings"]["async_insert"] == 0
    fake.calls.clear()
    assert store.events(since=10.5, session_id="s'; DROP", limit=5) == stored
    ((_, (sql,), kw),) = fake.calls
    assert "started_at_unix >= {since:Float64}" in sql and "session_id = {session_id:String}" in sql
    assert sql.endswith("ORDER BY started_at_unix, event_id LIMIT {limit:UInt64}") and "DROP" not in sql
    assert kw["parameters"] == {"since": 10.5, "session_id": "s'; DROP", "limit": 5}
    assert_binds_to_clickhouse_connect(fake.calls)
    store.close()
    assert fake.closed


def test_errors_never_carry_the_password() -> None:
    fake = RecordingConnectClient(
        fail_with="Code: 516. writer:s3cr@t / writer:s3cr%40t@ch: Authentication failed"
    )
    stores = build_event_stores(URL, StoreConfig(), connect=lambda: ClickHouseConnectClient(fake))
    fake.version = 2  # read-only open: a schema exists
    reader = stores.analytics
    assert isinstance(reader, ClickHouseStore)
    reader.open()
    with pytest.raises(ClickHouseStoreError) as info:
        reader.write_events([minimal_event()])
    assert "s3cr" not in str(info.value) and str(info.value).count("***") == 2
    assert "ConnectionError" in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


# --- URLs and wiring -------------------------------------------------------------------------------


def test_parse_clickhouse_url() -> None:
    assert parse_clickhouse_url("clickhouse://ch") == {
        "user": "default", "password": "", "host": "ch", "port": 8123, "database": "default",
        "secure": False, "verify": True, "ca_cert": None, "cluster": None,
    }  # fmt: skip
    tls = parse_clickhouse_url("clickhouses://u:p@ch/db")
    assert (tls["secure"], tls["port"], tls["database"], tls["user"], tls["password"]) == (
        True,
        8443,
        "db",
        "u",
        "p",
    )
    full = parse_clickhouse_url(URL + "&cluster=prod")
    assert (full["password"], full["port"], full["verify"], full["cluster"]) == (
        "s3cr@t",
        8443,
        False,
        "prod",
    )
    assert parse_clickhouse_url("clickhouse://ch/db?secure=true")["port"] == 8443


@pytest.mark.parametrize(
    "url",
    [
        "clickhouse://u:hunter2@ch/db?tls=1",  # unknown option: must not silently mean "no TLS"
        "clickhouse://u:hunter2@ch/db?secure=maybe",
        "clickhouse://u:hunter2@/db",
        "clickhouse://u:hunter2@ch/a/b",
        "clickhouse://u:hunter2@ch:99999/db",
        "http://u:hunter2@ch/db",
    ],
)
def test_bad_urls_are_refused_without_showing_the_password(url: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_clickhouse_url(url)
    assert "hunter2" not in str(info.value)


def test_redact_url() -> None:
    assert redact_url("clickhouse://u:p%40ss@ch:8123/db?secure=1") == "clickhouse://u:***@ch:8123/db?secure=1"
    assert redact_url("clickhouse://ch/db") == "clickhouse://ch/db"
    assert redact_url("sqlite:///x.db") == "sqlite:///x.db"


def test_sqlite_url_keeps_everything_local(tmp_path: Path) -> None:
    stores = build_event_stores(f"sqlite:///{tmp_path}/e.db", StoreConfig(retention_days=9))
    assert isinstance(stores.local, SQLiteStore) and stores.analytics is stores.local
    assert stores.shipper is None and stores.sinks == [stores.local] and stores.local.retention_days == 9


def test_clickhouse_wiring_for_serving_and_for_reports(tmp_path: Path) -> None:
    url = "clickhouse://u:p@ch/fleet?cluster=prod"
    config = StoreConfig(
        retention_days=14, spool_path=tmp_path / "spool.db", local_url=f"sqlite:///{tmp_path}/l.db"
    )
    serving = build_event_stores(
        url, config, connect=lambda: ClickHouseConnectClient(RecordingConnectClient())
    )
    assert isinstance(serving.local, SQLiteStore) and serving.shipper is not None
    assert serving.sinks == [serving.local, serving.shipper] and serving.shipper.name == "clickhouse"
    remote = serving.analytics
    assert isinstance(remote, ClickHouseStore)
    assert remote.schema == SchemaOptions(database="fleet", ttl_days=14, cluster="prod")
    reading = build_event_stores(url, StoreConfig())
    assert reading.local is None and reading.shipper is None and reading.sinks == []
    assert not (tmp_path / "spool.db").exists()  # building does no I/O


def test_serving_stores_ship_what_they_record(tmp_path: Path, chdb_client: ChdbClient) -> None:
    fast = ShipperOptions(batch_size=2, interval_s=0.02, backoff_min_s=0.01, backoff_max_s=0.02)
    config = StoreConfig(
        retention_days=0,
        spool_path=tmp_path / "spool.db",
        local_url=f"sqlite:///{tmp_path}/l.db",
        shipper=fast,
    )
    stores = build_event_stores("clickhouse://ch/fleet", config, connect=chdb_client.borrow).open()
    evs = grafana_traffic()
    for sink in stores.sinks:
        sink.write(evs)
    assert stores.shipper is not None and stores.shipper.flush(5.0)
    assert stores.analytics.events() == evs
    assert stores.local is not None and stores.local.events() == evs
    stores.close()
    report = build_event_stores("clickhouse://ch/fleet", StoreConfig(), connect=chdb_client.borrow).open()
    assert report.analytics.events(since=T0 + DAY) == evs[3:]
    report.close()
