"""Fleet API (SPEC R-FL-2): the fleet view and forgetting a member that is gone for good.

::

    GET    /sidecar/v1/fleet[?fleet=NAME&members=false]   connect_url and the fleet view
    DELETE /sidecar/v1/fleet/{fleet}/members/{member}     forget a disconnected member

Members connect over WebSocket to the fleet listener (``connect_url``), not to this API.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict

from sidecar.admin.alerts import NotificationSink
from sidecar.alerting.config import FLEET_MEMBERS
from sidecar.alerting.notifiers import Notification
from sidecar.errors import NotFound
from sidecar.fleet.service import FleetAlertOptions


class MemberRegistry(Protocol):
    def snapshot(self, now: float, only: str | None = None, members: bool = True) -> list[dict[str, Any]]: ...
    def forget(self, fleet_name: str, member_id: str) -> bool: ...


class AlertForgetter(Protocol):
    def forget(self, key: str, now: float, why: str) -> Notification | None: ...


class FleetAdmin(Protocol):
    """What the fleet routes use (:class:`sidecar.fleet.service.FleetAndAlerts` is one)."""

    @property
    def connect_url(self) -> str: ...
    @property
    def options(self) -> FleetAlertOptions: ...
    @property
    def registry(self) -> MemberRegistry: ...
    @property
    def engine(self) -> AlertForgetter: ...
    @property
    def dispatcher(self) -> NotificationSink: ...
    @property
    def clock(self) -> Callable[[], float]: ...


def fleet_admin() -> FleetAdmin:
    raise LookupError("the admin app was built without a FleetAdmin")  # bound by build_admin


Fleets = Annotated[FleetAdmin, Depends(fleet_admin)]


class Member(BaseModel):
    model_config = ConfigDict(extra="forbid")
    member: str
    connected: bool
    connected_at: float | None
    connection_age_s: float | None
    last_pong: float | None
    rtt_p50_s: float | None
    rtt_p99_s: float | None
    pings: int
    missed_pongs: int
    reconnects: int
    disconnected_at: float | None
    disconnect_reason: str | None
    close_code: int | None
    status: dict[str, Any] | None  # the member's last JSON status message
    status_at: float | None


class FleetSummary(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fleet: str
    connected: int
    known: int
    last_seen: float | None
    members: list[Member] | None = None  # left out with ?members=false


class FleetView(BaseModel):
    model_config = ConfigDict(extra="forbid")
    connect_url: str
    ping_interval_s: float
    ping_timeout_s: float
    fleets: list[FleetSummary]


class Forgotten(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fleet: str
    member: str
    forgotten: bool


router = APIRouter(tags=["fleet"])


@router.get(
    "/sidecar/v1/fleet", name="fleet_view", response_model=FleetView, response_model_exclude_unset=True
)
async def fleet_view(
    svc: Fleets,
    fleet: Annotated[str | None, Query(description="Only this fleet.")] = None,
    members: Annotated[str, Query(description="`false`, `0` or `no` leave the member lists out.")] = "true",
) -> dict[str, Any]:
    """The WebSocket ``connect_url`` for members, heartbeat settings, and every fleet with its members."""
    o = svc.options.fleet
    return {
        "connect_url": svc.connect_url,
        "ping_interval_s": o.ping_interval_s,
        "ping_timeout_s": o.ping_timeout_s,
        "fleets": svc.registry.snapshot(
            svc.clock(), only=fleet, members=members.lower() not in ("false", "0", "no")
        ),
    }


@router.delete(
    "/sidecar/v1/fleet/{fleet}/members/{member}",
    name="forget_member",
    response_model=Forgotten,
    responses={404: {"description": "No such disconnected member"}},
)
async def forget_member(svc: Fleets, fleet: str, member: str) -> dict[str, Any]:
    """Forget a disconnected member; its member alerts resolve (``removed by an operator``)."""
    if not svc.registry.forget(fleet, member):
        raise NotFound(f"No disconnected member {member!r} in fleet {fleet!r}.")
    now = svc.clock()
    notes = []
    for spec in svc.options.alerting.checks:
        if spec.kind == FLEET_MEMBERS and spec.fleet == fleet:
            note = svc.engine.forget(f"{spec.name}/{member}", now, "removed by an operator")
            notes.extend([note] if note else [])
    svc.dispatcher.submit(notes)
    return {"fleet": fleet, "member": member, "forgotten": True}
