"""The durable spool in front of ClickHouse (SPEC R-ST-1, R-ST-2), drained by
:class:`sidecar.store.shipper.Shipper`.

Every event handed to the shipper (a recorder sink) is first committed to a local SQLite file (WAL); a
background thread then moves it to the remote store in batches and deletes it once the insert
succeeded. While ClickHouse is down events wait on disk, oldest first; they are dropped only when the
spool passes its byte cap (oldest unclaimed first, counted and logged), and drain in order when it
returns.

Exactly once: the shipper *claims* a batch in the spool (durably) before sending it, and resends exactly
that batch until it is acknowledged, also after a restart. The store derives its insert deduplication
token from the batch's event ids, so a batch that reached ClickHouse but whose acknowledgement was lost
is not stored twice.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import orjson

from sidecar.core.events import CallEvent, ToolResult
from sidecar.core.usage import Usage
from sidecar.infra.sqlite import open_wal, write_transaction

DEFAULT_MAX_BYTES = 1 << 30  # 1 GiB
_ROW_OVERHEAD = 48  # rough per-row cost in SQLite pages beyond the payload itself
_CHUNK = 500  # ids per DELETE, under SQLite's bound-parameter limit
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS spool (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        enqueued_at REAL NOT NULL,
        size INTEGER NOT NULL,
        batch INTEGER,
        payload BLOB NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS spool_batch ON spool (batch) WHERE batch IS NOT NULL",
)
_EVENT_FIELDS = frozenset(f.name for f in fields(CallEvent) if f.compare)  # not the rate-limit headers
_USAGE_FIELDS = frozenset(f.name for f in fields(Usage))
_log = logging.getLogger("sidecar.store.spool")


def _create(conn: sqlite3.Connection) -> tuple[int, int]:
    """Create the table if new; return the events waiting and their size (the cap's measure)."""
    for statement in _SCHEMA:
        conn.execute(statement)
    depth, size = conn.execute("SELECT count(*), coalesce(sum(size), 0) FROM spool").fetchone()
    return int(depth), int(size)


def encode_event(event: CallEvent) -> bytes:
    """JSON of every stored field; floats round-trip exactly."""
    raw = orjson.dumps(event)
    if event.ratelimits is None:
        return raw
    # The answer's rate limits are for the metrics only, and CallEvent's last field: cut them off here
    # rather than copy the event without them (a copy costs twice the encoding).
    cut = raw.rfind(b',"ratelimits":{')
    return raw[:cut] + b"}" if cut > 0 else raw


def decode_event(raw: bytes) -> CallEvent:
    """Inverse of :func:`encode_event`. Fields unknown to this release are ignored and missing ones take
    their defaults, so a spool written by another release still drains."""
    d: dict[str, Any] = orjson.loads(raw)
    usage = Usage(**{k: v for k, v in (d.pop("usage", None) or {}).items() if k in _USAGE_FIELDS})
    results = tuple(
        ToolResult(str(r["tool_use_id"]), str(r["name"]), float(r["latency_s"]), bool(r["is_error"]))
        for r in d.pop("tool_results", None) or ()
    )
    kw = {k: v for k, v in d.items() if k in _EVENT_FIELDS}
    for key in ("tool_use_ids", "tool_uses"):
        if key in kw:
            kw[key] = tuple(kw[key])
    return CallEvent(**kw, usage=usage, tool_results=results)


@dataclass(frozen=True, slots=True)
class SpoolBatch:
    ids: tuple[int, ...]  # spool row ids, for ack()
    events: tuple[CallEvent, ...]


class Spool:
    """A bounded, durable FIFO of events in one SQLite file. Thread-safe; call :meth:`open` first.

    ``max_bytes`` caps the payload bytes held (plus a small per-row allowance); appending past it drops
    the oldest unclaimed events first. The file keeps its high-water size but reuses its pages, and gives
    them back (incremental vacuum) whenever the spool empties.
    """

    def __init__(self, path: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be >= 1")
        self.path = Path(path).absolute()
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._depth = 0
        self._bytes = 0
        self.dropped = 0  # events dropped at the cap since this object was built

    @property
    def depth(self) -> int:
        """Events waiting (claimed or not)."""
        return self._depth

    @property
    def size_bytes(self) -> int:
        """What the cap is measured against: payload bytes plus the per-row allowance."""
        return self._bytes

    def open(self) -> None:
        """Create or reopen the file (WAL) and load its counters. Idempotent."""
        with self._lock:
            if self._conn is not None:
                return
            conn, (depth, size) = open_wal(self.path, _create, incremental_vacuum=True)
            self._conn, self._depth, self._bytes = conn, int(depth), int(size)

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError(f"spool {self.path} is not open")
        return self._conn

    def append(self, events: Sequence[CallEvent], now: float | None = None) -> int:
        """Commit ``events`` (one transaction), then enforce the cap; return how many events were dropped."""
        if not events:
            return 0
        at = time.time() if now is None else now
        rows = [(at, len(p) + _ROW_OVERHEAD, p) for p in map(encode_event, events)]
        added = sum(r[1] for r in rows)
        with self._lock:
            with write_transaction(self._db()) as conn:
                conn.executemany("INSERT INTO spool (enqueued_at, size, payload) VALUES (?, ?, ?)", rows)
                dropped, freed = self._make_room(conn, self._bytes + added - self.max_bytes)
            self._depth += len(rows) - dropped
            self._bytes += added - freed
            self.dropped += dropped
        return dropped

    def _make_room(self, conn: sqlite3.Connection, excess: int) -> tuple[int, int]:
        """Delete the oldest rows until ``excess`` bytes are freed: unclaimed rows first, as the claimed
        batch is the one about to be delivered. Returns (rows, bytes) deleted."""
        victims: list[int] = []
        freed = 0
        for where in ("batch IS NULL", "batch IS NOT NULL"):
            cursor = conn.execute(f"SELECT id, size FROM spool WHERE {where} ORDER BY id")
            while freed < excess and (row := cursor.fetchone()) is not None:
                victims.append(row[0])
                freed += row[1]
        self._delete(conn, victims)
        return len(victims), freed

    @staticmethod
    def _delete(conn: sqlite3.Connection, ids: Sequence[int]) -> int:
        freed = 0
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i : i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            cur = conn.execute(f"DELETE FROM spool WHERE id IN ({marks}) RETURNING size", chunk)
            freed += sum(size for (size,) in cur.fetchall())
        return freed

    def peek(self, n: int) -> SpoolBatch:
        """Up to ``n`` of the oldest events, without claiming them."""
        with self._lock:
            rows = self._db().execute("SELECT id, payload FROM spool ORDER BY id LIMIT ?", (n,)).fetchall()
        return SpoolBatch(tuple(r[0] for r in rows), tuple(decode_event(r[1]) for r in rows))

    def claim(self, n: int) -> SpoolBatch | None:
        """The batch to send next: the batch claimed earlier and not yet acknowledged (even by a previous
        process), else the oldest ``n`` events, claimed durably now. ``None`` when the spool is empty."""
        with self._lock, write_transaction(self._db()) as conn:
            row = conn.execute("SELECT batch FROM spool WHERE batch IS NOT NULL ORDER BY id LIMIT 1")
            claimed = row.fetchone()
            if claimed is not None:
                sql, args = "SELECT id, payload FROM spool WHERE batch = ? ORDER BY id", (claimed[0],)
            else:
                sql, args = "SELECT id, payload FROM spool ORDER BY id LIMIT ?", (n,)
            rows = conn.execute(sql, args).fetchall()
            if rows and claimed is None:
                conn.execute(
                    "UPDATE spool SET batch = ? WHERE id BETWEEN ? AND ?",
                    (rows[0][0], rows[0][0], rows[-1][0]),
                )
        if not rows:
            return None
        return SpoolBatch(tuple(r[0] for r in rows), tuple(decode_event(r[1]) for r in rows))

    def ack(self, ids: Sequence[int]) -> None:
        """Forget delivered events (ids from :meth:`claim` / :meth:`peek`); unknown ids are ignored."""
        with self._lock:
            with write_transaction(self._db()) as conn:
                before = conn.total_changes
                freed = self._delete(conn, list(ids))
                deleted = conn.total_changes - before
            self._depth -= deleted
            self._bytes -= freed
            if self._depth == 0:
                conn.execute("PRAGMA incremental_vacuum")

    def lag_seconds(self, now: float | None = None) -> float:
        """Age of the oldest waiting event: how far behind the shipper is (0 when empty or closed)."""
        with self._lock:
            if self._conn is None or self._depth == 0:
                return 0.0
            row = self._conn.execute("SELECT enqueued_at FROM spool ORDER BY id LIMIT 1").fetchone()
        at = time.time() if now is None else now
        return 0.0 if row is None else max(0.0, at - float(row[0]))

    def close(self) -> None:
        """Close the file. Idempotent; unshipped events stay in it for the next :meth:`open`."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
