"""Dead-man API (SPEC R-DM-1..2): check-ins, what is firing, snoozes and maintenance, dynamic checks.

Check-ins (``/sidecar/v1/checkins/...``) are exempt from the admin token; when an ingest token is set
they need it instead (``Authorization: Bearer`` or ``?token=``). Everything else is admin API::

    POST   /sidecar/v1/checkins/{name}[/start|/fail]      ?period=SECONDS&grace=SECONDS for a new check
    GET    /sidecar/v1/alerts                             firing alerts, every check, snoozes
    POST   /sidecar/v1/alerts/{check}/snooze?for=1h       DELETE to unsnooze
    POST   /sidecar/v1/maintenance?for=30m                mute every check; DELETE to end it
    DELETE /sidecar/v1/checks/{name}                      delete a check created by check-ins
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, Header, Query
from pydantic import BaseModel, ConfigDict

from sidecar.admin.errors import status_error
from sidecar.alerting.checks import Subject
from sidecar.alerting.config import parse_duration
from sidecar.alerting.engine import ALL, CheckinRefused
from sidecar.alerting.notifiers import Notification
from sidecar.errors import ConfigError, InvalidRequest, NotFound, Unauthorized
from sidecar.fleet.service import FleetAlertOptions

CHECKINS_PREFIX = "/sidecar/v1/checkins/"  # exempt from the admin token (they take the ingest token)
MAX_SNOOZE_S = 30 * 86400.0
_REFUSAL_TYPES = {409: "invalid_request_error", 429: "rate_limit_error"}
_REFUSALS: dict[int | str, dict[str, Any]] = {
    409: {"description": "The check exists and is not a check-in check"},
    429: {"description": "Too many checks"},
}


class DeadmanControl(Protocol):
    @property
    def subjects(self) -> Mapping[str, Subject]: ...
    def checkin(
        self, name: str, signal: str, now: float, period: float | None = None, grace: float | None = None
    ) -> Subject: ...
    def view(self, now: float) -> dict[str, Any]: ...
    def snooze(self, scope: str, until: float, reason: str) -> None: ...
    def unsnooze(self, scope: str) -> bool: ...
    def forget(self, key: str, now: float, why: str) -> Notification | None: ...


class SnoozeStore(Protocol):
    def set_snooze(self, scope: str, until: float, reason: str, now: float) -> None: ...
    def clear_snooze(self, scope: str) -> None: ...


class NotificationSink(Protocol):
    def submit(self, notifications: Sequence[Notification]) -> None: ...


class AlertsAdmin(Protocol):
    """What the dead-man routes use (:class:`sidecar.fleet.service.FleetAndAlerts` is one)."""

    @property
    def options(self) -> FleetAlertOptions: ...
    @property
    def engine(self) -> DeadmanControl: ...
    @property
    def store(self) -> SnoozeStore: ...
    @property
    def dispatcher(self) -> NotificationSink: ...
    @property
    def clock(self) -> Callable[[], float]: ...


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Checkin(_Closed):
    check: str
    signal: str  # success | start | fail
    period_s: float
    grace_s: float
    status: str


class SubjectState(_Closed):
    """A watched subject: a check, or one member of a fleet-members check."""

    check: str
    member: str | None
    kind: str
    status: str
    since: float
    last_seen: float | None
    misses: int
    firing: bool
    fired_at: float | None
    notified: bool
    muted: bool
    detail: str


class CheckState(_Closed):
    """A check's spec; with its subject's state, or member counts for a fleet-members check."""

    check: str
    kind: str
    period_s: float
    grace_s: float
    fleet: str | None
    dynamic: bool
    members_watched: int | None = None
    members_down: int | None = None
    member: str | None = None
    status: str | None = None
    since: float | None = None
    last_seen: float | None = None
    misses: int | None = None
    firing: bool | None = None
    fired_at: float | None = None
    notified: bool | None = None
    muted: bool | None = None
    detail: str | None = None


class Snoozed(_Closed):
    scope: str  # a check name, or * for maintenance
    until: float
    reason: str


class AlertsView(_Closed):
    firing: list[SubjectState]
    checks: list[CheckState]
    snoozes: list[Snoozed]


class Unsnoozed(_Closed):
    scope: str
    unsnoozed: bool


class Deleted(_Closed):
    check: str
    deleted: bool


def alerts_admin() -> AlertsAdmin:
    raise LookupError("the admin app was built without an AlertsAdmin")  # bound by build_admin


Alerts = Annotated[AlertsAdmin, Depends(alerts_admin)]
Period = Annotated[str | None, Query(description="A new check's period: seconds or 30s, 10m, 1h, 1d.")]
Grace = Annotated[str | None, Query(description="A new check's grace, same units (0 allowed).")]
IngestQuery = Annotated[
    str | None, Query(description="The ingest token, for clients that cannot send headers.")
]
Authorization = Annotated[str, Header(include_in_schema=False)]
router = APIRouter(tags=["alerts"])


def _duration(name: str, raw: str | None) -> float | None:
    if raw is None or raw == "":
        return None
    try:
        return parse_duration(name, raw, allow_zero=name == "grace")
    except ConfigError as exc:
        raise InvalidRequest(str(exc)) from None


def _checkin(
    svc: AlertsAdmin,
    name: str,
    signal: str,
    auth: str,
    token: str | None,
    period: str | None,
    grace: str | None,
) -> dict[str, Any]:
    expected = svc.options.fleet.ingest_token
    if expected is not None:
        given = auth[7:].strip() if auth[:7].lower() == "bearer " else (token or "")
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise Unauthorized("A valid ingest token is required.")
    p, g = _duration("period", period), _duration("grace", grace)
    try:
        s = svc.engine.checkin(name, signal, svc.clock(), period=p, grace=g)
    except CheckinRefused as exc:
        kind = _REFUSAL_TYPES.get(exc.status, "invalid_request_error")
        raise status_error(exc.status, kind, exc.message) from None
    doc = {"check": s.check, "signal": signal, "period_s": s.period_s, "grace_s": s.grace_s}
    return {**doc, "status": s.status}


@router.post("/sidecar/v1/checkins/{name}", name="checkin", response_model=Checkin, responses=_REFUSALS)
async def checkin(
    svc: Alerts,
    name: str,
    period: Period = None,
    grace: Grace = None,
    token: IngestQuery = None,
    authorization: Authorization = "",
) -> dict[str, Any]:
    """A success ping; an unknown name creates a check (``period``, ``grace`` or the defaults)."""
    return _checkin(svc, name, "success", authorization, token, period, grace)


@router.post(
    "/sidecar/v1/checkins/{name}/start", name="checkin_start", response_model=Checkin, responses=_REFUSALS
)
async def checkin_start(
    svc: Alerts,
    name: str,
    period: Period = None,
    grace: Grace = None,
    token: IngestQuery = None,
    authorization: Authorization = "",
) -> dict[str, Any]:
    """The job started (its run time is measured to the next success or fail)."""
    return _checkin(svc, name, "start", authorization, token, period, grace)


@router.post(
    "/sidecar/v1/checkins/{name}/fail", name="checkin_fail", response_model=Checkin, responses=_REFUSALS
)
async def checkin_fail(
    svc: Alerts,
    name: str,
    period: Period = None,
    grace: Grace = None,
    token: IngestQuery = None,
    authorization: Authorization = "",
) -> dict[str, Any]:
    """The job failed: the check goes down now."""
    return _checkin(svc, name, "fail", authorization, token, period, grace)


@router.get("/sidecar/v1/alerts", name="alerts", response_model=AlertsView, response_model_exclude_unset=True)
async def alerts(svc: Alerts) -> dict[str, Any]:
    """What is firing, every check's state, and active snoozes."""
    return svc.engine.view(svc.clock())


async def _snooze(svc: AlertsAdmin, scope: str, length_raw: str | None, reason: str | None) -> dict[str, Any]:
    length = _duration("for", length_raw)
    if length is None or length > MAX_SNOOZE_S:
        raise InvalidRequest("for: required, a duration up to 30d (e.g. ?for=2h)")
    now = svc.clock()
    why = (reason if reason is not None else "maintenance" if scope == ALL else "snoozed")[:200]
    svc.engine.snooze(scope, now + length, why)
    await asyncio.to_thread(svc.store.set_snooze, scope, now + length, why, now)
    return {"scope": scope, "until": now + length, "reason": why}


async def _unsnooze(svc: AlertsAdmin, scope: str) -> dict[str, Any]:
    removed = svc.engine.unsnooze(scope)
    await asyncio.to_thread(svc.store.clear_snooze, scope)
    return {"scope": scope, "unsnoozed": removed}


For = Annotated[str | None, Query(alias="for", description="How long: 30s, 10m, 2h, 1d (at most 30d).")]
Reason = Annotated[str | None, Query(description="Shown with the snooze (200 characters at most).")]


@router.post("/sidecar/v1/alerts/{check}/snooze", name="snooze_check", response_model=Snoozed)
async def snooze_check(svc: Alerts, check: str, length: For = None, reason: Reason = None) -> dict[str, Any]:
    """Mute one check's notifications for a while."""
    return await _snooze(svc, check, length, reason)


@router.delete("/sidecar/v1/alerts/{check}/snooze", name="unsnooze_check", response_model=Unsnoozed)
async def unsnooze_check(svc: Alerts, check: str) -> dict[str, Any]:
    return await _unsnooze(svc, check)


@router.post("/sidecar/v1/maintenance", name="start_maintenance", response_model=Snoozed)
async def start_maintenance(svc: Alerts, length: For = None, reason: Reason = None) -> dict[str, Any]:
    """Mute every check for a while (scope ``*``)."""
    return await _snooze(svc, ALL, length, reason)


@router.delete("/sidecar/v1/maintenance", name="end_maintenance", response_model=Unsnoozed)
async def end_maintenance(svc: Alerts) -> dict[str, Any]:
    return await _unsnooze(svc, ALL)


@router.delete(
    "/sidecar/v1/checks/{name}",
    name="delete_check",
    response_model=Deleted,
    responses={404: {"description": "No check of that name was created by check-ins"}},
)
async def delete_check(svc: Alerts, name: str) -> dict[str, Any]:
    """Delete a check created by check-ins (configured checks stay); a firing alert resolves."""
    s = svc.engine.subjects.get(name)
    if s is None or not s.dynamic:
        raise NotFound(f"No check {name!r} created by check-ins.")
    note = svc.engine.forget(name, svc.clock(), "check deleted")
    svc.dispatcher.submit([note] if note else [])
    return {"check": name, "deleted": True}
