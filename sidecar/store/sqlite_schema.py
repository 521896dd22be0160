"""SQLite schema: ordered migrations and the CallEvent <-> row mapping.

Migrations are frozen SQL text: once released, a migration is never edited — a schema change is a new,
higher-numbered entry. They are applied in order, inside one transaction, and recorded in
``schema_migrations(version, applied_at)``.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

import orjson

from sidecar.core.events import CallEvent, ToolResult
from sidecar.core.usage import Usage
from sidecar.infra.sqlite import write_transaction
from sidecar.store.sqlite_rollup import MIGRATION_2, MISS_MIGRATION
from sidecar.store.sqlite_rollup_batch import MIGRATION as ROLLUP_BY_BATCH
from sidecar.store.sqlite_rollup_repair import HIT_REPAIR_MIGRATION

_MIGRATION_1 = (
    """
    CREATE TABLE events (
        event_id TEXT PRIMARY KEY,
        started_at REAL NOT NULL,
        app TEXT NOT NULL,
        session_id TEXT NOT NULL,
        session_source TEXT NOT NULL,
        method TEXT NOT NULL,
        path TEXT NOT NULL,
        operation TEXT NOT NULL,
        stream INTEGER NOT NULL,
        model TEXT,
        model_canonical TEXT,
        request_id TEXT,
        status INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        error_type TEXT,
        stop_reason TEXT,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cache_read_input_tokens INTEGER NOT NULL,
        cache_creation_input_tokens INTEGER NOT NULL,
        cache_creation_5m INTEGER,
        cache_creation_1h INTEGER,
        web_search_requests INTEGER NOT NULL,
        web_fetch_requests INTEGER NOT NULL,
        service_tier TEXT,
        inference_geo TEXT,
        speed TEXT,
        cost_usd REAL,
        cache_savings_usd REAL NOT NULL,
        ttfb_s REAL,
        ttft_s REAL,
        duration_s REAL NOT NULL,
        overhead_s REAL NOT NULL,
        tool_use_ids TEXT NOT NULL,
        tool_uses TEXT NOT NULL,
        tool_results TEXT NOT NULL DEFAULT '[]',
        cache_breakpoint_injected INTEGER NOT NULL,
        system_hash TEXT,
        retry_count INTEGER NOT NULL,
        key_fingerprint TEXT,
        request_bytes INTEGER NOT NULL,
        response_bytes INTEGER NOT NULL,
        trace_id TEXT,
        span_id TEXT,
        parent_span_id TEXT
    )
    """,
    "CREATE INDEX events_started_at ON events (started_at)",
    "CREATE INDEX events_session_started_at ON events (session_id, started_at)",
    "CREATE INDEX events_app_started_at ON events (app, started_at)",
)

# Where each call went (SPEC §18): the provider, and the cloud location that served it.
_MIGRATION_PROVIDER = (
    "ALTER TABLE events ADD COLUMN provider TEXT NOT NULL DEFAULT 'anthropic'",
    "ALTER TABLE events ADD COLUMN cloud_region TEXT",
)

# The response cache (SPEC R-RC-5): a hit records what the answer it replayed had cost.
_MIGRATION_RESPONSE_CACHE = (
    "ALTER TABLE events ADD COLUMN response_cache_savings_usd REAL NOT NULL DEFAULT 0",
)

# Why the prompt cache missed (SPEC R-CD): the verdict on each messages call, and the API's own reason.
_MIGRATION_CACHE_DIAGNOSIS = (
    "ALTER TABLE events ADD COLUMN cache_outcome TEXT",
    "ALTER TABLE events ADD COLUMN cache_miss_reason TEXT",
    "ALTER TABLE events ADD COLUMN cache_miss_detail TEXT",
    "ALTER TABLE events ADD COLUMN cache_missed_tokens INTEGER",
    "ALTER TABLE events ADD COLUMN cache_miss_cost_usd REAL",
    "ALTER TABLE events ADD COLUMN api_cache_miss_reason TEXT",
)

# Claude Code's subagents (SPEC R-RS-4): the agent making each call and its parent; and the providers a
# session used (SPEC R-CP-5), a JSON array like ``agent_ids``.
_MIGRATION_AGENTS = (
    "ALTER TABLE events ADD COLUMN agent_id TEXT",
    "ALTER TABLE events ADD COLUMN parent_agent_id TEXT",
    "ALTER TABLE sessions_rollup ADD COLUMN providers TEXT NOT NULL DEFAULT '[]'",
)

# (version, statements). Append only.
MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (1, _MIGRATION_1),
    (2, MIGRATION_2),  # rollups for the read side (sqlite_rollup)
    (3, _MIGRATION_PROVIDER),
    (4, _MIGRATION_RESPONSE_CACHE),
    (5, (*_MIGRATION_CACHE_DIAGNOSIS, *MISS_MIGRATION)),  # cache diagnosis, and the rollups fed from it
    (6, _MIGRATION_AGENTS),
    # The writer keeps the rollups per batch from here on (sqlite_rollup_batch): insert triggers dropped.
    (7, ROLLUP_BY_BATCH),
    (8, HIT_REPAIR_MIGRATION),  # response-cache hits that migration 2's first text counted as model calls
)

LATEST_VERSION = MIGRATIONS[-1][0]

# CallEvent fields stored as they are, in this order (nullable: older rows and other calls have none).
CACHE_DIAGNOSIS_COLUMNS = (
    "cache_outcome",
    "cache_miss_reason",
    "cache_miss_detail",
    "cache_missed_tokens",
    "cache_miss_cost_usd",
    "api_cache_miss_reason",
)
AGENT_COLUMNS = ("agent_id", "parent_agent_id")
# Column order used by both INSERT and SELECT; must match ``event_to_row`` / ``row_to_event``.
EVENT_COLUMNS: tuple[str, ...] = (
    "event_id",
    "started_at",
    "app",
    "session_id",
    "session_source",
    "method",
    "path",
    "operation",
    "stream",
    "model",
    "model_canonical",
    "request_id",
    "status",
    "outcome",
    "error_type",
    "stop_reason",
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "cache_creation_5m",
    "cache_creation_1h",
    "web_search_requests",
    "web_fetch_requests",
    "service_tier",
    "inference_geo",
    "speed",
    "cost_usd",
    "cache_savings_usd",
    "ttfb_s",
    "ttft_s",
    "duration_s",
    "overhead_s",
    "tool_use_ids",
    "tool_uses",
    "tool_results",
    "cache_breakpoint_injected",
    "system_hash",
    "retry_count",
    "key_fingerprint",
    "request_bytes",
    "response_bytes",
    "trace_id",
    "span_id",
    "parent_span_id",
    "provider",
    "cloud_region",
    "response_cache_savings_usd",
    *CACHE_DIAGNOSIS_COLUMNS,
    *AGENT_COLUMNS,
)

INSERT_SQL = (
    f"INSERT OR IGNORE INTO events ({', '.join(EVENT_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in EVENT_COLUMNS)})"
)
SELECT_COLUMNS = ", ".join(EVENT_COLUMNS)

_log = logging.getLogger("sidecar.store.sqlite")


def schema_version(conn: sqlite3.Connection) -> int:
    """The highest applied migration, 0 for a database that has none (or no migrations table)."""
    row = conn.execute("SELECT name FROM sqlite_master WHERE type='table' AND name='schema_migrations'")
    if row.fetchone() is None:
        return 0
    (version,) = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()
    return int(version)


def migrate(conn: sqlite3.Connection, now: float) -> list[int]:
    """Apply every pending migration in order, in one ``BEGIN IMMEDIATE`` transaction.

    ``conn`` must be in autocommit mode (``isolation_level=None``) so the transaction is explicit.
    ``BEGIN IMMEDIATE`` takes the write lock first, so two processes opening one file cannot both
    migrate. Returns the versions applied (empty when already current).
    """
    with write_transaction(conn):
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
        )
        current = schema_version(conn)
        if current > LATEST_VERSION:
            # A newer release migrated this file (e.g. after a rollback). Its migrations only add, so
            # writing our known columns still works; refusing to start would turn a rollback into an outage.
            _log.warning(
                "database schema is newer than this release",
                extra={"fields": {"db_version": current, "known_version": LATEST_VERSION}},
            )
        applied: list[int] = []
        for version, statements in MIGRATIONS:
            if version <= current:
                continue
            for statement in statements:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)", (version, now))
            applied.append(version)
    return applied


def _json_tuple(values: tuple[str, ...]) -> str:
    return orjson.dumps(list(values)).decode()


def event_to_row(event: CallEvent) -> tuple[Any, ...]:
    """The values of ``event`` in ``EVENT_COLUMNS`` order."""
    u = event.usage
    return (
        event.event_id,
        event.started_at,
        event.app,
        event.session_id,
        event.session_source,
        event.method,
        event.path,
        event.operation,
        int(event.stream),
        event.model,
        event.model_canonical,
        event.request_id,
        event.status,
        event.outcome,
        event.error_type,
        event.stop_reason,
        u.input_tokens,
        u.output_tokens,
        u.cache_read_input_tokens,
        u.cache_creation_input_tokens,
        u.cache_creation_5m,
        u.cache_creation_1h,
        u.web_search_requests,
        u.web_fetch_requests,
        u.service_tier,
        u.inference_geo,
        u.speed,
        event.cost_usd,
        event.cache_savings_usd,
        event.ttfb_s,
        event.ttft_s,
        event.duration_s,
        event.overhead_s,
        _json_tuple(event.tool_use_ids),
        _json_tuple(event.tool_uses),
        orjson.dumps([[t.tool_use_id, t.name, t.latency_s, t.is_error] for t in event.tool_results]).decode(),
        int(event.cache_breakpoint_injected),
        event.system_hash,
        event.retry_count,
        event.key_fingerprint,
        event.request_bytes,
        event.response_bytes,
        event.trace_id,
        event.span_id,
        event.parent_span_id,
        event.provider,
        event.cloud_region,
        event.response_cache_savings_usd,
        *(getattr(event, name) for name in CACHE_DIAGNOSIS_COLUMNS),
        event.agent_id,
        event.parent_agent_id,
    )


def row_to_event(row: tuple[Any, ...]) -> CallEvent:
    """Rebuild the :class:`CallEvent` that ``event_to_row`` stored (equal to the original)."""
    r = dict(zip(EVENT_COLUMNS, row, strict=True))
    usage = Usage(
        input_tokens=r["input_tokens"],
        output_tokens=r["output_tokens"],
        cache_read_input_tokens=r["cache_read_input_tokens"],
        cache_creation_input_tokens=r["cache_creation_input_tokens"],
        cache_creation_5m=r["cache_creation_5m"],
        cache_creation_1h=r["cache_creation_1h"],
        web_search_requests=r["web_search_requests"],
        web_fetch_requests=r["web_fetch_requests"],
        service_tier=r["service_tier"],
        inference_geo=r["inference_geo"],
        speed=r["speed"],
    )
    plain = {
        name: r[name]
        for name in (
            "event_id", "started_at", "app", "session_id", "session_source", "method", "path",
            "operation", "model", "model_canonical", "request_id", "status", "outcome", "error_type",
            "stop_reason", "cost_usd", "cache_savings_usd", "ttfb_s", "ttft_s", "duration_s",
            "overhead_s", "system_hash", "retry_count", "key_fingerprint", "request_bytes",
            "response_bytes", "trace_id", "span_id", "parent_span_id", "provider", "cloud_region",
            "response_cache_savings_usd", *CACHE_DIAGNOSIS_COLUMNS, *AGENT_COLUMNS,
        )
    }  # fmt: skip
    return CallEvent(
        **plain,
        stream=bool(r["stream"]),
        usage=usage,
        tool_use_ids=tuple(orjson.loads(r["tool_use_ids"])),
        tool_uses=tuple(orjson.loads(r["tool_uses"])),
        tool_results=tuple(
            ToolResult(str(i), str(n), float(t), bool(e)) for i, n, t, e in orjson.loads(r["tool_results"])
        ),
        cache_breakpoint_injected=bool(r["cache_breakpoint_injected"]),
    )
