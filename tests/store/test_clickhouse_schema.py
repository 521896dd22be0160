"""ClickHouse schema: the SQL text (single node and cluster variants) and migrations on a real engine."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecar.store.chdb_client import ChdbClient
from sidecar.store.clickhouse import ClickHouseStore
from sidecar.store.clickhouse_rows import EVENT_COLUMNS, event_to_row
from sidecar.store.clickhouse_schema import (
    LATEST_VERSION,
    MIGRATIONS,
    MIGRATIONS_TABLE,
    SchemaOptions,
    bootstrap_statements,
    migrate,
    reconcile_ttl,
    schema_sql,
    schema_version,
)
from tests.conftest import require_service
from tests.store.test_sqlite import full_event

NOW = 1_795_600_000.0


def statements(o: SchemaOptions) -> list[str]:
    return [s for s in schema_sql(o).split(";\n") if s.strip()]


def test_single_node_schema_text() -> None:
    sql = schema_sql(SchemaOptions(database="sidecar", ttl_days=30))
    events = next(
        s for s in statements(SchemaOptions(database="sidecar")) if "TABLE IF NOT EXISTS sidecar.events" in s
    )
    assert "ENGINE = ReplacingMergeTree\n" in events
    assert "PARTITION BY toDate(started_at)" in events
    assert "ORDER BY (app, session_id, started_at, event_id)" in events
    assert "TTL toDateTime(started_at) + INTERVAL 30 DAY" in events
    assert "SETTINGS non_replicated_deduplication_window = 1000" in events
    assert "app LowCardinality(String)" in events and "model LowCardinality(Nullable(String))" in events
    assert "started_at_unix Float64" in events  # the exact value; started_at is derived from it
    assert "ON CLUSTER" not in sql and "Replicated" not in sql
    # Every table and view is created only if missing.
    for s in statements(SchemaOptions()):
        assert re.match(r"\s*(CREATE (DATABASE|TABLE|MATERIALIZED VIEW) IF NOT EXISTS|ALTER TABLE)", s), s
        if s.lstrip().startswith("ALTER"):
            assert s.count("ADD COLUMN IF NOT EXISTS") == s.count("ADD COLUMN")


def test_cluster_schema_text_is_on_cluster_and_replicated() -> None:
    o = SchemaOptions(database="sidecar", cluster="prod-1", ttl_days=7)
    ddl = statements(o)
    # bootstrap (db, migrations) + v1 (3 tables, 2 views) + v2 + v3 (2 alters) + v4, v5 (alters)
    # + v6 (alter, view) + v7 (alter) + v8 (alter, view)
    assert len(ddl) == 2 + 5 + 1 + 2 + 1 + 1 + 2 + 1 + 2
    for s in ddl:
        first_line = s.strip().splitlines()[0]
        assert "ON CLUSTER `prod-1`" in first_line, first_line
    engines = re.findall(r"ENGINE = (\S+?)\((.*?)\)\n", schema_sql(o))
    assert sorted(e[0] for e in engines) == [
        "ReplicatedAggregatingMergeTree",
        "ReplicatedReplacingMergeTree",
        "ReplicatedReplacingMergeTree",
        "ReplicatedReplacingMergeTree",
    ]
    paths = {args for _, args in engines}
    assert "'/clickhouse/tables/{shard}/sidecar/events', '{replica}'" in paths
    assert "'/clickhouse/tables/{shard}/sidecar/sessions_rollup', '{replica}'" in paths
    assert f"'/clickhouse/tables/{{shard}}/sidecar/{MIGRATIONS_TABLE}', '{{replica}}'" in paths
    # Replicated tables deduplicate inserts by default; the non-replicated setting would be rejected.
    assert "non_replicated_deduplication_window" not in schema_sql(o)
    assert schema_sql(o).count("INTERVAL 7 DAY") == 3  # events, tool_calls, sessions_rollup


def test_cluster_without_replication_and_no_ttl() -> None:
    sql = schema_sql(SchemaOptions(cluster="c", replicated=False, ttl_days=0))
    assert "ON CLUSTER `c`" in sql and "Replicated" not in sql and "TTL" not in sql


@pytest.mark.parametrize("bad", [{"database": "x; DROP TABLE y"}, {"database": "1db"}, {"cluster": "a`b"}])
def test_identifiers_are_validated(bad: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        SchemaOptions(**bad)  # type: ignore[arg-type]


# --- on a real engine --------------------------------------------------------------------------------


@pytest.fixture
def chdb_client(tmp_path: Path) -> Iterator[ChdbClient]:
    require_service(
        importlib.util.find_spec("chdb") is not None, "chdb (in-process ClickHouse: pip install chdb)"
    )
    client = ChdbClient(tmp_path / "chdb")
    yield client
    client.close()


def tables(client: ChdbClient, db: str) -> list[tuple[str, str]]:
    return [
        (str(n), str(e))
        for n, e in client.query(
            "SELECT name, engine FROM system.tables WHERE database = {db:String} ORDER BY name", {"db": db}
        )
    ]


def test_migrate_twice_applies_once(chdb_client: ChdbClient) -> None:
    o = SchemaOptions(database="sidecar")
    assert migrate(chdb_client, o, NOW) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert migrate(chdb_client, o, NOW + 1) == []
    assert schema_version(chdb_client, o) == LATEST_VERSION == 8
    assert tables(chdb_client, "sidecar") == [
        ("events", "ReplacingMergeTree"),
        ("sessions_rollup", "AggregatingMergeTree"),
        ("sessions_rollup_mv", "MaterializedView"),
        (MIGRATIONS_TABLE, "ReplacingMergeTree"),
        ("tool_calls", "ReplacingMergeTree"),
        ("tool_calls_mv", "MaterializedView"),
    ]
    rows = chdb_client.query(f"SELECT version, description FROM sidecar.{MIGRATIONS_TABLE} ORDER BY version")
    assert rows == [(v, d) for v, d, _ in MIGRATIONS]
    ttl = chdb_client.query(
        "SELECT engine_full FROM system.tables WHERE database = 'sidecar' AND name = 'events'"
    )
    assert "TTL toDateTime(started_at) + toIntervalDay(30)" in ttl[0][0]


def test_every_statement_can_run_again_after_a_crash_mid_migration(chdb_client: ChdbClient) -> None:
    o = SchemaOptions(database="sidecar")
    for statement in statements(o):
        chdb_client.command(statement)
    assert schema_version(chdb_client, o) == 0  # the statements ran, the versions were never recorded
    # ...so all of it runs again, without error
    assert migrate(chdb_client, o, NOW) == [1, 2, 3, 4, 5, 6, 7, 8]


def test_migrating_from_version_1_keeps_old_rows(chdb_client: ChdbClient) -> None:
    o = SchemaOptions(database="sidecar", ttl_days=0)
    assert migrate(chdb_client, o, NOW, upto=1) == [1]
    later = EVENT_COLUMNS[EVENT_COLUMNS.index("trace_id") :]  # columns of migrations 2 and on
    # What older rows read back as.
    unset = {**dict.fromkeys(later), "provider": "anthropic", "response_cache_savings_usd": 0.0}
    old = dataclasses.replace(full_event(), event_id="old", **unset)
    v1_columns = list(EVENT_COLUMNS[: EVENT_COLUMNS.index("trace_id")])  # later migrations append columns
    chdb_client.insert("sidecar.events", [event_to_row(old)[: len(v1_columns)]], v1_columns)
    # A release on schema 1 could still read it...
    store = ClickHouseStore(chdb_client.borrow, o, migrate=False)
    store.open()
    assert store.events() == [old]
    store.close()
    # ...and the next release migrates in place: old rows read with empty trace context.
    store = ClickHouseStore(chdb_client.borrow, o)
    store.open()
    assert schema_version(chdb_client, o) == LATEST_VERSION
    new = dataclasses.replace(full_event(), event_id="new", trace_id="0af7651916cd43dd8448eb211c80319c")
    store.write_events([new])
    assert store.events() == [new, old]  # same started_at: ordered by event_id
    store.close()


def test_bootstrap_alone_is_version_zero(chdb_client: ChdbClient) -> None:
    o = SchemaOptions(database="fresh")
    for statement in bootstrap_statements(o):
        chdb_client.command(statement)
    assert schema_version(chdb_client, o) == 0


def test_a_changed_retention_updates_the_ttl(chdb_client: ChdbClient) -> None:
    def ttls() -> dict[str, str]:
        rows = chdb_client.query(
            "SELECT name, engine_full FROM system.tables "
            "WHERE database = 'sidecar' AND engine LIKE '%MergeTree'"
        )
        found = {str(n): re.search(r"TTL (.*?)( SETTINGS|$)", str(e)) for n, e in rows}
        return {n: m.group(1) for n, m in found.items() if m}

    migrate(chdb_client, SchemaOptions(database="sidecar", ttl_days=30), NOW)
    assert reconcile_ttl(chdb_client, SchemaOptions(database="sidecar", ttl_days=30)) == []
    assert migrate(chdb_client, SchemaOptions(database="sidecar", ttl_days=7), NOW) == []  # no new version...
    assert ttls() == {  # ...but the retention followed the setting
        "events": "toDateTime(started_at) + toIntervalDay(7)",
        "tool_calls": "toDateTime(started_at) + toIntervalDay(7)",
        "sessions_rollup": "toDateTime(last_seen_at) + toIntervalDay(7)",
    }
    assert reconcile_ttl(chdb_client, SchemaOptions(database="sidecar", ttl_days=0)) == [
        "events", "tool_calls", "sessions_rollup"
    ]  # fmt: skip
    assert ttls() == {}
