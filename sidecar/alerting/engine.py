"""The dead-man engine: check-ins and fleet presence in, notifications and rows to persist out.

Synchronous and clock-free (``now`` is always passed in); the service's loop calls :meth:`evaluate`
about once a second, saves ``changed``/``removed`` and only then hands ``notifications`` to the
dispatcher — so after a crash a resolved alert is never fired again. Runs on the event loop thread,
except :meth:`observe_success`, which any thread may call.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sidecar.alerting.checks import (
    DOWN,
    FIRE,
    REMIND,
    RESOLVE,
    UP,
    Assessment,
    Policy,
    Subject,
    assess_checkin,
    assess_fleet_size,
    assess_member,
    assess_traffic,
    decide,
    record_checkin,
)
from sidecar.alerting.config import (
    CHECK_NAME_RE,
    CHECKIN,
    FLEET_MEMBERS,
    FLEET_SIZE,
    AlertingConfig,
    CheckSpec,
)
from sidecar.alerting.notifiers import KEEPALIVE, Notification
from sidecar.alerting.view import alerts_view
from sidecar.errors import Conflict, InvalidRequest, SidecarError, TooManyRequests

ALL = "*"  # snooze scope of a maintenance window over every check
SEEN_PERSIST_EVERY_S = 60.0  # how stale a healthy subject's stored last_seen may get


class MemberLike(Protocol):
    @property
    def member_id(self) -> str: ...
    @property
    def connected(self) -> bool: ...
    @property
    def last_seen(self) -> float | None: ...
    @property
    def disconnect_reason(self) -> str | None: ...


class FleetView(Protocol):
    def connected_count(self, fleet: str) -> int: ...
    def members(self, fleet: str) -> Iterable[MemberLike]: ...


class CheckGauges(Protocol):
    """Where the engine reports each check's state (``sidecar_deadman_*`` in the app)."""

    def check_state(self, check: str, up: bool, last_seen: float | None) -> None: ...
    def check_gone(self, check: str) -> None: ...


class CheckinRefused(SidecarError):
    """A check-in the engine will not take, answered as ``kind`` (its status and error type)."""

    def __init__(self, kind: type[SidecarError], message: str) -> None:
        super().__init__(message)
        self.status, self.error_type, self.should_retry = kind.status, kind.error_type, kind.should_retry


@dataclass
class Evaluation:
    changed: list[Subject] = field(default_factory=list)  # copies, safe to save from another thread
    removed: list[str] = field(default_factory=list)
    notifications: list[Notification] = field(default_factory=list)


class DeadmanEngine:
    def __init__(
        self, config: AlertingConfig, fleets: FleetView, gauges: CheckGauges, *, started_at: float
    ) -> None:
        self.config = config
        self.policy = Policy(config.after_misses, config.repeat_interval_s)
        self.fleets = fleets
        self.gauges = gauges
        self.armed_at = started_at  # fleet and traffic checks get a fresh grace from here
        self.subjects: dict[str, Subject] = {}
        self.snoozes: dict[str, tuple[float, str]] = {}
        self.last_success: float | None = None
        # False when no notifier is configured: alerts still fire (API, metrics, logs), but never count as
        # notified, and go out once a notifier is added (SIGHUP).
        self.deliverable = True
        self._details: dict[str, str] = {}
        self._dirty: set[str] = set()
        self._removed: set[str] = set()
        self._saved_seen: dict[str, float | None] = {}
        for spec in config.checks:
            if spec.kind != FLEET_MEMBERS:
                self._new_subject(spec.name, spec, None, started_at)

    def _new_subject(self, key: str, spec: CheckSpec, member: str | None, now: float) -> Subject:
        s = Subject(key, spec.name, spec.kind, member, spec.period_s, spec.grace_s, spec.dynamic, since=now)
        self.subjects[key] = s
        self._dirty.add(key)
        return s

    def restore(self, subjects: Iterable[Subject], snoozes: dict[str, tuple[float, str]]) -> None:
        """Adopt persisted state. Subjects of checks no longer configured (and not dynamic) are dropped."""
        self.snoozes = dict(snoozes)
        for s in subjects:
            spec = self.config.spec(s.check)
            if spec is None and not (s.dynamic and s.kind == CHECKIN):
                self._removed.add(s.key)
                continue
            if spec is not None:
                s.kind, s.period_s, s.grace_s, s.dynamic = spec.kind, spec.period_s, spec.grace_s, False
                if spec.kind == FLEET_MEMBERS and s.member is None:
                    continue
            self.subjects[s.key] = s
            self._saved_seen[s.key] = s.last_seen
            if s.kind == "traffic":
                self.last_success = s.last_seen

    def reconfigure(self, config: AlertingConfig, now: float) -> list[Notification]:
        """Adopt reloaded checks (SIGHUP). New checks start fresh; a check no longer configured (or whose
        kind changed) is forgotten, resolved if it was notified; kept ones take the new timings."""
        for old in self.config.checks:
            if config.spec(old.name) is None:  # its series go (members' subjects are forgotten below)
                self.gauges.check_gone(old.name)
        self.config = config
        self.policy = Policy(config.after_misses, config.repeat_interval_s)
        notes: list[Notification] = []
        for key, s in list(self.subjects.items()):
            spec = config.spec(s.check)
            if spec is None and s.dynamic and s.kind == CHECKIN:
                continue  # created by check-ins: it stays until deleted
            if spec is None or spec.kind != s.kind:
                note = self.forget(key, now, "check removed from the configuration")
                notes.extend([note] if note else [])
                continue
            s.period_s, s.grace_s, s.dynamic = spec.period_s, spec.grace_s, False
            self._dirty.add(key)
        for spec in config.checks:
            if spec.kind != FLEET_MEMBERS and spec.name not in self.subjects:
                self._new_subject(spec.name, spec, None, now)
        return notes

    def spec_of(self, s: Subject) -> CheckSpec:
        spec = self.config.spec(s.check)
        if spec is not None:
            return spec
        return CheckSpec(s.check, CHECKIN, s.period_s, s.grace_s, dynamic=True)

    def checkin(
        self, name: str, signal: str, now: float, period: float | None = None, grace: float | None = None
    ) -> Subject:
        """Record ``success``/``start``/``fail`` for check ``name``, creating it (dynamic) if unknown."""
        spec = self.config.spec(name)
        if spec is not None and spec.kind != CHECKIN:
            raise CheckinRefused(Conflict, f"Check {name!r} is a {spec.kind} check; it takes no check-ins.")
        s = self.subjects.get(name)
        if s is None:
            if not CHECK_NAME_RE.fullmatch(name) or name.startswith("fleet:"):
                raise CheckinRefused(InvalidRequest, "Check names are 1-128 characters of [A-Za-z0-9._:@-].")
            if len({x.check for x in self.subjects.values()}) >= self.config.max_checks:
                raise CheckinRefused(TooManyRequests, f"Too many checks (limit {self.config.max_checks}).")
            p = self.config.default_period_s if period is None else period
            g = self.config.default_grace_s if grace is None else grace
            s = self._new_subject(name, CheckSpec(name, CHECKIN, p, g, dynamic=True), None, now)
        elif s.dynamic:
            s.period_s = s.period_s if period is None else period
            s.grace_s = s.grace_s if grace is None else grace
        record_checkin(s, signal, now)
        self._dirty.add(name)
        return s

    def observe_success(self, at: float) -> None:
        """A successful upstream call finished at ``at`` (feeds the traffic check). Any thread."""
        if self.last_success is None or at > self.last_success:
            self.last_success = at

    def muted(self, check: str, now: float) -> bool:
        return any(self.snoozes.get(scope, (0.0, ""))[0] > now for scope in (check, ALL))

    def snooze(self, scope: str, until: float, reason: str) -> None:
        self.snoozes[scope] = (until, reason)

    def unsnooze(self, scope: str) -> bool:
        return self.snoozes.pop(scope, None) is not None

    def forget(self, key: str, now: float, why: str) -> Notification | None:
        """Stop watching a subject (a member removed, a dynamic check deleted); resolve it if notified."""
        s = self.subjects.pop(key, None)
        if s is None:
            return None
        self._removed.add(key)
        self._dirty.discard(key)
        if s.member is None:
            self.gauges.check_gone(s.check)
        if not s.notified:
            return None
        return self._note(RESOLVE, self.spec_of(s), s, Assessment("removed", 0, why), now, s.fired_at or now)

    def evaluate(self, now: float) -> Evaluation:
        ev = Evaluation()
        for spec in self._specs():
            if spec.kind == FLEET_MEMBERS:
                self._evaluate_members(spec, now, ev)
                continue
            s = self.subjects[spec.name]
            if spec.kind == CHECKIN:
                a = assess_checkin(spec, s, now)
            elif spec.kind == FLEET_SIZE:
                assert spec.fleet is not None
                a = assess_fleet_size(spec, self.fleets.connected_count(spec.fleet), s, self.armed_at, now)
            else:
                s.last_seen = self.last_success
                a = assess_traffic(spec, self.last_success, self.armed_at, now)
            self._apply(spec, s, a, now, ev)
            self.gauges.check_state(spec.name, s.status != DOWN, s.last_seen)
        for scope, (until, _) in list(self.snoozes.items()):
            if until <= now:
                del self.snoozes[scope]
        ev.changed = [
            dataclasses.replace(self.subjects[k]) for k in sorted(self._dirty) if k in self.subjects
        ]
        for s in ev.changed:
            self._saved_seen[s.key] = s.last_seen
        ev.removed = sorted(self._removed)
        self._dirty.clear()
        self._removed.clear()
        return ev

    def _specs(self) -> list[CheckSpec]:
        dynamic = [self.spec_of(s) for s in self.subjects.values() if s.dynamic]
        return [*self.config.checks, *dynamic]

    def _evaluate_members(self, spec: CheckSpec, now: float, ev: Evaluation) -> None:
        assert spec.fleet is not None
        known = {m.member_id: m for m in self.fleets.members(spec.fleet)}
        for m in known.values():
            key = f"{spec.name}/{m.member_id}"
            s = self.subjects.get(key)
            if m.connected and s is not None and s.status == UP and not s.firing:
                s.last_seen = now  # the common case, kept cheap for fleets of thousands
                stale = self._saved_seen.get(key)
                if stale is None or now - stale >= SEEN_PERSIST_EVERY_S:
                    self._dirty.add(key)
            elif m.connected or m.disconnect_reason != "client_close":  # a clean exit is no outage
                s = s or self._new_subject(key, spec, m.member_id, now)
                if m.last_seen is not None and (s.last_seen is None or m.last_seen > s.last_seen):
                    s.last_seen = m.last_seen
                self._apply(spec, s, assess_member(spec, m.connected, s, self.armed_at, now), now, ev)
        down, last = 0, None
        for key, s in list(self.subjects.items()):
            if s.check != spec.name or s.member is None:
                continue
            member = known.get(s.member)
            if member is not None and not member.connected and member.disconnect_reason == "client_close":
                note = self.forget(key, now, "left the fleet cleanly")
                ev.notifications.extend([note] if note else [])
                continue
            if member is None:  # known only from before a restart: gone until it reconnects
                self._apply(spec, s, assess_member(spec, False, s, self.armed_at, now), now, ev)
            down += s.status == DOWN
            last = s.last_seen if last is None or (s.last_seen or 0.0) > last else last
        self.gauges.check_state(spec.name, not down, last)

    def _apply(self, spec: CheckSpec, s: Subject, a: Assessment, now: float, ev: Evaluation) -> None:
        before = (s.status, s.misses, s.firing, s.notified, s.last_reminder)
        fired_at = s.fired_at
        muted = self.muted(s.check, now)
        event = decide(s, a, now, self.policy, muted)
        if not self.deliverable and not muted:
            event = self._undelivered(s, event, before)
        self._details[s.key] = a.detail
        stale = self._saved_seen.get(s.key)
        if (s.status, s.misses, s.firing, s.notified, s.last_reminder) != before or (
            s.last_seen is not None and (stale is None or s.last_seen - stale >= SEEN_PERSIST_EVERY_S)
        ):
            self._dirty.add(s.key)
        if event is not None:
            ev.notifications.append(self._note(event, spec, s, a, now, s.fired_at or fired_at or now))

    @staticmethod
    def _undelivered(
        s: Subject, event: str | None, before: tuple[str, int, bool, bool, float | None]
    ) -> str | None:
        """Nowhere to send: nobody is notified (so a notifier added later gets the ``FIRE``), but the start
        and the end of an outage are still announced once each, for the service's log line."""
        if event in (FIRE, REMIND):
            s.notified, s.last_reminder = before[3], before[4]
            return FIRE if not before[2] else None
        if event is None and before[2] and not s.firing:
            return RESOLVE
        return event

    def _note(
        self, event: str, spec: CheckSpec, s: Subject, a: Assessment, now: float, fired_at: float
    ) -> Notification:
        return Notification(
            event,
            s.key,
            s.check,
            spec.kind,
            a.status,
            a.detail,
            fired_at,
            now,
            s.member,
            spec.fleet,
            spec.labels,
        )

    def keepalives(self, now: float) -> list[Notification]:
        """Firing, notified, unmuted alerts to re-post to Alertmanager so it does not expire them."""
        out = []
        for s in self.subjects.values():
            if s.firing and s.notified and not self.muted(s.check, now):
                spec = self.spec_of(s)
                a = Assessment(s.status, s.misses, self._details.get(s.key, ""))
                out.append(self._note(KEEPALIVE, spec, s, a, now, s.fired_at or now))
        return out

    def view(self, now: float) -> dict[str, Any]:
        """``GET /sidecar/v1/alerts``: what is firing, every check's state, and active snoozes."""
        snoozed = functools.partial(self.muted, now=now)
        return alerts_view(self.subjects.values(), self._specs(), self.snoozes, snoozed, self._details)
