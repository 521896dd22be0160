"""Pure dead-man logic: statuses, misses and notification decisions, with hand-computed times."""

from __future__ import annotations

from sidecar.alerting.checks import (
    DOWN,
    FIRE,
    LATE,
    NEW,
    PAUSED,
    REMIND,
    RESOLVE,
    STARTED,
    UP,
    Assessment,
    Policy,
    Subject,
    assess_checkin,
    assess_fleet_size,
    assess_member,
    assess_traffic,
    deadline_status,
    decide,
    record_checkin,
    window_start,
)
from sidecar.alerting.config import CHECKIN, FLEET_MEMBERS, FLEET_SIZE, TRAFFIC, CheckSpec

SPEC = CheckSpec("job", CHECKIN, period_s=60.0, grace_s=30.0)
DAY = 86400.0
T0 = 20000 * DAY  # a UTC midnight


def test_deadline_status_boundaries() -> None:
    # Pinged at 1000, period 60, grace 30: due at 1060, down after 1090; one more miss every 60 s.
    assert deadline_status(1000, 60, 30, 1060) == (UP, 0)
    assert deadline_status(1000, 60, 30, 1060.5) == (LATE, 0)
    assert deadline_status(1000, 60, 30, 1090) == (LATE, 0)
    assert deadline_status(1000, 60, 30, 1090.5) == (DOWN, 1)
    assert deadline_status(1000, 60, 30, 1150) == (DOWN, 2)  # 1 + (1150 - 1090) // 60
    assert deadline_status(1000, 60, 30, 1269) == (DOWN, 3)  # 1 + 179 // 60
    # period 0 (fleet kinds): late within grace, then exactly one miss.
    assert deadline_status(1000, 0, 30, 1000) == (LATE, 0)
    assert deadline_status(1000, 0, 30, 5000) == (DOWN, 1)


def run(s: Subject, now: float, policy: Policy | None = None, muted: bool = False) -> str | None:
    return decide(s, assess_checkin(SPEC, s, now), now, policy or Policy(), muted)


def test_up_late_down_up_fires_once_and_resolves_once() -> None:
    s = Subject("job", "job", CHECKIN, since=0.0)
    assert assess_checkin(SPEC, s, 10).status == NEW
    record_checkin(s, "success", 1000)
    events = {t: run(s, t) for t in range(1000, 1200, 5)}  # evaluated every 5 s, no more pings
    fired = [t for t, e in events.items() if e is not None]
    assert fired == [1095]  # first evaluation after 1090
    assert events[1095] == FIRE and s.firing and s.status == DOWN and s.since == 1095
    assert s.fired_at == 1095
    record_checkin(s, "success", 1200)
    assert run(s, 1201) == RESOLVE
    assert (s.status, s.firing, s.notified, s.fired_at) == (UP, False, False, None)
    assert [run(s, t) for t in range(1202, 1260)] == [None] * 58


def test_reminders_repeat_while_down() -> None:
    s = Subject("job", "job", CHECKIN)
    record_checkin(s, "success", 0)
    policy = Policy(repeat_interval_s=3600)
    assert run(s, 100, policy) == FIRE
    assert run(s, 3699, policy) is None
    assert run(s, 3700, policy) == REMIND  # 100 + 3600
    assert run(s, 7299, policy) is None
    assert run(s, 7300, policy) == REMIND


def test_after_n_misses() -> None:
    s = Subject("job", "job", CHECKIN)
    record_checkin(s, "success", 1000)
    policy = Policy(after_misses=3)
    assert run(s, 1091, policy) is None and s.status == DOWN and s.misses == 1
    assert run(s, 1149, policy) is None and s.misses == 1  # 1 + (1149 - 1090) // 60
    assert run(s, 1150, policy) is None and s.misses == 2  # 1 + 60 // 60
    assert run(s, 1209, policy) is None and s.misses == 2
    assert run(s, 1210, policy) == FIRE and s.misses == 3
    assert not Subject("x", "x", CHECKIN).firing


def test_fail_counts_as_a_miss_and_success_clears_it() -> None:
    s = Subject("job", "job", CHECKIN)
    record_checkin(s, "success", 1000)
    record_checkin(s, "fail", 1010)
    a = assess_checkin(SPEC, s, 1011)
    assert (a.status, a.misses) == (DOWN, 1)
    assert decide(s, a, 1011, Policy(after_misses=2), False) is None
    record_checkin(s, "fail", 1020)
    assert run(s, 1021, Policy(after_misses=2)) == FIRE and s.misses == 2
    # Anchored at the last fail: due again at 1080, and a missed period adds to the two fails.
    assert assess_checkin(SPEC, s, 1111).misses == 3
    record_checkin(s, "success", 1112)
    assert run(s, 1113) == RESOLVE and s.fails == 0


def test_start_without_finish_goes_down_after_grace() -> None:
    s = Subject("job", "job", CHECKIN)
    record_checkin(s, "start", 500)
    assert assess_checkin(SPEC, s, 529).status == STARTED
    assert assess_checkin(SPEC, s, 531).status == DOWN  # 500 + grace 30
    record_checkin(s, "success", 540)
    assert assess_checkin(SPEC, s, 541).status == UP
    record_checkin(s, "start", 590)
    assert assess_checkin(SPEC, s, 610).status == STARTED
    assert assess_checkin(SPEC, s, 621).status == DOWN  # started at 590, not finished by 620


def test_muted_outage_fires_when_the_mute_ends_and_silent_recovery() -> None:
    s = Subject("job", "job", CHECKIN)
    record_checkin(s, "success", 0)
    assert run(s, 100, muted=True) is None
    assert s.firing and not s.notified
    assert run(s, 200, muted=False) == FIRE
    t = Subject("t", "t", CHECKIN)
    record_checkin(t, "success", 0)
    assert run(t, 100, muted=True) is None
    record_checkin(t, "success", 150)
    assert run(t, 151) is None and not t.firing  # never announced, so nothing to resolve


def test_late_does_not_resolve_a_firing_subject() -> None:
    s = Subject("m", "members", FLEET_MEMBERS, member="m1", firing=True, notified=True, status=DOWN)
    assert decide(s, Assessment(LATE, 0, "gone"), 10, Policy(), False) is None
    assert s.firing and s.status == LATE
    assert decide(s, Assessment(UP, 0, "back"), 11, Policy(), False) == RESOLVE


def test_window_start_plain_and_wrapping() -> None:
    office = (9 * 60, 17 * 60)
    assert window_start(office, T0 + 8.99 * 3600) is None
    assert window_start(office, T0 + 9 * 3600) == T0 + 9 * 3600
    assert window_start(office, T0 + 16.99 * 3600) == T0 + 9 * 3600
    assert window_start(office, T0 + 17 * 3600) is None
    night = (22 * 60, 6 * 60)
    assert window_start(night, T0 + 23 * 3600) == T0 + 22 * 3600
    assert window_start(night, T0 + 5 * 3600) == T0 - DAY + 22 * 3600
    assert window_start(night, T0 + 12 * 3600) is None


def test_traffic_counts_after_first_success_or_inside_hours() -> None:
    spec = CheckSpec("traffic", TRAFFIC, period_s=600.0, grace_s=0.0)
    assert assess_traffic(spec, None, 0, 10_000).status == NEW
    assert assess_traffic(spec, 1000, 0, 1600).status == UP
    assert assess_traffic(spec, 1000, 0, 1601).status == DOWN
    assert assess_traffic(spec, 1000, 1500, 2000).status == UP  # a restart at 1500 re-arms from there
    office = CheckSpec("traffic", TRAFFIC, period_s=600.0, grace_s=0.0, hours=(9 * 60, 17 * 60))
    assert assess_traffic(office, None, 0, T0 + 8 * 3600).status == PAUSED
    assert assess_traffic(office, None, 0, T0 + 9 * 3600 + 600).status == UP
    assert assess_traffic(office, None, 0, T0 + 9 * 3600 + 601).status == DOWN
    last = T0 + 9 * 3600 + 300
    assert assess_traffic(office, last, 0, last + 599).status == UP


def test_fleet_size_and_member() -> None:
    spec = CheckSpec("size", FLEET_SIZE, period_s=0, grace_s=30, fleet="voice", min_members=3)
    s = Subject("size", "size", FLEET_SIZE)
    assert assess_fleet_size(spec, 3, s, 0, 100).status == UP and s.last_seen == 100
    assert assess_fleet_size(spec, 2, s, 0, 130).status == LATE
    a = assess_fleet_size(spec, 2, s, 0, 131)
    assert (a.status, a.misses, a.detail) == (DOWN, 1, "2 of at least 3 members connected")
    assert (
        assess_fleet_size(spec, 0, Subject("x", "x", FLEET_SIZE), 1000, 1020).status == LATE
    )  # armed at 1000
    mspec = CheckSpec("members", FLEET_MEMBERS, period_s=0, grace_s=20, fleet="voice")
    m = Subject("members/a", "members", FLEET_MEMBERS, member="a")
    assert assess_member(mspec, True, m, 0, 50).status == UP and m.last_seen == 50
    assert assess_member(mspec, False, m, 0, 70).status == LATE
    assert assess_member(mspec, False, m, 0, 71).status == DOWN
