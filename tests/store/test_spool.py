"""The durable spool and the shipper: nothing lost across outages and restarts, nothing doubled."""

from __future__ import annotations

import dataclasses
import importlib.util
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from sidecar.core.events import CallEvent
from sidecar.core.ratelimits import RateLimits, StandardLimit, UnifiedWindow
from sidecar.store.chdb_client import ChdbClient
from sidecar.store.clickhouse import ClickHouseStore
from sidecar.store.clickhouse_schema import SchemaOptions
from sidecar.store.shipper import Shipper, ShipperHooks, ShipperOptions
from sidecar.store.spool import Spool, decode_event, encode_event
from tests.conftest import require_service
from tests.store.test_sqlite import full_event, minimal_event
from tests.waiting import wait_until

FAST = ShipperOptions(batch_size=4, interval_s=0.02, backoff_min_s=0.01, backoff_max_s=0.02)


def events(n: int, start: int = 0) -> list[CallEvent]:
    """``n`` model calls of session s-1 at $0.25 each (a binary fraction: sums are exact)."""
    call = {"method": "POST", "path": "/v1/messages", "operation": "chat", "status": 200, "cost_usd": 0.25}
    return [minimal_event(f"ev-{i:04d}", 1_767_225_600.0 + i, **call) for i in range(start, start + n)]


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    s = Spool(tmp_path / "spool" / "clickhouse.db")
    s.open()
    yield s
    s.close()


def test_codec_round_trips_every_field_exactly() -> None:
    for event in (full_event(), minimal_event()):
        assert decode_event(encode_event(event)) == event


def test_the_answers_rate_limits_are_not_spooled() -> None:
    assert dataclasses.fields(CallEvent)[-1].name == "ratelimits"  # the encoder cuts it off the end
    limits = RateLimits(
        standard=(StandardLimit("requests", 4000, 3999),), windows=(UnifiedWindow("5h", 0.5),)
    )
    event = dataclasses.replace(full_event(), ratelimits=limits)
    raw = encode_event(event)
    assert (
        b"ratelimits" not in raw and raw == encode_event(full_event())[: -len(b',"ratelimits":null}')] + b"}"
    )
    decoded = decode_event(raw)
    assert decoded == full_event() and decoded.ratelimits is None


def test_codec_tolerates_fields_of_another_release() -> None:
    doc = orjson.loads(encode_event(full_event()))
    doc["field_from_the_future"] = 1
    doc["usage"]["bucket_from_the_future"] = 2
    del doc["trace_id"], doc["usage"]["speed"]  # an older release did not write these
    got = decode_event(orjson.dumps(doc))
    assert got == dataclasses.replace(
        full_event(), trace_id=None, usage=dataclasses.replace(full_event().usage, speed=None)
    )


def test_append_peek_ack_and_counters_survive_a_reopen(spool: Spool) -> None:
    evs = events(5)
    sizes = [len(encode_event(e)) + 48 for e in evs]  # payload + the fixed per-row allowance
    assert spool.append(evs) == 0
    assert (spool.depth, spool.size_bytes) == (5, sum(sizes))
    batch = spool.peek(2)
    assert [e.event_id for e in batch.events] == ["ev-0000", "ev-0001"]
    spool.ack(batch.ids)
    spool.ack(batch.ids)  # acknowledging twice changes nothing
    assert (spool.depth, spool.size_bytes) == (3, sum(sizes[2:]))
    spool.close()
    again = Spool(spool.path)
    again.open()
    assert (again.depth, again.size_bytes) == (3, sum(sizes[2:]))
    assert again.peek(10).events == tuple(evs[2:])
    again.close()


def test_a_claimed_batch_is_resent_unchanged_until_acked_even_after_a_restart(spool: Spool) -> None:
    spool.append(events(3))
    first = spool.claim(10)
    assert first is not None and [e.event_id for e in first.events] == ["ev-0000", "ev-0001", "ev-0002"]
    spool.append(events(5, start=3))  # more arrive while the batch is out
    assert spool.claim(10) == first  # not widened: its dedup token must stay the same
    spool.close()
    reopened = Spool(spool.path)
    reopened.open()
    assert reopened.claim(10) == first
    reopened.ack(first.ids)
    second = reopened.claim(2)
    assert second is not None and [e.event_id for e in second.events] == ["ev-0003", "ev-0004"]
    reopened.ack(second.ids)
    third = reopened.claim(100)
    assert third is not None and len(third.events) == 3
    reopened.ack(third.ids)
    assert reopened.claim(100) is None and reopened.depth == 0
    reopened.close()


def test_cap_drops_oldest_unclaimed_events_first_and_counts_them(tmp_path: Path) -> None:
    evs = events(10)
    row = len(encode_event(evs[0])) + 48  # every test event encodes to the same length
    assert {len(encode_event(e)) + 48 for e in evs} == {row}
    s = Spool(tmp_path / "s.db", max_bytes=4 * row)  # room for exactly four events
    s.open()
    assert s.append(evs[:3]) == 0
    claimed = s.claim(1)  # ev-0000 is out for delivery
    assert claimed is not None
    assert s.append(evs[3:6]) == 2  # 6 rows, cap 4: ev-0001 and ev-0002 go, the claimed ev-0000 stays
    assert s.dropped == 2 and s.depth == 4 and s.size_bytes == 4 * row
    assert [e.event_id for e in s.peek(10).events] == ["ev-0000", "ev-0003", "ev-0004", "ev-0005"]
    assert s.append(evs[6:]) == 4  # 8 rows: the four oldest unclaimed go, new ones included
    assert [e.event_id for e in s.peek(10).events] == ["ev-0000", "ev-0007", "ev-0008", "ev-0009"]
    assert s.dropped == 6 and s.size_bytes == 4 * row
    s.ack(claimed.ids)
    assert s.append(events(1, start=10)) == 0  # the delivered batch made room
    s.close()


def test_lag_is_the_age_of_the_oldest_waiting_event(spool: Spool) -> None:
    assert spool.lag_seconds(now=1000.0) == 0.0
    spool.append(events(1), now=900.0)
    spool.append(events(1, start=1), now=990.0)
    assert spool.lag_seconds(now=1000.0) == 100.0
    spool.ack(spool.peek(1).ids)
    assert spool.lag_seconds(now=1000.0) == 10.0


def test_spool_file_is_wal(spool: Spool) -> None:
    with sqlite3.connect(spool.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn.close()


class FlakyRemote:
    """An in-memory destination that fails while ``down``; with ``lose_acks`` it stores the batch and
    then fails anyway (the reply was lost), like a timeout after the server committed."""

    def __init__(self) -> None:
        self.down = False
        self.lose_acks = False
        self.rows: list[CallEvent] = []
        self.attempts = 0
        self.lock = threading.Lock()

    def open(self) -> None:
        if self.down and not self.lose_acks:
            raise ConnectionError("connection refused")

    def write_events(self, events: Sequence[CallEvent]) -> None:
        with self.lock:
            self.attempts += 1
            if self.lose_acks:
                self.rows.extend(events)
            if self.down:
                raise ConnectionError("connection reset")
            self.rows.extend(events)

    def close(self) -> None:
        return None


class Counts:
    def __init__(self) -> None:
        self.shipped = 0
        self.errors = 0
        self.dropped = 0

    def hooks(self) -> ShipperHooks:
        def shipped(n: int) -> None:
            self.shipped += n

        def error() -> None:
            self.errors += 1

        def dropped(n: int) -> None:
            self.dropped += n

        return ShipperHooks(on_shipped=shipped, on_error=error, on_dropped=dropped)


def test_outage_then_recovery_delivers_everything_once_in_order(tmp_path: Path) -> None:
    remote, counts = FlakyRemote(), Counts()
    shipper = Shipper(Spool(tmp_path / "s.db"), remote, FAST, counts.hooks())
    shipper.start()
    remote.down = True
    shipper.write(events(10))
    assert wait_until(lambda: shipper.errors >= 3)  # it keeps retrying while down
    assert remote.rows == [] and shipper.depth() == 10 and counts.errors == shipper.errors
    assert shipper.lag_seconds() > 0
    assert shipper.status()["shipping"] is False
    remote.down = False
    assert shipper.flush(5.0)
    shipper.write(events(3, start=10))
    assert shipper.flush(5.0)
    shipper.stop()
    assert [e.event_id for e in remote.rows] == [f"ev-{i:04d}" for i in range(13)]
    assert counts.shipped == 13 and shipper.status()["shipping"] is True
    assert shipper.lag_seconds() == 0.0


def test_a_lost_acknowledgement_resends_the_identical_batch(tmp_path: Path) -> None:
    remote = FlakyRemote()
    shipper = Shipper(Spool(tmp_path / "s.db"), remote, FAST)
    remote.down = remote.lose_acks = True
    shipper.start()
    shipper.write(events(3))
    assert wait_until(lambda: remote.attempts >= 3)
    with remote.lock:  # not in the middle of an attempt
        remote.down = remote.lose_acks = False
    assert shipper.flush(5.0)
    shipper.stop()
    # Every attempt carried exactly the same three events: a token derived from them dedups server-side.
    ids = [e.event_id for e in remote.rows]
    assert len(ids) == 3 * remote.attempts
    assert set(ids) == {"ev-0000", "ev-0001", "ev-0002"} and ids[:3] == ["ev-0000", "ev-0001", "ev-0002"]


def test_stop_drains_and_a_restart_ships_what_was_left(tmp_path: Path) -> None:
    remote = FlakyRemote()
    first = Shipper(Spool(tmp_path / "s.db"), remote, FAST)
    first.write(events(6))  # before start: the spool opens on demand
    first.start()
    assert first.flush(5.0)
    remote.down = True
    first.write(events(5, start=6))
    first.stop(timeout_s=0.1)  # cannot ship: the five events stay on disk
    assert [e.event_id for e in remote.rows] == [f"ev-{i:04d}" for i in range(6)]
    remote.down = False
    second = Shipper(Spool(tmp_path / "s.db"), remote, FAST)
    second.start()
    assert second.flush(5.0)
    second.stop()
    assert [e.event_id for e in remote.rows] == [f"ev-{i:04d}" for i in range(11)]


def test_spool_cap_drops_are_reported_through_the_hook(tmp_path: Path) -> None:
    remote, counts = FlakyRemote(), Counts()
    remote.down = True
    row = len(encode_event(events(1)[0])) + 48
    shipper = Shipper(Spool(tmp_path / "s.db", max_bytes=3 * row), remote, FAST, counts.hooks())
    shipper.write(events(5))
    assert counts.dropped == 2 and shipper.status()["spool_dropped"] == 2
    assert shipper.depth() == 3
    shipper.stop(timeout_s=0.0)


# --- the same with a real ClickHouse engine (chDB) --------------------------------------------------


class FlakyClient:
    """Wraps the chDB client: refuses every call while ``down``; with ``lose_acks`` the insert runs and
    the caller still sees an error."""

    def __init__(self, inner: ChdbClient) -> None:
        self.inner = inner
        self.down = False
        self.lose_acks = False
        self.inserts = 0

    def command(self, sql: str, settings: Mapping[str, Any] | None = None) -> Any:
        if self.down:
            raise ConnectionError("connection refused")
        return self.inner.command(sql, settings)

    def insert(
        self,
        table: str,
        rows: Sequence[Sequence[Any]],
        column_names: Sequence[str],
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        self.inserts += 1
        if self.lose_acks:
            self.inner.insert(table, rows, column_names, settings)
        if self.down:
            raise TimeoutError("read timed out")
        self.inner.insert(table, rows, column_names, settings)

    def query(self, sql: str, parameters: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        if self.down and not self.lose_acks:
            raise ConnectionError("connection refused")
        return self.inner.query(sql, parameters)

    def close(self) -> None:
        return None


@pytest.fixture
def chdb_client(tmp_path: Path) -> Iterator[ChdbClient]:
    require_service(
        importlib.util.find_spec("chdb") is not None, "chdb (in-process ClickHouse: pip install chdb)"
    )
    client = ChdbClient(tmp_path / "chdb")
    yield client
    client.close()


def test_clickhouse_outage_and_restart_deliver_exactly_once(tmp_path: Path, chdb_client: ChdbClient) -> None:
    flaky = FlakyClient(chdb_client.borrow())
    schema = SchemaOptions(database="fleet", ttl_days=0)
    spool_path = tmp_path / "spool.db"

    def shipper() -> Shipper:
        return Shipper(Spool(spool_path), ClickHouseStore(lambda: flaky, schema), FAST)

    flaky.down = True  # down from the start: migrations wait too
    first = shipper()
    first.start()
    first.write(events(10))
    assert wait_until(lambda: first.errors >= 2)
    flaky.down = False
    assert wait_until(lambda: first.spool.depth <= 6)  # some batches went through
    flaky.down = flaky.lose_acks = True  # then the server commits but the replies are lost
    first.write(events(10, start=10))
    assert wait_until(lambda: flaky.inserts >= 5)
    first.stop(timeout_s=0.05)  # "sidecar restart" in the middle of the outage
    assert first.spool.depth > 0
    flaky.down = flaky.lose_acks = False
    second = shipper()
    second.start()
    assert second.flush(10.0)
    second.stop()
    inner = chdb_client
    # Without FINAL and without merges: the server-side dedup alone kept every event once.
    rows = inner.query("SELECT event_id, count() FROM fleet.events GROUP BY event_id ORDER BY event_id")
    assert rows == [(f"ev-{i:04d}", 1) for i in range(20)]
    # The rollup was fed once per event too: 20 calls at $0.25 in session s-1 = $5.00, not more.
    rollup = inner.query("SELECT sum(events), sum(cost_usd) FROM fleet.sessions_rollup")
    assert rollup == [(20, 5.0)]
    assert flaky.inserts > 4  # it really retried
