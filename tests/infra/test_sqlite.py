"""The shared SQLite setup: URLs, connection pragmas, WAL, and the write transaction."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from sidecar.infra.sqlite import BUSY_TIMEOUT_MS, connect, open_wal, parse_sqlite_url, write_transaction


def test_parse_sqlite_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert parse_sqlite_url("sqlite:///rel/path.db") == tmp_path / "rel" / "path.db"
    assert parse_sqlite_url("sqlite:////abs/path.db") == Path("/abs/path.db")
    assert parse_sqlite_url("sqlite:///with%20space.db") == tmp_path / "with space.db"
    for bad in (
        "postgres:///x.db",
        "sqlite://host/x.db",
        "sqlite://",
        "sqlite:///",
        "sqlite:////",
        "sqlite:///dir/",
        "sqlite:///:memory:",
        "sqlite:///x.db?mode=ro",
        "x.db",
    ):
        with pytest.raises(ValueError):
            parse_sqlite_url(bad)


def test_connect_sets_the_pragmas(tmp_path: Path) -> None:
    conn = connect(tmp_path / "c.db")
    try:
        assert conn.isolation_level is None  # autocommit: transactions are explicit
        assert conn.execute("PRAGMA busy_timeout").fetchone() == (BUSY_TIMEOUT_MS,)
        assert conn.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL
    finally:
        conn.close()


def test_open_wal_creates_the_directory_and_runs_setup(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "w.db"
    conn, tables = open_wal(path, lambda c: c.execute("CREATE TABLE t (x)").rowcount, incremental_vacuum=True)
    try:
        assert path.is_file() and tables == -1
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("PRAGMA auto_vacuum").fetchone() == (2,)  # INCREMENTAL on a new file
    finally:
        conn.close()
    plain, _ = open_wal(tmp_path / "plain.db", lambda c: None)
    try:
        assert plain.execute("PRAGMA auto_vacuum").fetchone() == (0,)
    finally:
        plain.close()


def test_open_wal_closes_the_connection_when_setup_fails(tmp_path: Path) -> None:
    opened: list[sqlite3.Connection] = []

    def setup(conn: sqlite3.Connection) -> None:
        opened.append(conn)
        raise RuntimeError("migration failed")

    with pytest.raises(RuntimeError, match="migration failed"):
        open_wal(tmp_path / "f.db", setup)
    with pytest.raises(sqlite3.ProgrammingError):  # closed
        opened[0].execute("SELECT 1")


def test_write_transaction_commits_or_rolls_back(tmp_path: Path) -> None:
    conn, _ = open_wal(tmp_path / "t.db", lambda c: c.execute("CREATE TABLE t (x INTEGER)"))
    try:
        with write_transaction(conn):
            conn.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(ZeroDivisionError), write_transaction(conn):
            conn.execute("INSERT INTO t VALUES (2)")
            _ = 1 / 0
        assert not conn.in_transaction
        assert conn.execute("SELECT x FROM t").fetchall() == [(1,)]
    finally:
        conn.close()


def test_require_wal_refuses_another_journal_mode() -> None:
    # An in-memory database cannot use WAL (journal_mode stays "memory").
    conn, mode = open_wal(Path(":memory:"), lambda c: c.execute("PRAGMA journal_mode").fetchone())
    conn.close()
    assert mode == ("memory",)
    with pytest.raises(RuntimeError, match="could not enable WAL"):
        open_wal(Path(":memory:"), lambda c: None, require_wal=True)
