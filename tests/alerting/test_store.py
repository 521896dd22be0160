"""Alert state on SQLite: idempotent migrations, round trips, snoozes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sidecar.alerting.checks import DOWN, Subject
from sidecar.alerting.store import AlertStore, migrate


def test_migrations_are_idempotent(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "a.db", isolation_level=None)
    assert migrate(conn, 1.0) == 1
    assert migrate(conn, 2.0) == 0
    assert conn.execute("SELECT version, applied_at FROM schema_migrations").fetchall() == [(1, 1.0)]
    conn.close()
    store = AlertStore(tmp_path / "nested" / "alerts.db")
    store.open()
    store.open()
    store.close()
    store.open()  # reopening an existing file applies nothing and keeps working
    assert store.subjects() == []
    store.close()


def test_subjects_round_trip_and_delete(tmp_path: Path) -> None:
    store = AlertStore(tmp_path / "alerts.db")
    store.open()
    a = Subject(
        "m/x", "m", "fleet_members", member="x", period_s=0.0, grace_s=20.0, last_seen=5.5, status=DOWN
    )
    a.firing, a.notified, a.fired_at, a.misses = True, True, 30.0, 1
    b = Subject("job", "job", "checkin", dynamic=True, last_start=1.0, last_fail=2.0, fails=2, since=3.0)
    store.save([a, b], now=100.0)
    assert store.subjects() == [b, a]  # ordered by key
    b.fails = 0
    store.save([b], removed=["m/x"], now=101.0)
    assert store.subjects() == [b]
    store.close()
    reopened = AlertStore(tmp_path / "alerts.db")
    reopened.open()
    (row,) = reopened.subjects()
    assert row.fails == 0 and row.dynamic is True and row.firing is False
    reopened.close()


def test_snoozes(tmp_path: Path) -> None:
    store = AlertStore(tmp_path / "alerts.db")
    store.open()
    store.set_snooze("*", 500.0, "maintenance", 1.0)
    store.set_snooze("job", 200.0, "deploy", 1.0)
    store.set_snooze("job", 300.0, "longer deploy", 2.0)
    assert store.snoozes() == {"*": (500.0, "maintenance"), "job": (300.0, "longer deploy")}
    store.clear_snooze("*")
    assert store.snoozes() == {"job": (300.0, "longer deploy")}
    store.close()
