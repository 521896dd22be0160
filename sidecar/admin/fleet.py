"""Fleet and dead-man HTTP API (SPEC R-FL-2, R-DM-1..2), mounted on the admin router.

Check-ins (``/sidecar/v1/checkins/...``) are exempt from the admin token; when an ingest token is set
they need it instead (``Authorization: Bearer`` or ``?token=``). Everything else is admin API::

    GET    /sidecar/v1/fleet[?fleet=NAME&members=false]   connect_url and the fleet view
    DELETE /sidecar/v1/fleet/{fleet}/members/{member}     forget a disconnected member
    POST   /sidecar/v1/checkins/{name}[/start|/fail]      ?period=SECONDS&grace=SECONDS for a new check
    GET    /sidecar/v1/alerts                             firing alerts, every check, snoozes
    POST   /sidecar/v1/alerts/{check}/snooze?for=1h       DELETE to unsnooze
    POST   /sidecar/v1/maintenance?for=30m                mute every check; DELETE to end it
    DELETE /sidecar/v1/checks/{name}                      delete a check created by check-ins
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sidecar.admin.ops import error_response
from sidecar.alerting.config import FLEET_MEMBERS, parse_duration
from sidecar.alerting.engine import ALL, CheckinRefused
from sidecar.errors import ConfigError, InvalidRequest, NotFound, Unauthorized

if TYPE_CHECKING:
    from sidecar.fleet.service import FleetAndAlerts

MAX_SNOOZE_S = 30 * 86400.0


def _ingest_ok(request: Request, token: str | None) -> bool:
    if token is None:
        return True
    auth = request.headers.get("authorization", "")
    given = auth[7:].strip() if auth[:7].lower() == "bearer " else request.query_params.get("token", "")
    return hmac.compare_digest(given.encode(), token.encode())


def _duration_param(request: Request, name: str) -> float | None:
    raw = request.query_params.get(name)
    return None if raw is None or raw == "" else parse_duration(name, raw, allow_zero=name == "grace")


def fleet_routes(svc: FleetAndAlerts) -> list[Route]:
    engine = svc.engine

    async def fleet(request: Request) -> Response:
        only = request.query_params.get("fleet")
        members = request.query_params.get("members", "true").lower() not in ("false", "0", "no")
        o = svc.options.fleet
        return JSONResponse(
            {
                "connect_url": svc.connect_url,
                "ping_interval_s": o.ping_interval_s,
                "ping_timeout_s": o.ping_timeout_s,
                "fleets": svc.registry.snapshot(svc.clock(), only=only, members=members),
            }
        )

    async def forget_member(request: Request) -> Response:
        fleet_name, member = request.path_params["fleet"], request.path_params["member"]
        if not svc.registry.forget(fleet_name, member):
            return error_response(NotFound(f"No disconnected member {member!r} in fleet {fleet_name!r}."))
        now = svc.clock()
        notes = []
        for spec in svc.options.alerting.checks:
            if spec.kind == FLEET_MEMBERS and spec.fleet == fleet_name:
                note = engine.forget(f"{spec.name}/{member}", now, "removed by an operator")
                notes.extend([note] if note else [])
        svc.dispatcher.submit(notes)
        return JSONResponse({"fleet": fleet_name, "member": member, "forgotten": True})

    def checkin_route(signal: str) -> Callable[[Request], Awaitable[Response]]:
        async def checkin(request: Request) -> Response:
            if not _ingest_ok(request, svc.options.fleet.ingest_token):
                return error_response(Unauthorized("A valid ingest token is required."))
            name = request.path_params["name"]
            try:
                period, grace = _duration_param(request, "period"), _duration_param(request, "grace")
                s = engine.checkin(name, signal, svc.clock(), period=period, grace=grace)
            except ConfigError as exc:
                return error_response(InvalidRequest(str(exc)))
            except CheckinRefused as exc:
                return error_response(exc)
            doc = {"check": s.check, "signal": signal, "period_s": s.period_s, "grace_s": s.grace_s}
            return JSONResponse({**doc, "status": s.status})

        return checkin

    async def alerts(request: Request) -> Response:
        return JSONResponse(engine.view(svc.clock()))

    async def snooze(request: Request) -> Response:
        scope = request.path_params.get("check", ALL)
        if request.method == "DELETE":
            removed = engine.unsnooze(scope)
            await asyncio.to_thread(svc.store.clear_snooze, scope)
            return JSONResponse({"scope": scope, "unsnoozed": removed})
        try:
            length = _duration_param(request, "for")
        except ConfigError as exc:
            return error_response(InvalidRequest(str(exc)))
        if length is None or length > MAX_SNOOZE_S:
            return error_response(InvalidRequest("for: required, a duration up to 30d (e.g. ?for=2h)"))
        now = svc.clock()
        reason = request.query_params.get("reason", "maintenance" if scope == ALL else "snoozed")[:200]
        engine.snooze(scope, now + length, reason)
        await asyncio.to_thread(svc.store.set_snooze, scope, now + length, reason, now)
        return JSONResponse({"scope": scope, "until": now + length, "reason": reason})

    async def delete_check(request: Request) -> Response:
        name = request.path_params["name"]
        s = engine.subjects.get(name)
        if s is None or not s.dynamic:
            return error_response(NotFound(f"No check {name!r} created by check-ins."))
        note = engine.forget(name, svc.clock(), "check deleted")
        svc.dispatcher.submit([note] if note else [])
        return JSONResponse({"check": name, "deleted": True})

    return [
        Route("/sidecar/v1/fleet", fleet, methods=["GET"]),
        Route("/sidecar/v1/fleet/{fleet}/members/{member}", forget_member, methods=["DELETE"]),
        Route("/sidecar/v1/checkins/{name}", checkin_route("success"), methods=["POST"]),
        Route("/sidecar/v1/checkins/{name}/start", checkin_route("start"), methods=["POST"]),
        Route("/sidecar/v1/checkins/{name}/fail", checkin_route("fail"), methods=["POST"]),
        Route("/sidecar/v1/alerts", alerts, methods=["GET"]),
        Route("/sidecar/v1/alerts/{check}/snooze", snooze, methods=["POST", "DELETE"]),
        Route("/sidecar/v1/maintenance", snooze, methods=["POST", "DELETE"]),
        Route("/sidecar/v1/checks/{name}", delete_check, methods=["DELETE"]),
    ]
