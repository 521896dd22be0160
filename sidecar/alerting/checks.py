"""Pure dead-man logic: what state a check is in at ``now``, and which notification that calls for.

No I/O and no clock: every function takes ``now`` (unix seconds). A *subject* is what one alert is
about — a check, or one member under a ``fleet_members`` check (key ``check/member``).

Statuses (healthchecks-style)::

    new      never pinged (a traffic check: no successful call yet) — never alerts
    up       pinged within ``period``
    late     past ``period`` but within ``grace`` (a fleet member: gone, but within grace)
    started  ``/start`` received, the run is within ``grace``
    paused   a traffic check outside its hours
    down     past ``period + grace``; ``/fail``; or started and not finished within ``grace``

Misses count consecutive failures: each ``/fail`` is one, and each full ``period`` past the deadline
adds one. An alert fires when a subject is ``down`` with at least ``after_misses`` misses, and
resolves only when it is ``up``, ``started``, ``new`` or ``paused`` again — never merely ``late``, so a
restart (which gives fleet and traffic checks a fresh grace) cannot resolve what is still broken.
"""

from __future__ import annotations

from dataclasses import dataclass

from sidecar.alerting.config import CheckSpec

NEW, UP, LATE, STARTED, PAUSED, DOWN = "new", "up", "late", "started", "paused", "down"
RECOVERED = frozenset({NEW, UP, STARTED, PAUSED})
FIRE, REMIND, RESOLVE = "firing", "reminder", "resolved"
DAY_S = 86400.0


@dataclass(slots=True)
class Subject:
    """A subject's observations, status and alert state (the persisted row)."""

    key: str
    check: str
    kind: str
    member: str | None = None
    period_s: float = 60.0  # copies of the spec, so checks created by a check-in survive a restart
    grace_s: float = 30.0
    dynamic: bool = False
    last_seen: float | None = None  # last success / pong / satisfied size / successful call
    last_start: float | None = None
    last_fail: float | None = None
    fails: int = 0  # consecutive /fail since the last success
    status: str = NEW
    since: float = 0.0
    misses: int = 0
    firing: bool = False
    notified: bool = False  # a firing notification went out (False while muted)
    fired_at: float | None = None
    last_reminder: float | None = None


@dataclass(frozen=True, slots=True)
class Assessment:
    status: str
    misses: int
    detail: str  # one line for humans: why this status


@dataclass(frozen=True, slots=True)
class Policy:
    after_misses: int = 1
    repeat_interval_s: float = 4 * 3600.0


def deadline_status(anchor: float, period: float, grace: float, now: float) -> tuple[str, int]:
    """Status and misses of something due every ``period`` (0: once) with ``grace``, last at ``anchor``."""
    if now <= anchor + period and period > 0:
        return UP, 0
    if now <= anchor + period + grace:
        return LATE, 0
    overdue = now - (anchor + period + grace)
    return DOWN, (1 + int(overdue // period)) if period > 0 else 1


def assess_checkin(spec: CheckSpec, s: Subject, now: float) -> Assessment:
    anchor = max(t for t in (s.last_seen, s.last_fail, -1.0) if t is not None)
    started = s.last_start is not None and s.last_start > anchor
    if started and s.last_start is not None and now > s.last_start + spec.grace_s:
        return Assessment(DOWN, s.fails + 1, f"started {now - s.last_start:.0f}s ago and not finished")
    if anchor < 0:
        return Assessment(STARTED if started else NEW, 0, "running" if started else "never pinged")
    status, misses = deadline_status(anchor, spec.period_s, spec.grace_s, now)
    misses += s.fails
    if s.fails:
        return Assessment(DOWN, misses, f"{s.fails} failure(s) reported")
    if started and status != DOWN:
        return Assessment(STARTED, 0, "running")
    return Assessment(status, misses, f"last ping {now - anchor:.0f}s ago")


def window_start(hours: tuple[int, int], now: float) -> float | None:
    """Unix time the active window containing ``now`` began (UTC), or ``None`` outside the window."""
    start, end = hours
    day = now - now % DAY_S
    minute = (now - day) / 60.0
    if start < end:
        return day + start * 60.0 if start <= minute < end else None
    if minute >= start:
        return day + start * 60.0
    return day - DAY_S + start * 60.0 if minute < end else None


def assess_traffic(spec: CheckSpec, last_success: float | None, armed_at: float, now: float) -> Assessment:
    """No successful upstream call for ``period_s``. Without hours it counts once a call has succeeded;
    with hours, only inside them (from the window's start). ``armed_at``: no anchor is earlier."""
    if spec.hours is not None:
        begun = window_start(spec.hours, now)
        if begun is None:
            return Assessment(PAUSED, 0, "outside active hours")
        anchor = max(begun, last_success or begun, armed_at)
    elif last_success is None:
        return Assessment(NEW, 0, "no successful call yet")
    else:
        anchor = max(last_success, armed_at)
    status, misses = deadline_status(anchor, spec.period_s, spec.grace_s, now)
    return Assessment(status, misses, f"no successful upstream call for {now - anchor:.0f}s")


def assess_fleet_size(spec: CheckSpec, connected: int, s: Subject, armed_at: float, now: float) -> Assessment:
    """Fewer than ``min_members`` connected for longer than ``grace``; updates ``s.last_seen`` while met."""
    if connected >= spec.min_members:
        s.last_seen = now
        return Assessment(UP, 0, f"{connected} members connected")
    anchor = max(s.last_seen or armed_at, armed_at)
    status, misses = deadline_status(anchor, 0.0, spec.grace_s, now)
    return Assessment(status, misses, f"{connected} of at least {spec.min_members} members connected")


def assess_member(spec: CheckSpec, connected: bool, s: Subject, armed_at: float, now: float) -> Assessment:
    """A member gone (not cleanly) for longer than ``grace``; ``s.last_seen`` is its last sign of life."""
    if connected:
        s.last_seen = now
        return Assessment(UP, 0, "connected")
    anchor = max(s.last_seen or armed_at, armed_at)
    status, misses = deadline_status(anchor, 0.0, spec.grace_s, now)
    return Assessment(status, misses, f"disconnected for {now - anchor:.0f}s")


def decide(s: Subject, a: Assessment, now: float, policy: Policy, muted: bool) -> str | None:
    """Apply ``a`` to ``s`` (status, since, alert state) and return the notification it calls for, if any.

    One ``FIRE`` per outage (deduplicated while firing), ``REMIND`` every ``repeat_interval_s`` while
    down, one ``RESOLVE`` on recovery if a ``FIRE`` went out. While ``muted`` (snooze, maintenance) an
    outage still counts as firing but nothing is sent; if it is still down when the mute ends, ``FIRE``
    goes out then.
    """
    if a.status != s.status:
        s.status, s.since = a.status, now
    s.misses = a.misses
    if a.status == DOWN and a.misses >= policy.after_misses:
        if not s.firing:
            s.firing, s.fired_at = True, now
        if muted:
            return None
        if not s.notified:
            s.notified, s.last_reminder = True, now
            return FIRE
        if s.last_reminder is None or now - s.last_reminder >= policy.repeat_interval_s:
            s.last_reminder = now
            return REMIND
        return None
    if s.firing and a.status in RECOVERED:
        was_notified = s.notified
        s.firing = s.notified = False
        s.fired_at = s.last_reminder = None
        return RESOLVE if was_notified else None
    return None


def record_checkin(s: Subject, signal: str, now: float) -> None:
    """A check-in: ``success`` (plain ping), ``start`` or ``fail``."""
    if signal == "start":
        s.last_start = now
    elif signal == "fail":
        s.last_fail = now
        s.fails += 1
    else:
        s.last_seen = now
        s.fails = 0
