"""The stores ``report`` and ``check`` run against: the embedded SQLite file, and ClickHouse (a real engine
in this process: chDB) read as ``--store clickhouse://…`` reads it."""

from __future__ import annotations

import importlib.util
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from sidecar.core.events import CallEvent
from sidecar.store.chdb_client import ChdbClient
from sidecar.store.clickhouse import ClickHouseClient, ClickHouseStore
from sidecar.store.clickhouse_schema import SchemaOptions
from sidecar.store.sqlite import SQLiteStore
from tests.conftest import require_service

_DATABASES = itertools.count(1)


@dataclass
class Store:
    """A store to fill (``write``) and the ``--store`` URL and client factory that read it."""

    url: str
    write: Callable[[Sequence[CallEvent]], None]
    connect: Callable[[], ClickHouseClient] | None = None


def _sqlite(tmp_path: Path) -> Store:
    path = tmp_path / "events.db"
    store = SQLiteStore(path)
    store.open()
    store.close()

    def write(events: Sequence[CallEvent]) -> None:
        s = SQLiteStore(path)
        s.open()
        s.write_events(events)
        s.close()

    return Store(f"sqlite:///{path}", write)


def _clickhouse(engine: ChdbClient) -> Store:
    database = f"report{next(_DATABASES)}"  # one database per test on the module's engine
    store = ClickHouseStore(engine.borrow, SchemaOptions(database=database, ttl_days=0))
    store.open()  # creates the schema, as a serving sidecar would
    store.close()

    def write(events: Sequence[CallEvent]) -> None:
        s = ClickHouseStore(engine.borrow, SchemaOptions(database=database, ttl_days=0), migrate=False)
        s.open()
        s.write_events(events)
        s.close()

    return Store(f"clickhouse://default:pw@127.0.0.1:9/{database}", write, engine.borrow)


@pytest.fixture(scope="module")
def chdb_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChdbClient]:
    require_service(importlib.util.find_spec("chdb") is not None, "chdb (pip install chdb)")
    engine = ChdbClient(tmp_path_factory.mktemp("chdb"))
    yield engine
    engine.close()


@pytest.fixture(params=["sqlite", "clickhouse"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """An empty store of each kind."""
    if request.param == "sqlite":
        return _sqlite(tmp_path)
    return _clickhouse(request.getfixturevalue("chdb_engine"))
