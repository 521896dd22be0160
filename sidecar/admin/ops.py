"""The sidecar's own HTTP surface: ``/metrics``, health, and the ``/sidecar/v1/*`` admin API."""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_TYPE
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, Router

from sidecar.errors import NotFound, SidecarError, Unauthorized, error_response_parts
from sidecar.proxy.asgi import Receive, Scope, Send

if TYPE_CHECKING:
    from sidecar.app import Sidecar

OPEN_PATHS = ("/metrics", "/healthz", "/readyz")


def error_response(exc: SidecarError) -> Response:
    status, headers, body = error_response_parts(exc)
    return Response(body, status_code=status, headers={k.decode(): v.decode() for k, v in headers})


class AdminRoutes:
    """Starlette routes behind a pure-ASGI guard that applies the admin token to ``/sidecar/v1/*``."""

    def __init__(self, sidecar: Sidecar) -> None:
        self.sidecar = sidecar
        self.routes: list[Route] = [
            Route("/metrics", self.metrics, methods=["GET"]),
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/readyz", self.readyz, methods=["GET"]),
        ]
        self._router: Router | None = None

    def add_routes(self, routes: list[Route]) -> None:
        self.routes.extend(routes)
        self._router = None

    def handles(self, path: str) -> bool:
        return path in OPEN_PATHS or path.startswith("/sidecar/v1/") or path == "/sidecar/v1"

    def _authorized(self, scope: Scope, path: str) -> bool:
        token = self.sidecar.settings.admin_token
        if token is None or path.startswith("/sidecar/v1/checkins/") or path in OPEN_PATHS:
            return True
        for name, value in scope["headers"]:
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                return hmac.compare_digest(value[7:].strip(), token.encode())
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if not self._authorized(scope, path):
            await error_response(Unauthorized("A valid admin bearer token is required."))(
                scope, receive, send
            )
            return
        if self._router is None:
            self._router = Router(routes=self.routes, default=self._not_found)
        await self._router(scope, receive, send)

    @staticmethod
    async def _not_found(scope: Scope, receive: Receive, send: Send) -> None:
        await error_response(NotFound(f"Not found: {scope['path'][:200]}"))(scope, receive, send)

    async def metrics(self, request: Request) -> Response:
        if "application/openmetrics-text" in request.headers.get("accept", ""):
            body = generate_openmetrics(self.sidecar.registry)  # type: ignore[no-untyped-call]
            return Response(body, media_type=OPENMETRICS_TYPE)
        return Response(generate_latest(self.sidecar.registry), media_type=CONTENT_TYPE_LATEST)

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        sc = self.sidecar
        body: dict[str, object] = {
            "ready": sc.ready,
            "recorder_pending": sc.recorder.pending,
            "pricing_date": sc.prices.table.version,
        }
        if sc.stores is not None and sc.stores.shipper is not None:
            body["clickhouse"] = sc.stores.shipper.status()
        return JSONResponse(body, status_code=200 if sc.ready else 503)
