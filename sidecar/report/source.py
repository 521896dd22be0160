"""The store ``report`` and ``check`` read, through its query layer
(:class:`~sidecar.store.queries.ReadStore`): opened (a missing SQLite file is an error, never created),
read, closed. Problems are :class:`~sidecar.report.args.UsageError`."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sidecar.infra.sqlite import parse_sqlite_url
from sidecar.report.args import UsageError
from sidecar.store.clickhouse import ClickHouseClient, ClickHouseStoreError
from sidecar.store.factory import is_clickhouse_url, open_event_store, redact_url
from sidecar.store.queries import ReadStore
from sidecar.store.sqlite import SQLiteStore
from sidecar.store.sqlite_reads import SQLiteReads


def _sqlite_path(url: str) -> Path:
    if "://" not in url:
        return Path(url)  # a plain file path, as people type it
    if not url.startswith("sqlite:"):
        scheme = url.split(":", 1)[0]
        expected = "expected a file path, sqlite:///path or clickhouse://"
        raise UsageError(f"unknown store scheme {scheme!r} in {redact_url(url)!r} ({expected})")
    try:
        return parse_sqlite_url(url)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _prepare_sqlite(url: str) -> Path:
    path = _sqlite_path(url)
    # Opening a missing file would create an empty store in the current directory: say so instead.
    if not path.is_file():
        raise UsageError(f"no event store at {path} (pass --store or set SIDECAR_STORE)")
    store = SQLiteStore(path)
    try:
        store.open()  # brings an older file's schema (and its rollups) up to date
    except (sqlite3.Error, RuntimeError, OSError) as exc:
        raise UsageError(f"cannot open event store {path}: {exc}") from None
    finally:
        store.close()
    return path


@contextmanager
def opened_reads(url: str, connect: Callable[[], ClickHouseClient] | None = None) -> Iterator[ReadStore]:
    """The query layer of the store named by ``url``, closed on exit. ``connect`` replaces the
    ClickHouse client factory (tests pass an in-process engine)."""
    if is_clickhouse_url(url):
        try:
            stores = open_event_store(url, connect=connect)
        except (ClickHouseStoreError, ValueError) as exc:
            raise UsageError(f"cannot open ClickHouse store {redact_url(url)}: {exc}") from None
        try:
            yield stores.fleet_reads()  # its own connection; the checked one closes with ``stores``
        except ClickHouseStoreError as exc:
            raise UsageError(f"cannot read the ClickHouse store: {exc}") from None
        finally:
            stores.close()
        return
    lite = SQLiteReads(_prepare_sqlite(url))
    try:
        yield lite
    except sqlite3.Error as exc:
        raise UsageError(f"cannot read the event store: {exc}") from None
    finally:
        lite.close()
