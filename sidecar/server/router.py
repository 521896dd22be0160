"""Pure-ASGI dispatch and lifespan for the sidecar's listeners."""

from __future__ import annotations

import logging

from sidecar.admin.api import AdminApp
from sidecar.app import Sidecar
from sidecar.console.routes import Console
from sidecar.errors import InvalidRequest, NotFound, error_response_parts
from sidecar.proxy.asgi import ASGIApp, Receive, Scope, Send, send_error

log = logging.getLogger("sidecar")


class Router:
    """Pure-ASGI dispatch: ``/v1/*`` to the proxy, ``/bedrock/`` and ``/vertex/`` to the cloud routes, the
    sidecar's own paths to admin, else 404."""

    def __init__(
        self, sidecar: Sidecar, *, admin: AdminApp | None, lifespan: bool, proxy: bool = True
    ) -> None:
        self.sidecar = sidecar
        self.admin = admin
        self.lifespan = lifespan
        self.proxy = sidecar.proxy if proxy else None
        self.cloud = tuple(sidecar.cloud.items()) if proxy else ()  # (prefix, handler): /bedrock/, /vertex/
        self.console = Console() if admin is not None else None  # the console lives beside the admin API

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            path: str = scope["path"]
            if self.proxy is not None and path.startswith("/v1/"):
                await self.proxy(scope, receive, send)
                return
            for prefix, handler in self.cloud:  # after /v1/: the first-party path pays nothing for these
                if path.startswith(prefix):
                    await handler(scope, receive, send)
                    return
            if self.admin is not None and self.admin.handles(path):
                await self.admin(scope, receive, send)
                return
            if self.console is not None and self.console.handles(scope):
                await self.console(scope, receive, send)
                return
            await send_error(send, NotFound(f"Not found: {scope['method']} {path[:200]}"))
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            await self._refuse_websocket(scope, send)

    async def _refuse_websocket(self, scope: Scope, send: Send) -> None:
        """Fleet WebSockets have their own listener: answer 400 in Anthropic's shape naming it (the ASGI
        denial-response extension), or close before accept (uvicorn then answers 403) without it."""
        if "websocket.http.response" not in scope.get("extensions", {}):
            await send({"type": "websocket.close", "code": 1008})
            return
        fleet = self.sidecar.fleet
        where = fleet.connect_url if fleet is not None else "the fleet listener (SIDECAR_FLEET_PORT)"
        status, headers, body = error_response_parts(
            InvalidRequest(f"WebSockets are not served on this port: fleet members connect to {where}")
        )
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if not self.lifespan:
                    await send({"type": "lifespan.startup.complete"})
                    continue
                try:
                    await self.sidecar.startup()
                except Exception as exc:
                    log.exception("start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.lifespan:
                    await self.sidecar.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return


def proxy_app(sidecar: Sidecar) -> ASGIApp:
    """The ASGI app for the proxy listener (admin routes included unless they have their own port)."""
    admin = None if sidecar.settings.admin_port is not None else sidecar.admin
    return Router(sidecar, admin=admin, lifespan=True)


def admin_app(sidecar: Sidecar) -> ASGIApp:
    """The ASGI app for the separate admin listener (``SIDECAR_ADMIN_PORT``)."""
    return Router(sidecar, admin=sidecar.admin, lifespan=False, proxy=False)
