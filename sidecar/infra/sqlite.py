"""SQLite files the way every store here opens them: one connection setup, one write transaction.

Connections are in autocommit mode (``isolation_level=None``): transactions are explicit
(:func:`write_transaction`), never implicit. They may be used from any thread (each caller guards its
connection with its own lock), wait up to ``BUSY_TIMEOUT_MS`` for another writer, and use
``synchronous = NORMAL``, which under WAL survives process crashes: only an OS crash may lose the last
commits.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar
from urllib.parse import unquote

BUSY_TIMEOUT_MS = 5000
_URL_PREFIX = "sqlite:///"
T = TypeVar("T")


def parse_sqlite_url(url: str) -> Path:
    """Map a SQLAlchemy-style SQLite URL to a file path.

    ``sqlite:///rel/path.db`` is relative to the current directory (resolved now, so a later ``chdir``
    does not move the database); ``sqlite:////abs/path.db`` is absolute. Anything else — another scheme,
    a host part, no file name, ``:memory:``, a query string — raises ``ValueError``.
    """
    if not url.startswith(_URL_PREFIX):
        raise ValueError(f"not a sqlite URL (expected sqlite:///path or sqlite:////abs/path): {url!r}")
    rest = url[len(_URL_PREFIX) :]
    if "?" in rest or "#" in rest:
        raise ValueError(f"sqlite URL options are not supported: {url!r}")
    rest = unquote(rest)
    if not rest or rest.endswith("/") or rest == ":memory:" or "\x00" in rest:
        raise ValueError(f"sqlite URL must name a database file: {url!r}")
    path = Path(rest)
    return path if path.is_absolute() else Path.cwd() / path


def connect(path: Path) -> sqlite3.Connection:
    """A connection to an existing or new file, set up as the module docstring says."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA synchronous = NORMAL")
    except BaseException:
        conn.close()
        raise
    return conn


def open_wal(
    path: Path,
    setup: Callable[[sqlite3.Connection], T],
    *,
    incremental_vacuum: bool = False,
    require_wal: bool = False,
) -> tuple[sqlite3.Connection, T]:
    """Create ``path``'s directory, connect, switch the file to WAL, then run ``setup`` (migrations,
    counters) on the connection; return it with ``setup``'s result. On any failure the connection is
    closed and the error raised.

    ``incremental_vacuum`` sets ``auto_vacuum = INCREMENTAL``, which only takes effect on a new file.
    ``require_wal`` raises ``RuntimeError`` when the file stays in another journal mode (some file
    systems cannot share WAL memory); otherwise the connection works in whatever mode it got.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = connect(path)
    try:
        if incremental_vacuum:
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
        if require_wal and str(mode).lower() != "wal":
            raise RuntimeError(f"could not enable WAL on {path} (journal_mode={mode})")
        return conn, setup(conn)
    except BaseException:
        conn.close()
        raise


@contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` (the write lock first, so two writers never deadlock upgrading a read lock),
    ``COMMIT`` when the block ends, ``ROLLBACK`` and re-raise when it raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # SQLite may already have rolled back (disk full, I/O error)
            conn.execute("ROLLBACK")
        raise
