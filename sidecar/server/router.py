"""Pure-ASGI dispatch and lifespan for the sidecar's listeners."""

from __future__ import annotations

import logging

from sidecar.admin.api import AdminApp
from sidecar.app import Sidecar
from sidecar.errors import NotFound
from sidecar.proxy.asgi import ASGIApp, Receive, Scope, Send, send_error

log = logging.getLogger("sidecar")


class Router:
    """Pure-ASGI dispatch: ``/v1/*`` to the proxy, the sidecar's own paths to admin, else 404."""

    def __init__(
        self, sidecar: Sidecar, *, admin: AdminApp | None, lifespan: bool, proxy: bool = True
    ) -> None:
        self.sidecar = sidecar
        self.admin = admin
        self.lifespan = lifespan
        self.proxy = sidecar.proxy if proxy else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            path: str = scope["path"]
            if self.proxy is not None and path.startswith("/v1/"):
                await self.proxy(scope, receive, send)
                return
            if self.admin is not None and self.admin.handles(path):
                await self.admin(scope, receive, send)
                return
            await send_error(send, NotFound(f"Not found: {scope['method']} {path[:200]}"))
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            # Fleet WebSockets have their own listener; closing before accept makes uvicorn answer 403
            # (returning without a word would be a 500).
            await send({"type": "websocket.close", "code": 1008})

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
