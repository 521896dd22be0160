"""Dead-man alerts API (SPEC R-DM-2): what is firing, snoozes and maintenance, dynamic checks.

Check-ins, which feed these checks, are in :mod:`sidecar.admin.checkins`::

    GET    /sidecar/v1/alerts                             firing alerts, every check, snoozes
    POST   /sidecar/v1/alerts/{check}/snooze?for=1h       DELETE to unsnooze
    POST   /sidecar/v1/maintenance?for=30m                mute every check; DELETE to end it
    DELETE /sidecar/v1/checks/{name}                      delete a check created by check-ins
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict

from sidecar.admin.checkins import duration_param
from sidecar.alerting.checks import Subject
from sidecar.alerting.engine import ALL
from sidecar.alerting.notifiers import Notification
from sidecar.errors import InvalidRequest, NotFound

MAX_SNOOZE_S = 30 * 86400.0


class DeadmanControl(Protocol):
    @property
    def subjects(self) -> Mapping[str, Subject]: ...
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
    def engine(self) -> DeadmanControl: ...
    @property
    def store(self) -> SnoozeStore: ...
    @property
    def dispatcher(self) -> NotificationSink: ...
    @property
    def clock(self) -> Callable[[], float]: ...


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


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
router = APIRouter(tags=["alerts"])


@router.get("/sidecar/v1/alerts", name="alerts", response_model=AlertsView, response_model_exclude_unset=True)
async def alerts(svc: Alerts) -> dict[str, Any]:
    """What is firing, every check's state, and active snoozes."""
    return svc.engine.view(svc.clock())


async def _snooze(svc: AlertsAdmin, scope: str, length_raw: str | None, reason: str | None) -> dict[str, Any]:
    length = duration_param("for", length_raw)
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
