"""Check-in API (SPEC R-DM-1): jobs ping their dead-man checks over HTTP.

Check-ins are exempt from the admin token; when an ingest token is set they need it instead
(``Authorization: Bearer`` or ``?token=``)::

    POST   /sidecar/v1/checkins/{name}[/start|/fail]      ?period=SECONDS&grace=SECONDS for a new check

A name not in the configuration creates a check (``dynamic``), deleted with ``DELETE /sidecar/v1/checks``.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, Header, Query
from pydantic import BaseModel, ConfigDict

from sidecar.admin.errors import status_error
from sidecar.alerting.checks import Subject
from sidecar.alerting.config import parse_duration
from sidecar.alerting.engine import CheckinRefused
from sidecar.errors import ConfigError, InvalidRequest, Unauthorized
from sidecar.fleet.service import FleetAlertOptions

CHECKINS_PREFIX = "/sidecar/v1/checkins/"  # exempt from the admin token (they take the ingest token)
_REFUSAL_TYPES = {409: "invalid_request_error", 429: "rate_limit_error"}
_REFUSALS: dict[int | str, dict[str, Any]] = {
    409: {"description": "The check exists and is not a check-in check"},
    429: {"description": "Too many checks"},
}


class CheckinRecorder(Protocol):
    def checkin(
        self, name: str, signal: str, now: float, period: float | None = None, grace: float | None = None
    ) -> Subject: ...


class CheckinAdmin(Protocol):
    """What the check-in routes use (:class:`sidecar.fleet.service.FleetAndAlerts` is one)."""

    @property
    def options(self) -> FleetAlertOptions: ...  # for the ingest token
    @property
    def engine(self) -> CheckinRecorder: ...
    @property
    def clock(self) -> Callable[[], float]: ...


def checkin_admin() -> CheckinAdmin:
    raise LookupError("the admin app was built without a CheckinAdmin")  # bound by build_admin


class Checkin(BaseModel):
    model_config = ConfigDict(extra="forbid")
    check: str
    signal: str  # success | start | fail
    period_s: float
    grace_s: float
    status: str


Checkins = Annotated[CheckinAdmin, Depends(checkin_admin)]
Period = Annotated[str | None, Query(description="A new check's period: seconds or 30s, 10m, 1h, 1d.")]
Grace = Annotated[str | None, Query(description="A new check's grace, same units (0 allowed).")]
IngestQuery = Annotated[
    str | None, Query(description="The ingest token, for clients that cannot send headers.")
]
Authorization = Annotated[str, Header(include_in_schema=False)]
router = APIRouter(tags=["check-ins"])


def duration_param(name: str, raw: str | None) -> float | None:
    """``?name=`` as seconds (``None`` when absent or empty); a bad one is a 400 naming it."""
    if raw is None or raw == "":
        return None
    try:
        return parse_duration(name, raw, allow_zero=name == "grace")
    except ConfigError as exc:
        raise InvalidRequest(str(exc)) from None


@dataclass(frozen=True)
class CheckinCall:
    """What every check-in route takes: the check's name, a new check's period and grace (raw), and
    the ingest token from the header or the query."""

    name: str
    period: str | None
    grace: str | None
    token: str | None
    authorization: str


def checkin_call(
    name: str,
    period: Period = None,
    grace: Grace = None,
    token: IngestQuery = None,
    authorization: Authorization = "",
) -> CheckinCall:
    return CheckinCall(name, period, grace, token, authorization)


Call = Annotated[CheckinCall, Depends(checkin_call)]


def _checkin(svc: CheckinAdmin, call: CheckinCall, signal: str) -> dict[str, Any]:
    expected = svc.options.fleet.ingest_token
    if expected is not None:
        auth = call.authorization
        given = auth[7:].strip() if auth[:7].lower() == "bearer " else (call.token or "")
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise Unauthorized("A valid ingest token is required.")
    p, g = duration_param("period", call.period), duration_param("grace", call.grace)
    try:
        s = svc.engine.checkin(call.name, signal, svc.clock(), period=p, grace=g)
    except CheckinRefused as exc:
        kind = _REFUSAL_TYPES.get(exc.status, "invalid_request_error")
        raise status_error(exc.status, kind, exc.message) from None
    doc = {"check": s.check, "signal": signal, "period_s": s.period_s, "grace_s": s.grace_s}
    return {**doc, "status": s.status}


@router.post("/sidecar/v1/checkins/{name}", name="checkin", response_model=Checkin, responses=_REFUSALS)
async def checkin(svc: Checkins, call: Call) -> dict[str, Any]:
    """A success ping; an unknown name creates a check (``period``, ``grace`` or the defaults)."""
    return _checkin(svc, call, "success")


@router.post(
    "/sidecar/v1/checkins/{name}/start", name="checkin_start", response_model=Checkin, responses=_REFUSALS
)
async def checkin_start(svc: Checkins, call: Call) -> dict[str, Any]:
    """The job started (its run time is measured to the next success or fail)."""
    return _checkin(svc, call, "start")


@router.post(
    "/sidecar/v1/checkins/{name}/fail", name="checkin_fail", response_model=Checkin, responses=_REFUSALS
)
async def checkin_fail(svc: Checkins, call: Call) -> dict[str, Any]:
    """The job failed: the check goes down now."""
    return _checkin(svc, call, "fail")
