"""The event store ``report`` and ``check`` read: opened (a missing SQLite file is an error, never
created), read once, closed. Problems are :class:`~sidecar.report.args.UsageError`."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sidecar.core.events import CallEvent
from sidecar.infra.sqlite import parse_sqlite_url
from sidecar.report.args import UsageError
from sidecar.store.base import EventStore
from sidecar.store.clickhouse import ClickHouseStoreError
from sidecar.store.factory import is_clickhouse_url, open_event_store, redact_url
from sidecar.store.sqlite import SQLiteStore


def open_store(url: str) -> EventStore:
    """Open the event store named by ``url`` for reading; ``UsageError`` when it cannot be used."""
    if is_clickhouse_url(url):
        try:
            return open_event_store(url).analytics
        except (ClickHouseStoreError, ValueError) as exc:
            raise UsageError(f"cannot open ClickHouse store {redact_url(url)}: {exc}") from None
    if "://" not in url:
        path = Path(url)  # a plain file path, as people type it
    elif not url.startswith("sqlite:"):
        scheme = url.split(":", 1)[0]
        expected = "expected a file path, sqlite:///path or clickhouse://"
        raise UsageError(f"unknown store scheme {scheme!r} in {redact_url(url)!r} ({expected})")
    else:
        try:
            path = parse_sqlite_url(url)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    # Opening a missing file would create an empty store in the current directory: say so instead.
    if not path.is_file():
        raise UsageError(f"no event store at {path} (pass --store or set SIDECAR_STORE)")
    store = SQLiteStore(path)
    try:
        store.open()
    except (sqlite3.Error, RuntimeError, OSError) as exc:
        raise UsageError(f"cannot open event store {path}: {exc}") from None
    return store


def read_events(store: EventStore, since: float) -> list[CallEvent]:
    """Every event from ``since`` on, oldest first; the store is closed afterwards either way."""
    try:
        return store.events(since=since)
    except sqlite3.Error as exc:
        raise UsageError(f"cannot read the event store: {exc}") from None
    finally:
        store.close()
