"""SQLite migrations stay as released, and migration 8 repairs what migration 2's first released text got
wrong: response-cache hits counted as model calls in the session and hourly rollups."""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import replace
from pathlib import Path

from sidecar.core.events import CallEvent
from sidecar.core.usage import Usage
from sidecar.store.sqlite import SQLiteStore
from sidecar.store.sqlite_schema import (
    AGENT_COLUMNS,
    CACHE_DIAGNOSIS_COLUMNS,
    EVENT_COLUMNS,
    MIGRATIONS,
    migrate,
)
from sidecar.store.sqlite_schema import event_to_row as sqlite_row
from tests.store.reads_support import SPAN_S, T0, sample_events
from tests.store.test_sqlite_rollup import assert_rollups_match, rollup_rows

# sha256 of each migration's statements joined by NUL, as released. A changed text leaves every file
# migrated by the old one with the old schema: add a migration instead.
RELEASED = {
    1: "07e808074b24ea4c7a73c98720a531f286e2f42b6ce0ee1403fbfd3eb4926c0f",
    2: "6bab3c8c971307aa0c4ed521585c61b7a52de2cf9cd96361902fcbf1ff777757",
    3: "51b7cd5dd4c97dd6f5a8a525c5726fc3b088632420bf69228e195a19c37d2270",
    4: "b2b03492edf0a74e35c8c711fb0437ec4e34f8cfd7620ed04315e1bffa8bf561",
    5: "1eee7fcb21dde92c9ddbf0c8acbe2d831247847c56e42f65f0774e8974c417b1",
    6: "442b7de979cc671dd483f914aca68d440a5c24ffcd77da33718415a72bae56af",
    7: "5e5671e09586dfcaf3dbbaf734234309e66f538a810e4e946073feae2db0cb8b",
    8: "08a2ac270eca297d32f307e50c44756a6cc0fc079bc77527a5f7ffdb6fac71ae",
}
# Migration 2 as first released (bf1ff5c to 88e1ffb), before a hit was left out of the model calls.
FIRST_MIGRATION_2 = "f7f1a6ea539fcf966e90d9318c6c606ded74fae6bad04dd38a66f2974817d811"
V5_APPLIED = T0 + SPAN_S + 60.0  # the restart that brought migrations 5 and on, after every event below


def digest(statements: tuple[str, ...] | list[str]) -> str:
    return hashlib.sha256("\x00".join(statements).encode()).hexdigest()


def first_migration_2() -> list[str]:
    """Migration 2's first released text: a model call was every chat call but a refusal."""
    return [s.replace("NOT IN ('refused', 'cache_hit')", "!= 'refused'") for s in MIGRATIONS[1][1]]


def test_released_migration_texts_are_unchanged() -> None:
    assert {version: digest(statements) for version, statements in MIGRATIONS} == RELEASED
    assert digest(first_migration_2()) == FIRST_MIGRATION_2


def with_hits(seed: int, n: int) -> list[CallEvent]:
    """Varied calls, a third of them turned into response-cache hits (some with tools, a retry, a TTFT)."""
    pool = [replace(e, **dict.fromkeys(CACHE_DIAGNOSIS_COLUMNS)) for e in sample_events(seed, n)]
    for i in range(0, len(pool), 3):
        pool[i] = replace(
            pool[i],
            operation="chat",
            outcome="cache_hit",
            status=200,
            usage=Usage(),
            cost_usd=0.0,
            cache_savings_usd=0.0,
            response_cache_savings_usd=0.25,
        )
    return pool


def old_file(path: Path, versions: dict[int, list[str] | tuple[str, ...]], pool: list[CallEvent]) -> None:
    """A file migrated with ``versions``' statements (recorded as applied before the events), holding
    ``pool`` as those versions' triggers rolled it up."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)")
    for version, statements in versions.items():
        for statement in statements:
            conn.execute(statement)
        conn.execute("INSERT INTO schema_migrations VALUES (?, ?)", (version, T0 - 60.0))
    missing = (
        *(() if 5 in versions else CACHE_DIAGNOSIS_COLUMNS),  # added by migration 5
        *(() if 6 in versions else AGENT_COLUMNS),  # and 6
    )
    keep = [i for i, c in enumerate(EVENT_COLUMNS) if c not in missing]
    names, marks = ", ".join(EVENT_COLUMNS[i] for i in keep), ", ".join("?" * len(keep))
    rows = [tuple(sqlite_row(e)[i] for i in keep) for e in pool]
    conn.executemany(f"INSERT INTO events ({names}) VALUES ({marks})", rows)
    conn.execute("COMMIT")
    conn.close()


def migrate_file(path: Path, now: float) -> list[int]:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        return migrate(conn, now)
    finally:
        conn.close()


def test_a_file_migrated_by_the_first_text_has_its_hits_taken_out_of_the_model_calls(tmp_path: Path) -> None:
    pool = with_hits(3, 240)
    hits = [e for e in pool if e.outcome == "cache_hit"]
    assert hits and any(e.tool_uses for e in hits) and any(e.retry_count for e in hits)
    path = tmp_path / "events.db"
    # Migrated from bf1ff5c on (migration 2's first text), then run by a release with the response cache
    # (migration 4) before migration 5 re-created the session and hourly triggers.
    versions = {1: MIGRATIONS[0][1], 2: first_migration_2(), 3: MIGRATIONS[2][1], 4: MIGRATIONS[3][1]}
    old_file(path, versions, pool)
    counted = sum(r["model_calls"] for r in rollup_rows(path, "hourly_rollup"))
    model_calls = sum(1 for e in pool if e.operation == "chat" and e.outcome != "refused")
    assert counted == model_calls  # the first text's count: every hit in it
    assert migrate_file(path, V5_APPLIED) == [5, 6, 7, 8]
    assert_rollups_match(path, pool)
    # Hits recorded from now on are rolled up by the writer (migration 5's triggers before 7), and left alone.
    later = [replace(e, event_id=e.event_id + "-later", started_at=V5_APPLIED + 5.0) for e in hits[:5]]
    store = SQLiteStore(path)
    store.open()
    store.write_events(later)
    store.close()
    assert_rollups_match(path, [*pool, *later])


def test_a_file_migrated_by_the_current_text_is_left_as_it_is(tmp_path: Path) -> None:
    pool = with_hits(4, 120)
    path = tmp_path / "events.db"
    # Hits recorded before migration 8, even long before migration 5, by the current triggers.
    old_file(path, {version: statements for version, statements in MIGRATIONS[:5]}, pool)
    before = {t: rollup_rows(path, t) for t in ("sessions_rollup", "hourly_rollup")}
    assert migrate_file(path, V5_APPLIED) == [6, 7, 8]
    after = {t: rollup_rows(path, t) for t in before}
    for row in after["sessions_rollup"]:
        del row["providers"]  # added by migration 6, filled by 7 (checked below with the rest)
    assert after == before
    assert_rollups_match(path, pool)
