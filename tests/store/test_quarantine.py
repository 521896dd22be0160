"""Poison batches: a batch ClickHouse keeps rejecting is set aside in a dead-letter file and shipping goes
on; an outage, however long, quarantines nothing."""

from __future__ import annotations

import dataclasses
import importlib.util
import stat
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, DataError, OperationalError

from sidecar.core.events import CallEvent
from sidecar.server.inprocess import RunningSidecar
from sidecar.settings import Settings
from sidecar.store.chdb_client import ChdbClient
from sidecar.store.clickhouse import ClickHouseStore, ClickHouseStoreError
from sidecar.store.clickhouse_schema import SchemaOptions
from sidecar.store.quarantine import dead_letter_path, is_rejection
from sidecar.store.shipper import Shipper, ShipperOptions
from sidecar.store.spool import Spool, decode_event
from sidecar.testing.fake_upstream import FakeUpstream
from tests.conftest import require_service
from tests.metrics_util import sample
from tests.store.test_spool import FAST, Counts, FlakyClient, FlakyRemote, events
from tests.waiting import wait_until

SCHEMA = SchemaOptions(database="fleet", ttl_days=0)
CHDB = "chdb (in-process ClickHouse: pip install chdb)"


def poisoned(event: CallEvent) -> CallEvent:
    """An event ClickHouse refuses: text where the table has a number (Code: 27, CANNOT_PARSE_INPUT)."""
    return dataclasses.replace(event, status="two hundred")  # type: ignore[arg-type]


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[ChdbClient]:
    require_service(
        importlib.util.find_spec("chdb") is not None, "chdb (in-process ClickHouse: pip install chdb)"
    )
    client = ChdbClient(tmp_path / "chdb")
    yield client
    client.close()


def stored_ids(engine: ChdbClient) -> list[str]:
    return [str(r[0]) for r in engine.query("SELECT event_id FROM fleet.events ORDER BY event_id")]


def dead_letters(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_a_batch_clickhouse_keeps_rejecting_is_quarantined_and_shipping_goes_on(
    tmp_path: Path, engine: ChdbClient
) -> None:
    counts, quarantined = Counts(), []
    hooks = dataclasses.replace(counts.hooks(), on_quarantined=quarantined.append)
    spool = Spool(tmp_path / "spool.db")
    shipper = Shipper(spool, ClickHouseStore(engine.borrow, SCHEMA), FAST, hooks)
    good, bad, after = events(4), events(4, start=4), events(4, start=8)
    bad[2] = poisoned(bad[2])
    for batch in (good, bad, after):  # three batches of four (FAST ships four at a time)
        shipper.write(batch)
    shipper.start()
    assert wait_until(lambda: shipper.depth() == 0, timeout=30.0)
    shipper.stop()

    assert stored_ids(engine) == [e.event_id for e in good + after]  # the next batch was not held up
    assert quarantined == [4] and shipper.quarantined == 4
    assert counts.errors == 5  # five rejections, no more
    path = dead_letter_path(spool.path)
    assert path == tmp_path / "spool.deadletter.jsonl"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = dead_letters(path)
    replayed = [decode_event(orjson.dumps(line["event"])) for line in lines]
    assert replayed == bad  # as they were recorded
    assert {line["attempts"] for line in lines} == {5}
    assert all("Code: 27" in line["error"] for line in lines)
    assert shipper.status()["quarantined_events"] == 4 and shipper.status()["shipping"] is True
    # The runbook's replay, once the bad value is fixed: the same store, the same events.
    store = ClickHouseStore(engine.borrow, SCHEMA, migrate=False)
    store.open()
    store.write_events([dataclasses.replace(e, status=200) for e in replayed])
    store.close()
    assert stored_ids(engine) == [f"ev-{i:04d}" for i in range(12)]


def test_an_outage_longer_than_the_quarantine_bound_quarantines_nothing(
    tmp_path: Path, engine: ChdbClient
) -> None:
    flaky = FlakyClient(engine.borrow())
    spool = Spool(tmp_path / "spool.db")
    shipper = Shipper(spool, ClickHouseStore(lambda: flaky, SCHEMA), FAST)
    shipper.write(events(2))
    shipper.start()
    assert shipper.flush(30.0)  # opened, migrated and shipping while up
    flaky.down = True  # then every insert times out: connection-level, not a verdict on the rows
    shipper.write(events(6, start=2))
    assert wait_until(lambda: flaky.inserts >= 3 * FAST.quarantine_after, timeout=30.0)
    flaky.down = False
    assert shipper.flush(30.0)
    shipper.stop()
    assert stored_ids(engine) == [f"ev-{i:04d}" for i in range(8)]
    assert shipper.quarantined == 0 and not dead_letter_path(spool.path).exists()


class OverloadedClient(FlakyClient):
    """Answers inserts with a real clickhouse-connect server error while ``code`` is set."""

    def __init__(self, inner: ChdbClient) -> None:
        super().__init__(inner)
        self.code: int | None = None

    def insert(
        self,
        table: str,
        rows: Sequence[Sequence[Any]],
        column_names: Sequence[str],
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        self.inserts += 1
        if self.code is not None:
            raise DatabaseError(f"Received ClickHouse exception, code: {self.code}", code=self.code)
        self.inner.insert(table, rows, column_names, settings)


def test_a_server_state_error_is_an_outage_not_a_rejection(tmp_path: Path, engine: ChdbClient) -> None:
    overloaded = OverloadedClient(engine.borrow())
    overloaded.code = 252  # TOO_MANY_PARTS: passes once merges catch up
    shipper = Shipper(Spool(tmp_path / "spool.db"), ClickHouseStore(lambda: overloaded, SCHEMA), FAST)
    shipper.write(events(4))
    shipper.start()
    assert wait_until(lambda: overloaded.inserts >= 3 * FAST.quarantine_after, timeout=30.0)
    overloaded.code = None
    assert shipper.flush(30.0)
    shipper.stop()
    assert shipper.quarantined == 0 and len(stored_ids(engine)) == 4


class RefusingClient:
    """A ClickHouse client whose schema is in place and whose every insert raises ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def command(self, sql: str, settings: Mapping[str, Any] | None = None) -> Any:
        return ""

    def insert(
        self,
        table: str,
        rows: Sequence[Sequence[Any]],
        column_names: Sequence[str],
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        raise self.error

    def query(self, sql: str, parameters: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return [(1,)]  # the schema exists, at version 1

    def close(self) -> None:
        return None


def _store_error(raised: Exception) -> ClickHouseStoreError:
    """What the shipper sees when the client's insert raises ``raised``: the store's own error."""
    store = ClickHouseStore(lambda: RefusingClient(raised), SCHEMA, migrate=False)
    store.open()
    with pytest.raises(ClickHouseStoreError) as caught:
        store.write_events(events(1))
    return caught.value


@pytest.mark.parametrize(
    ("raised", "rejected"),
    [
        (DatabaseError("Received ClickHouse exception, code: 53, TYPE_MISMATCH", code=53), True),
        (DatabaseError("Received ClickHouse exception, code: 241", code=241), False),  # memory limit
        (DatabaseError("Received ClickHouse exception, code: 516", code=516), False),  # auth
        (DatabaseError("HTTP driver received HTTP status 502, server response: code: 27", code=None), False),
        (OperationalError("Error HTTPConnectionPool(...) executing HTTP request attempt 1"), False),
        (DataError("Invalid value for column status"), True),  # refused before anything was sent
        (ConnectionRefusedError(111, "Connection refused"), False),
        (TimeoutError("read timed out"), False),
        (RuntimeError("Code: 27. DB::Exception: Cannot parse input: expected '\"'"), True),  # chDB
        (RuntimeError("Code: 252. DB::Exception: Too many parts"), False),
        (TypeError("Object of type Decimal is not JSON serializable"), True),  # could not encode
    ],
    ids=lambda v: v if isinstance(v, bool) else type(v).__name__,
)
def test_rejections_are_told_from_outages(raised: Exception, rejected: bool) -> None:
    assert is_rejection(_store_error(raised)) is rejected


def test_a_full_dead_letter_file_keeps_the_batch_in_the_spool(tmp_path: Path, engine: ChdbClient) -> None:
    options = dataclasses.replace(FAST, quarantine_after=2, dead_letter_max_bytes=100)
    shipper = Shipper(Spool(tmp_path / "spool.db"), ClickHouseStore(engine.borrow, SCHEMA), options)
    shipper.write([poisoned(e) for e in events(2)])
    shipper.start()
    assert wait_until(lambda: shipper.errors >= 4, timeout=30.0)
    shipper.stop()
    assert shipper.depth() == 2 and shipper.quarantined == 0  # held, not lost: the cap is the disk's
    assert not dead_letter_path(tmp_path / "spool.db").exists()  # nothing half-written either


def test_quarantined_events_are_counted_in_metrics_and_readyz(fake: FakeUpstream, tmp_path: Path) -> None:
    require_service(
        importlib.util.find_spec("chdb") is not None, "chdb (in-process ClickHouse: pip install chdb)"
    )
    engine = ChdbClient(tmp_path / "chdb")
    try:
        settings = Settings(
            upstream_url=fake.url,
            port=0,
            store="clickhouse://default:pw@127.0.0.1:8123/default",
            local_store=f"sqlite:///{tmp_path}/local.db",
            spool_path=str(tmp_path / "spool.db"),
        )
        with RunningSidecar(settings, clickhouse_connect=engine.borrow) as sidecar:
            shipper = sidecar.sidecar.stores.shipper
            assert isinstance(shipper, Shipper)
            metrics = httpx.get(sidecar.url + "/metrics").text
            assert sample(metrics, "sidecar_clickhouse_quarantined_events_total") == 0  # exists at zero
            shipper.options = dataclasses.replace(shipper.options, backoff_min_s=0.01, backoff_max_s=0.02)
            shipper.write([poisoned(events(1)[0])])  # as the recorder would hand it over
            assert wait_until(lambda: shipper.quarantined == 1, timeout=30.0)
            metrics = httpx.get(sidecar.url + "/metrics").text
            assert sample(metrics, "sidecar_clickhouse_quarantined_events_total") == 1
            ready = httpx.get(sidecar.url + "/readyz").json()
            assert ready["clickhouse"]["quarantined_events"] == 1
        assert len(dead_letters(tmp_path / "spool.deadletter.jsonl")) == 1
    finally:
        engine.close()


def test_the_quarantine_bound_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="quarantine_after"):
        Shipper(Spool(tmp_path / "s.db"), FlakyRemote(), ShipperOptions(quarantine_after=0))
