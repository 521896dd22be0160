"""The fleet listener: ``websockets``' own server (it sees pongs; Starlette's WebSocket cannot).

Members connect to ``/sidecar/v1/fleet/connect?fleet=NAME&member=ID`` with any WebSocket client (plus
``?token=`` or ``Authorization: Bearer`` when an ingest token is set). The library's per-connection
keepalive is off: the shared :class:`~sidecar.fleet.heartbeat.Heartbeat` loop pings everyone. Text
messages ``{"type": "status", ...}`` become the member's status; anything else is ignored.

Disconnect reasons: ``ping_timeout`` (recorded by the heartbeat), ``replaced`` (the same member id
connected again; the old connection is closed with 4000), ``shutdown`` (the sidecar stops; 1001),
``client_close`` (the member closed with 1000/1001) and ``abnormal`` (anything else, e.g. a dropped TCP
connection, which reads as 1006).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import socket
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import cast
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from sidecar.fleet.heartbeat import Heartbeat
from sidecar.fleet.registry import FleetRegistry, Member
from sidecar.infra.listen import bind_tcp, bound_port

CONNECT_PATH = "/sidecar/v1/fleet/connect"
PORT_IN_USE = (
    "it is the fleet listener's port, by default the proxy's --port + 1: "
    "set SIDECAR_FLEET_PORT to a free port, or 0 for any"
)
REPLACED_CODE = 4000
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")
log = logging.getLogger("sidecar.fleet")


@dataclass(frozen=True)
class FleetOptions:
    host: str = "127.0.0.1"
    port: int = 8789  # 0 = any free port; serve's default is the proxy port + 1
    ping_interval_s: float = 10.0
    ping_timeout_s: float = 10.0
    ingest_token: str | None = None
    public_host: str | None = None  # host members use in connect_url (default: the bind host)
    max_message_bytes: int = 64 * 1024
    close_timeout_s: float = 2.0  # how long a closing handshake may take before the socket is dropped


class _Quiet(logging.LoggerAdapter):  # type: ignore[type-arg]
    """websockets logs every connection at INFO; a fleet of 10,000 only wants warnings."""

    def isEnabledFor(self, level: int) -> bool:
        return level >= logging.WARNING and self.logger.isEnabledFor(level)


class WsLink:
    """:class:`~sidecar.fleet.registry.Link` over a websockets server connection."""

    __slots__ = ("_closing", "conn")

    def __init__(self, conn: ServerConnection, closing: set[asyncio.Task[None]]) -> None:
        self.conn = conn
        self._closing = closing

    async def ping(self) -> asyncio.Future[float]:
        return cast("asyncio.Future[float]", await self.conn.ping())

    def write_backlog(self) -> int:
        return int(self.conn.transport.get_write_buffer_size())

    def close_soon(self, code: int, reason: str) -> None:
        task = asyncio.ensure_future(self.conn.close(code, reason))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)


class ConnectRefused(Exception):
    def __init__(self, status: HTTPStatus, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


def parse_connect(path: str, headers: Headers, token: str | None) -> tuple[str, str]:
    """``(fleet, member)`` of a connect request; raises ``ConnectRefused`` (404, 401, 400) otherwise."""
    parts = urlsplit(path)
    if parts.path != CONNECT_PATH:
        raise ConnectRefused(
            HTTPStatus.NOT_FOUND, f"Not found; connect to {CONNECT_PATH}?fleet=NAME&member=ID\n"
        )
    query = parse_qs(parts.query)
    if token is not None:
        auth = headers.get("Authorization", "")
        given = auth[7:].strip() if auth[:7].lower() == "bearer " else query.get("token", [""])[0]
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise ConnectRefused(HTTPStatus.UNAUTHORIZED, "A valid ingest token is required.\n")
    fleet, member = query.get("fleet", [""])[0], query.get("member", [""])[0]
    if not (NAME_RE.fullmatch(fleet) and NAME_RE.fullmatch(member)):
        raise ConnectRefused(
            HTTPStatus.BAD_REQUEST, "fleet and member: 1-128 characters of [A-Za-z0-9._:@-]\n"
        )
    return fleet, member


class FleetServer:
    """Owns the listener and the heartbeat task. ``start``/``stop`` once each, on the serving loop."""

    def __init__(self, registry: FleetRegistry, options: FleetOptions) -> None:
        self.registry = registry
        self.options = options
        self.heartbeat = Heartbeat(registry, options.ping_interval_s, options.ping_timeout_s)
        self.port: int | None = None
        self._sock: socket.socket | None = None
        self._server: Server | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._stopping = False

    @property
    def connect_url(self) -> str:
        host = self.options.public_host or self.options.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"ws://{host}:{self.port or self.options.port}{CONNECT_PATH}"

    def bind(self) -> None:
        """Bind the listening socket now (``ListenError`` naming ``SIDECAR_FLEET_PORT`` if taken), so that
        ``serve`` can fail before anything is declared ready. ``start`` binds it otherwise."""
        if self._sock is None:
            self._sock = bind_tcp(self.options.host, self.options.port, "SIDECAR_FLEET_PORT", PORT_IN_USE)
            self.port = bound_port(self._sock)

    def release(self) -> None:
        """Close a socket bound by ``bind`` that was never started (start-up failed elsewhere)."""
        if self._sock is not None and self._server is None:
            self._sock.close()
            self._sock = None

    async def start(self) -> None:
        o = self.options
        self.bind()
        self._server = await serve(
            self._handle,
            sock=self._sock,
            process_request=self._process_request,
            ping_interval=None,  # the shared heartbeat pings instead
            ping_timeout=None,
            close_timeout=o.close_timeout_s,
            compression=None,  # status messages are tiny; deflate costs ~100 KB per connection
            max_size=o.max_message_bytes,
            max_queue=4,
            logger=_Quiet(logging.getLogger("sidecar.fleet.websockets"), {}),
        )
        self._heartbeat_task = asyncio.ensure_future(self.heartbeat.run())
        # The "sidecar ready" line names the connect URL; this one is for debugging the fleet alone.
        log.debug("fleet listener ready", extra={"fields": {"connect_url": self.connect_url}})

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Close every member with 1001 (reason ``shutdown``) and stop the heartbeat."""
        self._stopping = True
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
        if self._server is not None:
            self._server.close(code=1001, reason="sidecar shutting down")
            try:
                await asyncio.wait_for(self._server.wait_closed(), timeout_s)
            except TimeoutError:
                log.warning("fleet listener: connections still open after %.1f s", timeout_s)

    def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        try:
            parse_connect(request.path, request.headers, self.options.ingest_token)
        except ConnectRefused as exc:
            return conn.respond(exc.status, exc.text)
        return None

    async def _handle(self, conn: ServerConnection) -> None:
        assert conn.request is not None
        fleet, member_id = parse_connect(conn.request.path, conn.request.headers, None)
        link = WsLink(conn, self._closing)
        member, replaced = self.registry.connect(fleet, member_id, link, time.time())
        if replaced is not None:
            replaced.close_soon(REPLACED_CODE, "replaced by a newer connection")
        self.heartbeat.add(member)
        try:
            async for message in conn:
                if isinstance(message, str) and member.link is link:
                    self._on_text(member, message)
        except ConnectionClosed:
            pass
        finally:
            code = conn.close_code
            reason = "client_close" if code in (1000, 1001) else "abnormal"
            if self._stopping:
                reason = "shutdown"
            self.registry.disconnect(member, link, reason, time.time(), code)

    def _on_text(self, member: Member, message: str) -> None:
        try:
            doc = orjson.loads(message)
        except orjson.JSONDecodeError:
            return
        if isinstance(doc, dict) and doc.get("type") == "status":
            self.registry.record_status(member, doc, time.time())
