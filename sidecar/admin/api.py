"""The admin HTTP API as one ASGI app: FastAPI routers behind a pure-ASGI admin-token guard.

Each router module declares the one service it uses as a dependency (``reads.sessions_reader``,
``budgets.budget_admin``, ...): a stub that raises until :func:`bind` points it at the real service
through ``dependency_overrides``, once, at wiring time. Tests bind in-memory services the same way.

The proxy path (``/v1/*``) never comes here: ``server.router`` sends it to the proxy first, as raw ASGI.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from prometheus_client import CollectorRegistry

from sidecar.admin import (
    alerts,
    budgets,
    checkins,
    docs,
    fleet,
    ops,
    reads,
    response_cache,
    sessions,
    summary,
)
from sidecar.admin.errors import error_response, install_error_handlers
from sidecar.admin.json import CleanJSONResponse
from sidecar.errors import Unauthorized
from sidecar.proxy.asgi import Receive, Scope, Send

API_VERSION = "1"  # of the /sidecar/v1 API, not of the package: a release alone changes nothing here
DESCRIPTION = """The sidecar's own API: sessions, budgets, fleets and dead-man alerts, the response cache,
plus metrics and health. The proxied Anthropic API (`/v1/*`) is not described here.

With `SIDECAR_ADMIN_TOKEN` set, every `/sidecar/v1/*` route (these docs included) needs
`Authorization: Bearer <token>`, except check-ins, which take the optional `SIDECAR_INGEST_TOKEN`.
`/metrics`, `/healthz` and `/readyz` stay open. Errors use Anthropic's shape:
`{"type": "error", "error": {"type": ..., "message": ...}, "request_id": ...}`."""


ROUTERS = (
    ops.router,
    sessions.router,
    summary.router,
    budgets.router,
    fleet.router,
    checkins.router,
    alerts.router,
    response_cache.router,
)


@dataclass(frozen=True)
class AdminServices:
    """Everything the admin routes use; each router is handed only its own piece."""

    registry: CollectorRegistry
    health: ops.HealthProbe
    sessions: reads.SessionsReader
    budgets: budgets.BudgetAdmin
    fleet: fleet.FleetAdmin
    checkins: checkins.CheckinAdmin
    alerts: alerts.AlertsAdmin
    response_cache: response_cache.ResponseCacheAdmin = field(default_factory=response_cache.NoResponseCache)


class AdminAPI(FastAPI):
    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            self.openapi_schema = docs.finish_document(super().openapi())
        return self.openapi_schema


def _operation_id(route: APIRoute) -> str:
    return route.name


def admin_api() -> AdminAPI:
    """The routes and their documentation, not yet bound to services (enough for the OpenAPI document)."""
    api = AdminAPI(
        title="claude-sidecar admin API",
        version=API_VERSION,
        description=DESCRIPTION,
        openapi_url=None,  # served by docs.router, so that it is documented and guarded like the rest
        docs_url=None,
        redoc_url=None,
        generate_unique_id_function=_operation_id,
        default_response_class=CleanJSONResponse,
    )
    install_error_handlers(api)
    for router in ROUTERS:
        api.include_router(router)
    docs.mount_docs(api)
    return api


def bind(api: FastAPI, services: AdminServices) -> None:
    api.dependency_overrides.update(
        {
            ops.metrics_registry: lambda: services.registry,
            ops.health_probe: lambda: services.health,
            reads.sessions_reader: lambda: services.sessions,
            budgets.budget_admin: lambda: services.budgets,
            fleet.fleet_admin: lambda: services.fleet,
            checkins.checkin_admin: lambda: services.checkins,
            alerts.alerts_admin: lambda: services.alerts,
            response_cache.response_cache_admin: lambda: services.response_cache,
        }
    )


class AdminApp:
    """Pure-ASGI guard in front of the FastAPI app: the admin token (SPEC R-PX-9) is checked on the raw
    scope before any routing, so an unknown path or a docs asset is refused like any other."""

    def __init__(self, api: FastAPI, admin_token: str | None) -> None:
        self.api = api
        self._token = None if admin_token is None else admin_token.encode()
        api.middleware_stack = api.build_middleware_stack()  # now, not on the first request

    @staticmethod
    def handles(path: str) -> bool:
        return path in ops.OPEN_PATHS or path.startswith("/sidecar/v1/") or path == "/sidecar/v1"

    def _authorized(self, scope: Scope, path: str) -> bool:
        if self._token is None or path.startswith(checkins.CHECKINS_PREFIX) or path in ops.OPEN_PATHS:
            return True
        for name, value in scope["headers"]:
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                return hmac.compare_digest(value[7:].strip(), self._token)
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._authorized(scope, scope["path"]):
            response = error_response(Unauthorized("A valid admin bearer token is required."))
            await response(scope, receive, send)
            return
        await self.api(scope, receive, send)


def build_admin(services: AdminServices, admin_token: str | None) -> AdminApp:
    """The admin app for ``services``, built once at wiring time."""
    api = admin_api()
    bind(api, services)
    return AdminApp(api, admin_token)
