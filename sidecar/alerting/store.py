"""Alert state on SQLite (WAL): subjects (status, since, last seen, firing) and snoozes.

Its own file (``alerts.db`` next to the events database), so its migrations never meet the event
store's. Migrations are ordered, frozen SQL recorded in ``schema_migrations``; ``open`` applies the
missing ones, so opening twice (or an older file) is safe. Thread-safe: one connection behind a lock
(writes come from ``asyncio.to_thread``; they are small and rare).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import fields
from pathlib import Path

from sidecar.alerting.checks import Subject
from sidecar.infra.sqlite import open_wal, write_transaction

_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE deadman_subjects (
        key TEXT PRIMARY KEY,
        check_name TEXT NOT NULL,
        kind TEXT NOT NULL,
        member TEXT,
        period_s REAL NOT NULL,
        grace_s REAL NOT NULL,
        dynamic INTEGER NOT NULL,
        last_seen REAL,
        last_start REAL,
        last_fail REAL,
        fails INTEGER NOT NULL,
        status TEXT NOT NULL,
        since REAL NOT NULL,
        misses INTEGER NOT NULL,
        firing INTEGER NOT NULL,
        notified INTEGER NOT NULL,
        fired_at REAL,
        last_reminder REAL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE deadman_snoozes (
        scope TEXT PRIMARY KEY,  -- a check name, or '*' for a maintenance window over every check
        until REAL NOT NULL,
        reason TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    """,
)
# Subject field -> column, in table order.
_COLUMNS = tuple("check_name" if f.name == "check" else f.name for f in fields(Subject))
_UPSERT = (
    f"INSERT INTO deadman_subjects ({', '.join(_COLUMNS)}, updated_at) "
    f"VALUES ({', '.join('?' for _ in _COLUMNS)}, ?) "
    f"ON CONFLICT(key) DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in (*_COLUMNS, 'updated_at'))}"
)


def migrate(conn: sqlite3.Connection, now: float) -> int:
    """Apply missing migrations in one transaction; returns how many were applied."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL)"
    )
    with write_transaction(conn):
        (current,) = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()
        for version, sql in enumerate(_MIGRATIONS[current:], start=current + 1):
            for statement in sql.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("INSERT INTO schema_migrations VALUES (?, ?)", (version, now))
    return len(_MIGRATIONS) - int(current)


def _row(s: Subject, now: float) -> tuple[object, ...]:
    values = [getattr(s, f.name) for f in fields(Subject)]
    return (*[int(v) if isinstance(v, bool) else v for v in values], now)


def _subject(row: Sequence[object]) -> Subject:
    kwargs = {}
    for f, value in zip(fields(Subject), row, strict=False):
        kwargs[f.name] = bool(value) if f.type in ("bool", bool) else value
    return Subject(**kwargs)  # type: ignore[arg-type]


class AlertStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).absolute()
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def open(self) -> None:
        """Create the file (and its directory), enable WAL, migrate. Idempotent."""
        with self._lock:
            if self._conn is not None:
                return
            self._conn, _ = open_wal(self.path, lambda conn: migrate(conn, time.time()))

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError(f"alert store {self.path} is not open")
        return self._conn

    def subjects(self) -> list[Subject]:
        with self._lock:
            rows = (
                self._db()
                .execute(f"SELECT {', '.join(_COLUMNS)} FROM deadman_subjects ORDER BY key")
                .fetchall()
            )
        return [_subject(r) for r in rows]

    def save(
        self, subjects: Iterable[Subject], removed: Iterable[str] = (), now: float | None = None
    ) -> None:
        """Upsert ``subjects`` and delete the ``removed`` keys, in one transaction."""
        stamp = time.time() if now is None else now
        rows = [_row(s, stamp) for s in subjects]
        gone = [(k,) for k in removed]
        if not rows and not gone:
            return
        with self._lock, write_transaction(self._db()) as db:
            db.executemany(_UPSERT, rows)
            db.executemany("DELETE FROM deadman_subjects WHERE key = ?", gone)

    def snoozes(self) -> dict[str, tuple[float, str]]:
        """``scope -> (until, reason)``."""
        with self._lock:
            rows = self._db().execute("SELECT scope, until, reason FROM deadman_snoozes").fetchall()
        return {str(scope): (float(until), str(reason)) for scope, until, reason in rows}

    def set_snooze(self, scope: str, until: float, reason: str, now: float) -> None:
        with self._lock:
            self._db().execute(
                "INSERT INTO deadman_snoozes VALUES (?, ?, ?, ?) ON CONFLICT(scope) DO UPDATE SET "
                "until = excluded.until, reason = excluded.reason, created_at = excluded.created_at",
                (scope, until, reason, now),
            )

    def clear_snooze(self, scope: str) -> None:
        with self._lock:
            self._db().execute("DELETE FROM deadman_snoozes WHERE scope = ?", (scope,))
