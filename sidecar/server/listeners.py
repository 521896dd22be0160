"""Runs the sidecar's listeners under uvicorn, with a graceful drain that exits 0 on SIGTERM or Ctrl+C.

Every socket (proxy, admin, fleet) is bound before start-up, so a taken port is one line naming its
setting, and the "sidecar ready" line, logged once every listener accepts, names each address.

uvicorn re-raises a captured SIGTERM after its own graceful shutdown (so the process would end with
-15); the sidecar owns signal handling instead and returns normally once drained.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from typing import Literal

import uvicorn

from sidecar.app import Sidecar
from sidecar.infra.listen import bind_tcp, bound_port, http_url
from sidecar.server.protocol import SidecarHttpProtocol
from sidecar.server.router import admin_app, proxy_app

log = logging.getLogger("sidecar.server")
# Interpreter settings for a serving process (see tune_runtime).
GC_GEN0_THRESHOLD = 10_000  # CPython's default is 700
SWITCH_INTERVAL_S = 0.001  # CPython's default is 0.005


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _config(
    app: object, host: str, port: int, drain: float, lifespan: Literal["on", "off"]
) -> uvicorn.Config:
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=host,
        port=port,
        loop="uvloop",
        http=SidecarHttpProtocol,
        lifespan=lifespan,
        access_log=False,
        proxy_headers=False,  # the sidecar never trusts X-Forwarded-* from its clients
        server_header=False,  # the upstream's own server/date headers are relayed
        date_header=False,
        timeout_graceful_shutdown=max(1, round(drain)),
        timeout_keep_alive=75,  # longer than common client idle timeouts, so the client closes first
        log_config=None,
    )


PROXY_SETTING = "--port / SIDECAR_PORT"
ADMIN_SETTING = "--admin-port / SIDECAR_ADMIN_PORT"


def bind_listeners(sidecar: Sidecar) -> list[socket.socket]:
    """Bind every listener's socket (proxy, admin when separate, fleet) before anything starts.

    Raises ``ListenError`` naming the setting of the first port that cannot be bound; nothing stays bound.
    """
    s = sidecar.settings
    sockets: list[socket.socket] = []
    try:
        sockets.append(bind_tcp(s.host, s.port, PROXY_SETTING))
        if s.admin_port is not None:
            sockets.append(bind_tcp(s.admin_host, s.admin_port, ADMIN_SETTING))
        if sidecar.fleet is not None:
            sidecar.fleet.bind()
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def ready_fields(sidecar: Sidecar, ports: list[int]) -> dict[str, object]:
    """Where everything listens, for the ready line: proxy, admin (when separate), fleet, console."""
    s = sidecar.settings
    fields: dict[str, object] = {"proxy": http_url(s.host, ports[0])}
    console = http_url(s.host, ports[0], "/ui/", local=True)
    if len(ports) > 1:
        fields["admin"] = http_url(s.admin_host, ports[1])
        console = http_url(s.admin_host, ports[1], "/ui/", local=True)
    if sidecar.fleet is not None and sidecar.fleet.listening:
        fields["fleet"] = sidecar.fleet.connect_url
    fields["console"] = console
    fields["upstream"] = s.upstream_url
    fields["pricing_date"] = sidecar.prices.table.version
    return fields


async def serve(
    sidecar: Sidecar,
    on_started: Callable[[list[uvicorn.Server]], None] | None = None,
    sockets: list[socket.socket] | None = None,
) -> int:
    """Serve until SIGINT/SIGTERM (then drain) or until the listeners stop; 0 once served, 1 otherwise.

    ``sockets`` come from :func:`bind_listeners` (bound here when not given, raising ``ListenError``).
    """
    s = sidecar.settings
    sockets = bind_listeners(sidecar) if sockets is None else sockets
    servers: list[uvicorn.Server] = [
        _Server(_config(proxy_app(sidecar), s.host, s.port, s.drain_timeout, "on"))
    ]
    if s.admin_port is not None:
        servers.append(
            _Server(_config(admin_app(sidecar), s.admin_host, s.admin_port, s.drain_timeout, "off"))
        )
    loop = asyncio.get_running_loop()

    def stop() -> None:
        log.info("shutting down: draining in-flight calls", extra={"fields": {"deadline_s": s.drain_timeout}})
        for server in servers:
            server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop)
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGHUP, sidecar.reload)
    pairs = zip(servers, sockets, strict=True)
    tasks = [asyncio.ensure_future(server.serve(sockets=[sock])) for server, sock in pairs]
    while not all(server.started for server in servers) and not any(t.done() for t in tasks):
        await asyncio.sleep(0.01)
    if all(server.started for server in servers):
        fields = ready_fields(sidecar, [bound_port(sock) for sock in sockets])
        log.info("sidecar ready", extra={"fields": fields})
    if on_started is not None:
        on_started(servers)
    await asyncio.gather(*tasks)
    return 0 if all(server.started for server in servers) else 1


def tune_runtime() -> None:
    """Process-wide interpreter settings for serving; called once everything is built, never on import.

    Measured with ``bench/`` (docs/performance.md):

    * ``gc.freeze()``: the tens of thousands of objects alive after start-up (modules, price tables,
      metric families) move to the permanent generation. A full collection otherwise walks all of them,
      a pause of 25-50 ms that lands on whichever request is running.
    * A larger generation-0 threshold: each call leaves a few objects alive until the recorder's next
      batch, so the default triggered a young collection every ~15 calls (~7 % of the CPU in all).
      Cycles are still collected, just less often; memory stays bounded by the threshold.
    * A 1 ms switch interval: when the recorder thread holds the GIL, the event loop waits at most this
      long for it instead of 5 ms, which otherwise showed up in the p99 of every phase.
    """
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)
    sys.setswitchinterval(SWITCH_INTERVAL_S)


def run(sidecar: Sidecar, sockets: list[socket.socket] | None = None) -> int:
    tune_runtime()
    try:
        import uvloop

        return uvloop.run(serve(sidecar, sockets=sockets))
    except ImportError:  # pragma: no cover - uvloop is a dependency; kept for odd platforms
        return asyncio.run(serve(sidecar, sockets=sockets))
