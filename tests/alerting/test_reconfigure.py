"""DeadmanEngine.reconfigure (SIGHUP) and alerts with no notifier, on an injected clock."""

from __future__ import annotations

from pathlib import Path

from sidecar.alerting.checks import FIRE, RESOLVE
from sidecar.alerting.config import AlertingConfig, CheckSpec
from tests.alerting.test_engine import FakeFleets, Harness, events


def test_a_removed_check_is_resolved_a_kept_one_takes_new_timings_a_new_one_starts(tmp_path: Path) -> None:
    config = AlertingConfig(
        checks=(CheckSpec("gone", period_s=10.0, grace_s=0.0), CheckSpec("kept", period_s=10.0, grace_s=0.0))
    )
    h = Harness(tmp_path, config, FakeFleets(), now=0.0)
    h.engine.checkin("gone", "fail", 1.0)
    assert events(h.step(2.0)) == [(FIRE, "gone")]
    new = AlertingConfig(
        checks=(CheckSpec("kept", period_s=99.0, grace_s=5.0), CheckSpec("fresh", period_s=7.0, grace_s=0.0))
    )
    notes = h.engine.reconfigure(new, 3.0)
    assert events(notes) == [(RESOLVE, "gone")]
    assert set(h.engine.subjects) == {"kept", "fresh"}
    assert (h.engine.subjects["kept"].period_s, h.engine.subjects["kept"].grace_s) == (99.0, 5.0)
    h.step(4.0)
    assert {row.key for row in h.store.subjects()} == {"kept", "fresh"}  # the removal is persisted
    assert 'check="gone"' not in h.text()


def test_with_no_notifier_an_outage_is_announced_once_and_never_counted_as_notified(tmp_path: Path) -> None:
    h = Harness(
        tmp_path, AlertingConfig(checks=(CheckSpec("job", period_s=10.0, grace_s=0.0),)), FakeFleets(), 0.0
    )
    h.engine.deliverable = False
    h.engine.checkin("job", "fail", 1.0)
    assert events(h.run(2.0, 20.0)) == [(FIRE, "job")]  # for the log line; nobody receives it
    assert not h.engine.subjects["job"].notified and h.engine.subjects["job"].firing
    assert h.engine.keepalives(21.0) == []
    h.engine.checkin("job", "success", 22.0)
    assert events(h.step(23.0)) == [(RESOLVE, "job")]
    h.engine.deliverable = True  # a notifier arrives: the next outage is notified as usual
    h.engine.checkin("job", "fail", 24.0)
    assert events(h.step(25.0)) == [(FIRE, "job")] and h.engine.subjects["job"].notified
