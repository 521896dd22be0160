"""Embedded event store on SQLite (WAL), the default :class:`~sidecar.store.base.EventStore`.

One long-lived write connection (used by the recorder's worker thread, purge and migrations) guarded by a
lock; every read opens its own short-lived connection, so under WAL readers never wait for the writer
and the writer never waits for a slow report.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from sidecar.core.events import CallEvent, PartialWrite
from sidecar.infra.sched import yield_cpu
from sidecar.infra.sqlite import connect, open_wal, parse_sqlite_url, write_transaction
from sidecar.store.sqlite_purge import CHUNK_ROWS, PurgePacer, purge_chunk
from sidecar.store.sqlite_rollup_batch import last_rowid, roll_up
from sidecar.store.sqlite_schema import INSERT_SQL, SELECT_COLUMNS, event_to_row, migrate, row_to_event

_PURGE_EVERY_S = 3600.0
_DAY_S = 86400.0
# Errors about one row's values (a string that cannot be encoded, an integer too large, a constraint),
# as opposed to errors of the database (sqlite3.OperationalError: disk full, locked, corrupt).
_ROW_ERRORS = (
    sqlite3.IntegrityError,
    sqlite3.InterfaceError,
    sqlite3.DataError,
    sqlite3.ProgrammingError,
    OverflowError,
    ValueError,
    TypeError,
    UnicodeError,
)
_log = logging.getLogger("sidecar.store.sqlite")
_CHUNK_ROWS = 16  # rows per executemany inside a batch's transaction, between yields of the core


class SQLiteStore:
    """SQLite implementation of ``EventStore``; also a recorder ``Sink`` (``name``, ``write``, ``close``).

    Thread-safe. ``open()`` must be called before reads or writes (they raise ``RuntimeError`` otherwise).
    ``retention_days <= 0`` disables :meth:`maybe_purge`.
    """

    name = "sqlite"
    whole_batches = True  # one transaction per recorder batch; it yields the core between chunks itself

    def __init__(self, path: str | os.PathLike[str], *, retention_days: int = 30) -> None:
        self.path = Path(path).absolute()
        self.retention_days = retention_days
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._last_purge: float | None = None
        self.purge_chunk_rows = CHUNK_ROWS

    @classmethod
    def from_url(cls, url: str, *, retention_days: int = 30) -> SQLiteStore:
        """Build a store from ``sqlite:///rel.db`` / ``sqlite:////abs.db`` (see :func:`parse_sqlite_url`)."""
        return cls(parse_sqlite_url(url), retention_days=retention_days)

    def open(self) -> None:
        """Create parent directories, switch the file to WAL, apply pending migrations. Idempotent."""
        with self._lock:
            if self._conn is not None:
                return
            # WAL is required: readers use their own connections and must never wait for the writer.
            self._conn, _ = open_wal(self.path, lambda conn: migrate(conn, time.time()), require_wal=True)

    def _writer(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError(f"SQLite store {self.path} is not open")
        return self._conn

    def write_events(self, events: Sequence[CallEvent]) -> None:
        """Insert ``events`` in one transaction; ids already stored are ignored (first write wins).

        If one event cannot be stored (a value SQLite or the row mapping refuses), the batch is written
        again one event at a time, so only that event is lost; it is logged by id and the call raises
        ``PartialWrite`` for the recorder to count. Errors of the database itself (disk full, locked)
        fail the whole batch as before.
        """
        if not events:
            return
        failed = 0
        with self._lock:
            conn = self._writer()
            conn.execute("BEGIN IMMEDIATE")
            try:
                after = last_rowid(conn)
                try:
                    self._insert_chunks(conn, events)
                except _ROW_ERRORS:
                    conn.execute("ROLLBACK")
                    conn.execute("BEGIN IMMEDIATE")
                    after = last_rowid(conn)
                    failed = self._insert_one_by_one(conn, events)
                roll_up(conn, after)  # the rollups change in the events' transaction (R-RS-1)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        if failed:
            raise PartialWrite(failed, len(events))

    @staticmethod
    def _insert_chunks(conn: sqlite3.Connection, events: Sequence[CallEvent]) -> None:
        # Rows are made chunk by chunk: making a whole batch's at once holds the GIL for milliseconds.
        for start in range(0, len(events), _CHUNK_ROWS):
            if start:
                yield_cpu()  # the event loop may be waiting for this core
            conn.executemany(INSERT_SQL, [event_to_row(e) for e in events[start : start + _CHUNK_ROWS]])

    @staticmethod
    def _insert_one_by_one(conn: sqlite3.Connection, events: Sequence[CallEvent]) -> int:
        failed = 0
        for event in events:
            try:
                conn.execute(INSERT_SQL, event_to_row(event))
            except _ROW_ERRORS as exc:
                failed += 1
                _log.error(
                    "event could not be stored; the rest of its batch was",
                    extra={"fields": {"event_id": event.event_id, "error": type(exc).__name__}},
                )
        return failed

    # The recorder's Sink protocol.
    write = write_events

    def events(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        session_id: str | None = None,
        limit: int | None = None,
    ) -> list[CallEvent]:
        """Events with ``since <= started_at < until`` (optional), optionally one session, oldest first.

        Ties on ``started_at`` are ordered by ``event_id``. ``limit`` keeps the oldest ``limit`` matches.
        """
        if self._conn is None:
            raise RuntimeError(f"SQLite store {self.path} is not open")
        clauses: list[str] = []
        params: list[object] = []
        if since is not None:
            clauses.append("started_at >= ?")
            params.append(since)
        if until is not None:
            clauses.append("started_at < ?")
            params.append(until)
        if session_id is not None:
            clauses.append("session_id = ?")
            params.append(session_id)
        sql = f"SELECT {SELECT_COLUMNS} FROM events"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY started_at, event_id"
        if limit is not None:
            if limit < 0:
                raise ValueError("limit must be >= 0")
            sql += " LIMIT ?"
            params.append(limit)
        conn = connect(self.path)
        try:
            conn.execute("PRAGMA query_only = ON")
            rows = conn.execute(sql, params).fetchall()
        finally:
            conn.close()
        return [row_to_event(tuple(row)) for row in rows]

    def purge(self, older_than: float) -> int:
        """Delete events with ``started_at < older_than``; return the number deleted.

        Works in chunks of at most ``purge_chunk_rows`` events sized to a few tens of milliseconds, one
        short transaction each (rollups kept exact, see :mod:`sidecar.store.sqlite_purge`), resting
        between chunks so the recorder's writes get the lock.
        """
        deleted = 0
        pacer = PurgePacer(self.purge_chunk_rows)
        while True:
            start = time.perf_counter()
            with self._lock:
                if deleted and self._conn is None:
                    return deleted  # closed between chunks (shutdown): the rest goes at the next start
                with write_transaction(self._writer()) as conn:
                    n = purge_chunk(conn, older_than, pacer.rows)
            deleted += n
            if n == 0:
                return deleted
            pacer.after(time.perf_counter() - start)

    def maybe_purge(self, now: float) -> int | None:
        """Apply retention at most once an hour: delete events older than ``now - retention_days``.

        Returns the number deleted, or ``None`` when skipped (too soon, or retention disabled). Meant for
        a periodic background task; the recorder never calls it.
        """
        if self.retention_days <= 0:
            return None
        if self._last_purge is not None and now - self._last_purge < _PURGE_EVERY_S:
            return None
        deleted = self.purge(now - self.retention_days * _DAY_S)
        self._last_purge = now
        return deleted

    def close(self) -> None:
        """Close the write connection. Idempotent; a later ``open()`` reopens the store."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
