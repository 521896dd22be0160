"""The embedded entry store (SPEC R-RC-4): ``response-cache.db`` beside the events database, mode 0600.

One table, one connection guarded by a lock, every query on a worker thread (``asyncio.to_thread``).
Bounded by ``max_bytes`` of stored bytes: a write that goes past it evicts the least recently used
entries first (a hit refreshes an entry's use time, never its expiry). The byte total is kept in memory,
read once at open; an entry larger than the whole budget is not stored. Writes queue up and go in
batches (one transaction, one thread hop each), so a burst of misses shares the cost. Every ``sqlite3``
failure becomes :class:`~sidecar.respcache.backend.StoreError`.

A miss costs no query: the store keeps the first 8 bytes of every stored key in memory (about 60 bytes
an entry), so a key it does not hold is answered at once, without a thread hop. A shared prefix only
costs a query; a prefix dropped with another key only a miss. The file belongs to one process (another
process's entries are not in its index).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from sidecar.infra.sqlite import open_wal, write_transaction
from sidecar.respcache.backend import StoreError
from sidecar.respcache.entry import Entry, EntryError

T = TypeVar("T")
FILE_NAME = "response-cache.db"
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS entries (
        key BLOB PRIMARY KEY,
        app TEXT NOT NULL,
        expires_at REAL NOT NULL,
        last_used REAL NOT NULL,
        size INTEGER NOT NULL,
        data BLOB NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS entries_last_used ON entries (last_used)",
    "CREATE INDEX IF NOT EXISTS entries_expires_at ON entries (expires_at)",
    "CREATE INDEX IF NOT EXISTS entries_app ON entries (app)",
)
_EVICT_BATCH = 64
_TOUCH_EVERY_S = 1.0


def _private_file(path: Path) -> None:
    """Create ``path`` readable by its owner only (SQLite gives its -wal and -shm files the same mode)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)


class SQLiteEntries:
    """Implements :class:`~sidecar.respcache.backend.Backend` on a SQLite file."""

    name = "sqlite"

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._bytes = 0
        self._index: set[int] = set()  # key prefixes held (see the module docstring)
        self._queue: list[tuple[bytes, Entry, bytes, asyncio.Future[None]]] = []  # writes not yet flushed
        self._flusher: asyncio.Future[None] | None = None

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.to_thread(self._locked, fn)

    def _locked(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            if self._conn is None:
                raise StoreError(f"response cache {self.path} is not open")
            try:
                return fn(self._conn)
            except (sqlite3.Error, OSError, MemoryError) as exc:
                raise StoreError(f"sqlite: {type(exc).__name__}: {exc}") from exc

    def open_sync(self) -> None:
        """Create the file (0600) and its table; idempotent. Raises ``StoreError``."""
        with self._lock:
            if self._conn is not None:
                return
            try:
                _private_file(self.path)
                self._conn, (self._bytes, self._index) = open_wal(self.path, _setup)
            except (sqlite3.Error, OSError) as exc:
                raise StoreError(f"cannot open {self.path}: {type(exc).__name__}: {exc}") from exc

    async def open(self) -> None:
        await asyncio.to_thread(self.open_sync)

    async def get(self, key: bytes, now: float) -> Entry | None:
        if _prefix(key) not in self._index:
            if self._conn is None:
                raise StoreError(f"response cache {self.path} is not open")
            return None
        return await self._run(lambda conn: self._get(conn, key, now))

    def _get(self, conn: sqlite3.Connection, key: bytes, now: float) -> Entry | None:
        row = conn.execute(
            "SELECT data, expires_at, size, last_used FROM entries WHERE key = ?", (key,)
        ).fetchone()
        if row is None:
            return None
        data, expires_at, size, last_used = row
        if expires_at <= now:
            if conn.execute("DELETE FROM entries WHERE key = ?", (key,)).rowcount:
                self._bytes -= int(size)
            self._index.discard(_prefix(key))
            return None
        try:
            entry = Entry.decode(bytes(data))
        except EntryError:
            return None
        if now - last_used >= _TOUCH_EVERY_S:  # a hot entry is not rewritten on every hit
            conn.execute("UPDATE entries SET last_used = ? WHERE key = ?", (now, key))
        return entry

    async def put(self, key: bytes, entry: Entry) -> None:
        data = entry.encode()
        if len(data) > self.max_bytes:
            return  # larger than the whole cache: keeping it would evict everything else
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((key, entry, data, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush())
        await done

    async def _flush(self) -> None:
        """Write what is queued, one transaction and one thread hop a batch: under load the writes of
        many calls share them."""
        while self._queue:
            batch, self._queue = self._queue, []
            rows = [(key, entry, data) for key, entry, data, _ in batch]
            try:
                await self._run(lambda conn: self._put_many(conn, rows))  # noqa: B023 - awaited here
            except StoreError as exc:
                for *_, done in batch:
                    if not done.done():
                        done.set_exception(exc)
            else:
                for *_, done in batch:
                    if not done.done():
                        done.set_result(None)

    def _put_many(self, conn: sqlite3.Connection, batch: list[tuple[bytes, Entry, bytes]]) -> None:
        total = self._bytes
        evicted: list[bytes] = []
        with write_transaction(conn):
            for key, entry, data in batch:
                old = conn.execute("SELECT size FROM entries WHERE key = ?", (key,)).fetchone()
                conn.execute(
                    "INSERT OR REPLACE INTO entries (key, app, expires_at, last_used, size, data) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (key, entry.app, entry.expires_at, entry.created_at, len(data), data),
                )
                total += len(data) - (int(old[0]) if old else 0)
            kept = tuple(key for key, _, _ in batch)
            while total > self.max_bytes:
                rows = conn.execute(
                    "SELECT key, size FROM entries ORDER BY last_used LIMIT ?", (_EVICT_BATCH + len(kept),)
                ).fetchall()
                rows = [(k, size) for k, size in rows if bytes(k) not in kept]
                if not rows:
                    break
                for old_key, size in rows:
                    conn.execute("DELETE FROM entries WHERE key = ?", (old_key,))
                    evicted.append(bytes(old_key))
                    total -= int(size)
                    if total <= self.max_bytes:
                        break
        self._bytes = total  # only once committed
        self._index.difference_update(_prefix(k) for k in evicted)
        self._index.update(_prefix(key) for key in kept)

    async def purge(self, app: str | None) -> int:
        return await self._run(
            lambda conn: self._delete(conn, "app = ?" if app else "1", (app,) if app else ())
        )

    async def expire(self, now: float) -> int:
        return await self._run(lambda conn: self._delete(conn, "expires_at <= ?", (now,)))

    def _delete(self, conn: sqlite3.Connection, where: str, params: tuple[object, ...]) -> int:
        with write_transaction(conn):
            rows = conn.execute(f"SELECT key, size FROM entries WHERE {where}", params).fetchall()
            conn.execute(f"DELETE FROM entries WHERE {where}", params)
        self._bytes -= sum(int(size) for _, size in rows)
        self._index.difference_update(_prefix(bytes(key)) for key, _ in rows)
        return len(rows)

    def stored_bytes(self) -> float:
        return float(self._bytes)

    async def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _setup(conn: sqlite3.Connection) -> tuple[int, set[int]]:
    """The table, and what the store keeps in memory: the byte total and the key index."""
    with write_transaction(conn):
        for statement in _SCHEMA:
            conn.execute(statement)
    (total,) = conn.execute("SELECT COALESCE(SUM(size), 0) FROM entries").fetchone()
    index = {_prefix(bytes(key)) for (key,) in conn.execute("SELECT key FROM entries")}
    return int(total), index


def _prefix(key: bytes) -> int:
    return int.from_bytes(key[:8], "big")
