"""ClickHouse schema: versioned migrations rendered as SQL text (the row mapping is in ``clickhouse_rows``).

Tables (all in one database, names fixed):

* ``events`` — one row per :class:`CallEvent`; ``ReplacingMergeTree`` sorted by ``(app, session_id,
  started_at, event_id)`` and partitioned by UTC day, so a re-sent event collapses into one row (reads
  use ``FINAL``). ``started_at_unix`` is the exact float the sidecar recorded (reports compare it bit for
  bit with SQLite); ``started_at`` (``DateTime64``) is derived from it for partitions, TTL and Grafana.
* ``tool_calls`` — one row per measured tool result, filled from ``events`` by a materialized view.
* ``sessions_rollup`` — per-session sums (``AggregatingMergeTree`` of simple aggregates), filled by a
  materialized view; read it with ``GROUP BY app, session_id``.
* ``sidecar_schema_migrations`` — which migrations ran.

Every statement is idempotent (``IF NOT EXISTS``), so a start that died half-way through a migration
simply runs it again. Tables carry a deduplication window so that an insert retried with the same
``insert_deduplication_token`` is dropped by the server, in ``events`` and in both views' targets alike.
A migration, once released, is never edited: schema changes are new, higher-numbered entries.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from sidecar.store.clickhouse_rollup import agents_view, miss_view
from sidecar.store.clickhouse_rollup import v3 as _v3

MIGRATIONS_TABLE = "sidecar_schema_migrations"
DEDUP_WINDOW = 1000  # inserts remembered per table for insert_deduplication_token
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CLUSTER = re.compile(r"^[A-Za-z0-9_.-]+$")


class SchemaClient(Protocol):
    """The part of the ClickHouse client interface that migrations need."""

    def command(self, sql: str, settings: Any = None) -> Any: ...

    def query(self, sql: str, parameters: Any = None) -> list[tuple[Any, ...]]: ...


@dataclass(frozen=True, slots=True)
class SchemaOptions:
    """How to render the schema.

    ``ttl_days <= 0``: no TTL. ``cluster``: add ``ON CLUSTER`` to every DDL statement. ``replicated``
    (default: when a cluster is given) uses the ``Replicated*`` engines, with the coordination path
    ``<zk_prefix>/<database>/<table>`` and the ``{replica}`` macro of the server config.
    """

    database: str = "default"
    ttl_days: int = 30
    cluster: str | None = None
    replicated: bool | None = None
    zk_prefix: str = "/clickhouse/tables/{shard}"

    def __post_init__(self) -> None:
        if not _IDENTIFIER.match(self.database):
            raise ValueError(f"database name must be a plain identifier: {self.database!r}")
        if self.cluster is not None and not _CLUSTER.match(self.cluster):
            raise ValueError(f"cluster name has unexpected characters: {self.cluster!r}")
        if "'" in self.zk_prefix or "\\" in self.zk_prefix:
            raise ValueError("zk_prefix must not contain quotes or backslashes")

    @property
    def is_replicated(self) -> bool:
        return self.cluster is not None if self.replicated is None else self.replicated

    def table(self, name: str) -> str:
        return f"{self.database}.{name}"

    @property
    def on_cluster(self) -> str:
        return f" ON CLUSTER `{self.cluster}`" if self.cluster else ""

    def engine(self, kind: str, table: str) -> str:
        """``kind`` is a MergeTree family name (``ReplacingMergeTree``, ...)."""
        if not self.is_replicated:
            return kind
        return f"Replicated{kind}('{self.zk_prefix}/{self.database}/{table}', '{{replica}}')"

    def tail(self, ttl_column: str) -> str:
        """TTL and dedup-window settings that end a MergeTree table definition."""
        ttl = f"\nTTL toDateTime({ttl_column}) + INTERVAL {self.ttl_days} DAY" if self.ttl_days > 0 else ""
        # Replicated tables deduplicate by default (replicated_deduplication_window); plain ones must opt in.
        window = (
            "" if self.is_replicated else f"\nSETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW}"
        )
        return ttl + window


def _v1(o: SchemaOptions) -> tuple[str, ...]:
    events, tools, rollup = o.table("events"), o.table("tool_calls"), o.table("sessions_rollup")
    model = "operation = 'chat' AND outcome != 'refused'"  # sidecar.core.sessions.is_model_call
    return (
        f"""CREATE TABLE IF NOT EXISTS {events}{o.on_cluster} (
    event_id String,
    started_at_unix Float64,
    started_at DateTime64(6, 'UTC') MATERIALIZED toDateTime64(started_at_unix, 6, 'UTC'),
    app LowCardinality(String),
    session_id String,
    session_source LowCardinality(String),
    method LowCardinality(String),
    path String,
    operation LowCardinality(String),
    stream Bool,
    model LowCardinality(Nullable(String)),
    model_canonical LowCardinality(Nullable(String)),
    request_id Nullable(String),
    status Int32,
    outcome LowCardinality(String),
    error_type LowCardinality(Nullable(String)),
    stop_reason LowCardinality(Nullable(String)),
    input_tokens Int64,
    output_tokens Int64,
    cache_read_input_tokens Int64,
    cache_creation_input_tokens Int64,
    cache_creation_5m Nullable(Int64),
    cache_creation_1h Nullable(Int64),
    web_search_requests Int64,
    web_fetch_requests Int64,
    service_tier LowCardinality(Nullable(String)),
    inference_geo LowCardinality(Nullable(String)),
    speed LowCardinality(Nullable(String)),
    cost_usd Nullable(Float64),
    cache_savings_usd Float64,
    ttfb_s Nullable(Float64),
    ttft_s Nullable(Float64),
    duration_s Float64,
    overhead_s Float64,
    tool_use_ids Array(String),
    tool_uses Array(LowCardinality(String)),
    tool_result_ids Array(String),
    tool_result_names Array(LowCardinality(String)),
    tool_result_latency_s Array(Float64),
    tool_result_is_error Array(Bool),
    cache_breakpoint_injected Bool,
    system_hash Nullable(String),
    retry_count Int32,
    key_fingerprint Nullable(String),
    request_bytes Int64,
    response_bytes Int64,
    INDEX idx_session_id session_id TYPE bloom_filter GRANULARITY 4,
    INDEX idx_started_at_unix started_at_unix TYPE minmax GRANULARITY 1
)
ENGINE = {o.engine("ReplacingMergeTree", "events")}
PARTITION BY toDate(started_at)
ORDER BY (app, session_id, started_at, event_id){o.tail("started_at")}""",
        f"""CREATE TABLE IF NOT EXISTS {tools}{o.on_cluster} (
    event_id String,
    started_at DateTime64(6, 'UTC'),
    app LowCardinality(String),
    session_id String,
    tool_use_id String,
    name LowCardinality(String),
    latency_s Float64,
    is_error Bool
)
ENGINE = {o.engine("ReplacingMergeTree", "tool_calls")}
PARTITION BY toDate(started_at)
ORDER BY (app, name, started_at, event_id, tool_use_id){o.tail("started_at")}""",
        f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {o.table("tool_calls_mv")}{o.on_cluster} TO {tools} AS
SELECT event_id, started_at, app, session_id, tool_use_id, name, latency_s, is_error
FROM {events}
ARRAY JOIN tool_result_ids AS tool_use_id, tool_result_names AS name,
    tool_result_latency_s AS latency_s, tool_result_is_error AS is_error""",
        f"""CREATE TABLE IF NOT EXISTS {rollup}{o.on_cluster} (
    app LowCardinality(String),
    session_id String,
    started_at SimpleAggregateFunction(min, DateTime64(6, 'UTC')),
    last_seen_at SimpleAggregateFunction(max, DateTime64(6, 'UTC')),
    events SimpleAggregateFunction(sum, UInt64),
    model_calls SimpleAggregateFunction(sum, UInt64),
    error_calls SimpleAggregateFunction(sum, UInt64),
    tool_calls SimpleAggregateFunction(sum, UInt64),
    input_tokens SimpleAggregateFunction(sum, Int64),
    output_tokens SimpleAggregateFunction(sum, Int64),
    cache_read_input_tokens SimpleAggregateFunction(sum, Int64),
    cache_creation_input_tokens SimpleAggregateFunction(sum, Int64),
    cost_usd SimpleAggregateFunction(sum, Float64),
    unpriced_calls SimpleAggregateFunction(sum, UInt64),
    cache_savings_usd SimpleAggregateFunction(sum, Float64),
    model_time_s SimpleAggregateFunction(sum, Float64),
    tool_time_s SimpleAggregateFunction(sum, Float64)
)
ENGINE = {o.engine("AggregatingMergeTree", "sessions_rollup")}
ORDER BY (app, session_id){o.tail("last_seen_at")}""",
        f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {o.table("sessions_rollup_mv")}{o.on_cluster}
TO {rollup} AS
SELECT
    app,
    session_id,
    min(e_first) AS started_at,
    max(e_last) AS last_seen_at,
    toUInt64(count()) AS events,
    toUInt64(countIf(e_model)) AS model_calls,
    toUInt64(countIf(e_model AND (status >= 400 OR outcome != 'ok'))) AS error_calls,
    toUInt64(sum(if(e_model, length(tool_uses), 0))) AS tool_calls,
    sum(if(e_model, e_input, 0)) AS input_tokens,
    sum(if(e_model, e_output, 0)) AS output_tokens,
    sum(if(e_model, e_read, 0)) AS cache_read_input_tokens,
    sum(if(e_model, e_write, 0)) AS cache_creation_input_tokens,
    sum(if(e_model, ifNull(e_cost, 0), 0)) AS cost_usd,
    toUInt64(countIf(e_model AND e_cost IS NULL)) AS unpriced_calls,
    sum(if(e_model, e_savings, 0)) AS cache_savings_usd,
    sum(if(e_model, duration_s, 0)) AS model_time_s,
    sum(arraySum(tool_result_latency_s)) AS tool_time_s
FROM (
    -- Renamed here because the outer aliases reuse the source column names.
    SELECT
        *,
        started_at AS e_first,
        toDateTime64(started_at_unix + duration_s, 6, 'UTC') AS e_last,
        {model} AS e_model,
        input_tokens AS e_input,
        output_tokens AS e_output,
        cache_read_input_tokens AS e_read,
        cache_creation_input_tokens AS e_write,
        cost_usd AS e_cost,
        cache_savings_usd AS e_savings
    FROM {events}
    WHERE session_id != ''
)
GROUP BY app, session_id""",
    )


def _v2(o: SchemaOptions) -> tuple[str, ...]:
    # CallEvent gained its W3C trace context after the first schema.
    return (
        f"""ALTER TABLE {o.table("events")}{o.on_cluster}
    ADD COLUMN IF NOT EXISTS trace_id Nullable(String) AFTER response_bytes,
    ADD COLUMN IF NOT EXISTS span_id Nullable(String) AFTER trace_id,
    ADD COLUMN IF NOT EXISTS parent_span_id Nullable(String) AFTER span_id""",
    )


def _v4_provider(o: SchemaOptions) -> tuple[str, ...]:
    # Where each call went (SPEC §18): the provider, and the cloud location that served it.
    return (
        f"""ALTER TABLE {o.table("events")}{o.on_cluster}
    ADD COLUMN IF NOT EXISTS provider LowCardinality(String) DEFAULT 'anthropic' AFTER parent_span_id,
    ADD COLUMN IF NOT EXISTS cloud_region LowCardinality(Nullable(String)) AFTER provider""",
    )


def _v5_response_cache(o: SchemaOptions) -> tuple[str, ...]:
    # The response cache (SPEC R-RC-5): a hit records what the answer it replayed had cost.
    return (
        f"""ALTER TABLE {o.table("events")}{o.on_cluster}
    ADD COLUMN IF NOT EXISTS response_cache_savings_usd Float64 DEFAULT 0 AFTER cloud_region""",
    )


def _v6(o: SchemaOptions) -> tuple[str, ...]:
    # Why the prompt cache missed (SPEC R-CD): the sidecar's verdict per messages call, the API's reason;
    # then the session rollup's view sums the miss cost and count it held at 0 until now.
    return (
        f"""ALTER TABLE {o.table("events")}{o.on_cluster}
    ADD COLUMN IF NOT EXISTS cache_outcome LowCardinality(Nullable(String)) AFTER response_cache_savings_usd,
    ADD COLUMN IF NOT EXISTS cache_miss_reason LowCardinality(Nullable(String)) AFTER cache_outcome,
    ADD COLUMN IF NOT EXISTS cache_miss_detail Nullable(String) AFTER cache_miss_reason,
    ADD COLUMN IF NOT EXISTS cache_missed_tokens Nullable(Int64) AFTER cache_miss_detail,
    ADD COLUMN IF NOT EXISTS cache_miss_cost_usd Nullable(Float64) AFTER cache_missed_tokens,
    ADD COLUMN IF NOT EXISTS api_cache_miss_reason LowCardinality(Nullable(String))
        AFTER cache_miss_cost_usd""",
        miss_view(o),
    )


def _v7_agents(o: SchemaOptions) -> tuple[str, ...]:
    # Claude Code's subagents (SPEC R-RS-4): the agent making each call and the agent that spawned it.
    return (
        f"""ALTER TABLE {o.table("events")}{o.on_cluster}
    ADD COLUMN IF NOT EXISTS agent_id Nullable(String) AFTER api_cache_miss_reason,
    ADD COLUMN IF NOT EXISTS parent_agent_id Nullable(String) AFTER agent_id""",
    )


# (version, description, renderer). Append only.
MIGRATIONS: tuple[tuple[int, str, Callable[[SchemaOptions], tuple[str, ...]]], ...] = (
    (1, "events, tool_calls and sessions_rollup with their materialized views", _v1),
    (2, "events: W3C trace context columns", _v2),
    (3, "sessions_rollup: what the embedded session rollup holds", _v3),
    (4, "events: provider and cloud_region", _v4_provider),
    (5, "events: response cache savings", _v5_response_cache),
    (6, "events: cache diagnosis columns; sessions_rollup fed from them", _v6),
    (7, "events: agent_id and parent_agent_id", _v7_agents),
    (8, "sessions_rollup: agent ids and providers of each session", agents_view),
)
LATEST_VERSION = MIGRATIONS[-1][0]


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def bootstrap_statements(o: SchemaOptions) -> tuple[str, ...]:
    """The database and the migrations table, created before any migration runs."""
    return (
        f"CREATE DATABASE IF NOT EXISTS {o.database}{o.on_cluster}",
        f"""CREATE TABLE IF NOT EXISTS {o.table(MIGRATIONS_TABLE)}{o.on_cluster} (
    version UInt32,
    description String,
    applied_at DateTime64(3, 'UTC')
)
ENGINE = {o.engine("ReplacingMergeTree", MIGRATIONS_TABLE)}
ORDER BY version""",
    )


def schema_sql(o: SchemaOptions, *, upto: int = LATEST_VERSION) -> str:
    """Every statement up to migration ``upto``, as one script (``;``-separated) for review or manual use."""
    statements = list(bootstrap_statements(o))
    for version, _description, render in MIGRATIONS:
        if version <= upto:
            statements.extend(render(o))
    return ";\n\n".join(statements) + ";\n"


def schema_version(client: SchemaClient, o: SchemaOptions) -> int:
    """The highest migration recorded, 0 when none is (or the database does not exist)."""
    exists = client.query(
        "SELECT count() FROM system.tables WHERE database = {db:String} AND name = {name:String}",
        {"db": o.database, "name": MIGRATIONS_TABLE},
    )
    if not exists or not exists[0][0]:
        return 0
    rows = client.query(f"SELECT max(version) FROM {o.table(MIGRATIONS_TABLE)}")
    return int(rows[0][0]) if rows and rows[0][0] is not None else 0


def migrate(client: SchemaClient, o: SchemaOptions, now: float, *, upto: int = LATEST_VERSION) -> list[int]:
    """Create the database and apply pending migrations (up to ``upto``) in order; return those applied.

    Safe to run concurrently from several sidecars and after a crash mid-way: each statement is
    idempotent and the migrations table keeps one row per version (``ReplacingMergeTree``).
    """
    for statement in bootstrap_statements(o):
        client.command(statement)
    current = schema_version(client, o)
    applied: list[int] = []
    for version, description, render in MIGRATIONS:
        if version <= current or version > upto:
            continue
        for statement in render(o):
            client.command(statement)
        client.command(
            f"INSERT INTO {o.table(MIGRATIONS_TABLE)} (version, description, applied_at) "
            f"VALUES ({version}, {_quote(description)}, toDateTime64({float(now)!r}, 3, 'UTC'))"
        )
        applied.append(version)
    reconcile_ttl(client, o)
    return applied


_TTL_TABLES = (("events", "started_at"), ("tool_calls", "started_at"), ("sessions_rollup", "last_seen_at"))
_TTL_DAYS = re.compile(r"\bTTL\b.*?toIntervalDay\((\d+)\)")


def reconcile_ttl(client: SchemaClient, o: SchemaOptions) -> list[str]:
    """Bring each table's TTL to ``o.ttl_days`` when retention changed since the table was created;
    return the tables altered. Existing parts are not rewritten now: the new TTL applies as they merge."""
    altered: list[str] = []
    for table, column in _TTL_TABLES:
        rows = client.query(
            "SELECT engine_full FROM system.tables WHERE database = {db:String} AND name = {name:String}",
            {"db": o.database, "name": table},
        )
        if not rows:
            continue
        match = _TTL_DAYS.search(str(rows[0][0]))
        if (int(match.group(1)) if match else 0) == max(0, o.ttl_days):
            continue
        change = (
            f"MODIFY TTL toDateTime({column}) + INTERVAL {o.ttl_days} DAY" if o.ttl_days > 0 else "REMOVE TTL"
        )
        client.command(
            f"ALTER TABLE {o.table(table)}{o.on_cluster} {change}", {"materialize_ttl_after_modify": 0}
        )
        altered.append(table)
    return altered
