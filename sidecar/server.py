"""Runs the sidecar's listeners under uvicorn, with a graceful drain that exits 0 on SIGTERM.

uvicorn re-raises a captured SIGTERM after its own graceful shutdown (so the process would end with
-15); the sidecar owns signal handling instead and returns normally once drained.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
from collections.abc import Callable, Iterator
from typing import Literal

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from sidecar.app import Sidecar
from sidecar.errors import error_body, new_request_id

log = logging.getLogger("sidecar.server")
# Request line + headers. httptools buffers them without any limit (and with quadratic copying), so a
# client could grow memory at will with one endless header line; real clients send a few KB.
MAX_HEAD_BYTES = 1 << 20
# Interpreter settings for a serving process (see tune_runtime).
GC_GEN0_THRESHOLD = 10_000  # CPython's default is 700
SWITCH_INTERVAL_S = 0.001  # CPython's default is 0.005


class _BoundedHeadProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, refusing a request head over ``MAX_HEAD_BYTES`` with a 431.

    Bytes are counted while no request body is being read (chunk granularity, so the limit is
    approximate by one read); the counter restarts at every completed head.
    """

    _head_bytes = 0
    _in_body = False
    _refused = False

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if not self._in_body:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._refuse_head()
                return
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._in_body, self._head_bytes = True, 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_body = False
        super().on_message_complete()

    def _refuse_head(self) -> None:
        self._refused = True
        body = error_body(
            "invalid_request_error",
            f"Request line and headers exceed {MAX_HEAD_BYTES} bytes.",
            new_request_id(),
        )
        head = (
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
        )
        self.transport.write(head + body)
        self.transport.close()


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
        http=_BoundedHeadProtocol,
        lifespan=lifespan,
        access_log=False,
        proxy_headers=False,  # the sidecar never trusts X-Forwarded-* from its clients
        server_header=False,  # the upstream's own server/date headers are relayed
        date_header=False,
        timeout_graceful_shutdown=max(1, round(drain)),
        timeout_keep_alive=75,  # longer than common client idle timeouts, so the client closes first
        log_config=None,
    )


async def serve(sidecar: Sidecar, on_started: Callable[[list[uvicorn.Server]], None] | None = None) -> int:
    s = sidecar.settings
    servers: list[uvicorn.Server] = [
        _Server(_config(sidecar.proxy_app(), s.host, s.port, s.drain_timeout, "on"))
    ]
    if s.admin_port is not None:
        servers.append(
            _Server(_config(sidecar.admin_app(), s.admin_host, s.admin_port, s.drain_timeout, "off"))
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
    tasks = [asyncio.ensure_future(server.serve()) for server in servers]
    if on_started is not None:
        while not all(server.started for server in servers) and not any(t.done() for t in tasks):
            await asyncio.sleep(0.01)
        on_started(servers)
    await asyncio.gather(*tasks)
    return 0 if all(server.started for server in servers) else 1


def tune_runtime() -> None:
    """Process-wide interpreter settings for serving; called once everything is built, never on import.

    Measured with ``bench/`` (README, "Performance"):

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


def run(sidecar: Sidecar) -> int:
    tune_runtime()
    try:
        import uvloop

        return uvloop.run(serve(sidecar))
    except ImportError:  # pragma: no cover - uvloop is a dependency; kept for odd platforms
        return asyncio.run(serve(sidecar))
