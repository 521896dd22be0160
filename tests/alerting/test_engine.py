"""The dead-man engine driven by check-ins and an injected clock, persisting to a real SQLite file."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from sidecar.alerting.checks import DOWN, FIRE, LATE, REMIND, RESOLVE, UP
from sidecar.alerting.config import AlertingConfig, CheckSpec
from sidecar.alerting.engine import CheckinRefused, DeadmanEngine
from sidecar.alerting.notifiers import KEEPALIVE, Notification
from sidecar.alerting.store import AlertStore
from sidecar.telemetry.metrics import FleetMetrics, declare_fleet_metrics
from tests.metrics_util import sample


@dataclass
class FakeMember:
    member_id: str
    connected: bool = True
    last_seen: float | None = None
    disconnect_reason: str | None = None


@dataclass
class FakeFleets:
    fleets: dict[str, dict[str, FakeMember]] = field(default_factory=dict)

    def connected_count(self, fleet: str) -> int:
        return sum(m.connected for m in self.fleets.get(fleet, {}).values())

    def members(self, fleet: str) -> Iterable[FakeMember]:
        return list(self.fleets.get(fleet, {}).values())


class Harness:
    """An engine plus its store; ``step`` is what the service's loop does each tick."""

    def __init__(self, tmp: Path, config: AlertingConfig, fleets: FakeFleets, now: float) -> None:
        self.prom = CollectorRegistry()
        self.metrics: FleetMetrics = declare_fleet_metrics(self.prom)
        self.store = AlertStore(tmp / "alerts.db")
        self.store.open()
        self.engine = DeadmanEngine(config, fleets, self.metrics, started_at=now)
        self.engine.restore(self.store.subjects(), self.store.snoozes())
        self.sent: list[Notification] = []

    def step(self, now: float) -> list[Notification]:
        ev = self.engine.evaluate(now)
        self.store.save(ev.changed, ev.removed, now)
        self.sent.extend(ev.notifications)
        return ev.notifications

    def run(self, start: float, end: float, every: float = 1.0) -> list[Notification]:
        out: list[Notification] = []
        t = start
        while t <= end:
            out.extend(self.step(t))
            t += every
        return out

    def text(self) -> str:
        return generate_latest(self.prom).decode()


def events(notes: Iterable[Notification]) -> list[tuple[str, str]]:
    return [(n.event, n.key) for n in notes]


CONFIG = AlertingConfig(checks=(CheckSpec("nightly", period_s=60.0, grace_s=30.0),))


def test_checkin_up_late_down_up_one_firing_one_resolved(tmp_path: Path) -> None:
    h = Harness(tmp_path, CONFIG, FakeFleets(), now=0.0)
    assert h.run(0, 100) == []  # "new": never pinged, never alerts
    h.engine.checkin("nightly", "success", 100.0)
    assert h.run(101, 160) == [] and h.engine.subjects["nightly"].status == UP
    assert h.run(161, 190) == [] and h.engine.subjects["nightly"].status == LATE
    assert sample(h.text(), "sidecar_deadman_up", check="nightly") == 1
    down = h.run(191, 400)
    assert events(down) == [(FIRE, "nightly")]
    assert down[0].at == 191 and down[0].fired_at == 191
    assert sample(h.text(), "sidecar_deadman_up", check="nightly") == 0
    assert sample(h.text(), "sidecar_deadman_last_seen_timestamp_seconds", check="nightly") == 100
    h.engine.checkin("nightly", "success", 400.5)
    up = h.run(401, 450)
    assert events(up) == [(RESOLVE, "nightly")]
    assert up[0].fired_at == 191 and up[0].at == 401
    assert events(h.sent) == [(FIRE, "nightly"), (RESOLVE, "nightly")]
    assert sample(h.text(), "sidecar_deadman_up", check="nightly") == 1


def test_restart_neither_forgets_a_down_check_nor_refires_a_resolved_one(tmp_path: Path) -> None:
    h = Harness(tmp_path, CONFIG, FakeFleets(), now=0.0)
    h.engine.checkin("nightly", "success", 0.0)
    assert events(h.run(1, 100)) == [(FIRE, "nightly")]
    h.store.close()
    # Restart while down: still firing, no second "firing" message, and the reminder clock carries on.
    h2 = Harness(tmp_path, AlertingConfig(checks=CONFIG.checks, repeat_interval_s=1000), FakeFleets(), 200.0)
    assert h2.engine.subjects["nightly"].firing
    assert h2.run(200, 300) == []
    assert [n.event for n in h2.run(301, 1100)] == [REMIND]  # fired at 91, reminded at 1091
    assert h2.engine.view(1100)["firing"][0]["check"] == "nightly"
    h2.engine.checkin("nightly", "success", 1100.5)
    assert events(h2.run(1101, 1102)) == [(RESOLVE, "nightly")]
    h2.store.close()
    h3 = Harness(tmp_path, CONFIG, FakeFleets(), now=1150.0)
    assert h3.run(1150, 1160) == [] and not h3.engine.subjects["nightly"].firing


def test_checkins_create_checks_with_their_own_period(tmp_path: Path) -> None:
    config = AlertingConfig(
        checks=(CheckSpec("traffic", "traffic", period_s=600, grace_s=0),),
        default_period_s=60,
        default_grace_s=30,
        max_checks=3,
    )
    h = Harness(tmp_path, config, FakeFleets(), now=0.0)
    s = h.engine.checkin("backup", "success", 10.0, period=3600.0, grace=60.0)
    assert (s.period_s, s.grace_s, s.dynamic) == (3600.0, 60.0, True)
    d = h.engine.checkin("cron", "success", 10.0)
    assert (d.period_s, d.grace_s) == (60.0, 30.0)
    with pytest.raises(CheckinRefused) as refused:
        h.engine.checkin("one-too-many", "success", 10.0)
    assert refused.value.status == 429
    with pytest.raises(CheckinRefused) as wrong_kind:
        h.engine.checkin("traffic", "success", 10.0)
    assert wrong_kind.value.status == 409
    with pytest.raises(CheckinRefused):
        h.engine.checkin("bad name", "success", 10.0)
    assert events(h.run(11, 3670)) == [(FIRE, "cron")]  # down after 10 + 60 + 30; backup after 3670
    assert events(h.run(3671, 3671)) == [(FIRE, "backup")]
    h.store.close()
    # Checks created by check-ins survive a restart with their period and grace.
    h2 = Harness(tmp_path, config, FakeFleets(), now=4000.0)
    assert (h2.engine.subjects["backup"].period_s, h2.engine.subjects["backup"].grace_s) == (3600.0, 60.0)
    note = h2.engine.forget("backup", 4000.0, "check deleted")
    assert note is not None and note.event == RESOLVE


def test_fleet_member_gone_fires_per_member_and_resolves_on_return(tmp_path: Path) -> None:
    fleets = FakeFleets({"voice": {"a": FakeMember("a", last_seen=0.0), "b": FakeMember("b", last_seen=0.0)}})
    config = AlertingConfig(checks=(CheckSpec("voice-members", "fleet_members", 0.0, 20.0, fleet="voice"),))
    h = Harness(tmp_path, config, fleets, now=0.0)
    assert h.run(0, 10) == []
    fleets.fleets["voice"]["a"] = FakeMember(
        "a", connected=False, last_seen=10.5, disconnect_reason="ping_timeout"
    )
    fleets.fleets["voice"]["b"] = FakeMember(
        "b", connected=False, last_seen=10.5, disconnect_reason="client_close"
    )
    notes = h.run(11, 60)
    assert events(notes) == [(FIRE, "voice-members/a")]  # b left cleanly: no alert
    assert notes[0].at == 31 and notes[0].member == "a" and notes[0].fleet == "voice"  # 10.5 + 20 < 31
    assert "voice-members/b" not in h.engine.subjects
    assert sample(h.text(), "sidecar_deadman_up", check="voice-members") == 0
    fleets.fleets["voice"]["a"] = FakeMember("a", connected=True, last_seen=61.0)
    assert events(h.run(61, 62)) == [(RESOLVE, "voice-members/a")]
    assert sample(h.text(), "sidecar_deadman_up", check="voice-members") == 1
    text = h.text()
    assert "member=" not in text  # never a series per member


def test_member_missing_after_restart_fires_after_grace(tmp_path: Path) -> None:
    fleets = FakeFleets({"voice": {"a": FakeMember("a", last_seen=0.0)}})
    config = AlertingConfig(checks=(CheckSpec("vm", "fleet_members", 0.0, 20.0, fleet="voice"),))
    h = Harness(tmp_path, config, fleets, now=0.0)
    h.run(0, 5)
    h.store.close()
    # The sidecar restarts at 1000; member "a" never reconnects: grace counts from the restart.
    h2 = Harness(tmp_path, config, FakeFleets(), now=1000.0)
    assert h2.run(1000, 1020) == []
    assert events(h2.run(1021, 1030)) == [(FIRE, "vm/a")]


def test_fleet_size_and_traffic_checks(tmp_path: Path) -> None:
    fleets = FakeFleets({"voice": {k: FakeMember(k) for k in "abc"}})
    config = AlertingConfig(
        checks=(
            CheckSpec("size", "fleet_size", 0.0, 10.0, fleet="voice", min_members=3),
            CheckSpec("traffic", "traffic", 300.0, 0.0),
        )
    )
    h = Harness(tmp_path, config, fleets, now=0.0)
    assert h.run(0, 400) == []  # traffic: not armed before the first successful call
    fleets.fleets["voice"]["c"].connected = False
    h.engine.observe_success(400.0)
    assert events(h.run(401, 411)) == [(FIRE, "size")]  # fewer than 3 since 401 (last met at 400)
    assert events(h.run(412, 701)) == [(FIRE, "traffic")]  # 400 + 300 < 701
    h.engine.observe_success(702.0)
    fleets.fleets["voice"]["c"].connected = True
    assert sorted(events(h.run(703, 703))) == [(RESOLVE, "size"), (RESOLVE, "traffic")]


def test_snooze_mutes_and_keepalives_skip_muted(tmp_path: Path) -> None:
    config = AlertingConfig(
        checks=(CheckSpec("a", period_s=10, grace_s=0), CheckSpec("b", period_s=10, grace_s=0))
    )
    h = Harness(tmp_path, config, FakeFleets(), now=0.0)
    h.engine.checkin("a", "success", 0.0)
    h.engine.checkin("b", "success", 0.0)
    h.engine.snooze("b", until=100.0, reason="deploy")
    assert events(h.run(1, 50)) == [(FIRE, "a")]
    assert [n.key for n in h.engine.keepalives(50)] == ["a"]
    assert all(n.event == KEEPALIVE for n in h.engine.keepalives(50))
    assert events(h.run(51, 101)) == [(FIRE, "b")]  # still down when the snooze ended at 100
    h.engine.snooze("*", until=500.0, reason="maintenance")
    assert h.engine.keepalives(200) == []
    view = h.engine.view(200)
    assert {f["check"] for f in view["firing"]} == {"a", "b"} and all(f["muted"] for f in view["firing"])
    assert view["snoozes"] == [{"scope": "*", "until": 500.0, "reason": "maintenance"}]


def test_statuses_are_persisted(tmp_path: Path) -> None:
    h = Harness(tmp_path, CONFIG, FakeFleets(), now=0.0)
    h.engine.checkin("nightly", "success", 5.0)
    h.run(6, 100)
    (row,) = h.store.subjects()
    assert (row.key, row.status, row.since, row.last_seen, row.firing, row.notified) == (
        "nightly",
        DOWN,
        96.0,  # first tick after 5 + 60 + 30
        5.0,
        True,
        True,
    )
