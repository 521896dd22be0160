"""Runs a real sidecar (uvicorn, uvloop, httptools) on 127.0.0.1 in a background thread.

Used by the test suite and by ``demo``: the same server code as ``serve``, on an ephemeral port.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import replace
from typing import Any

import uvicorn

from sidecar.app import Sidecar, build_sidecar
from sidecar.core.events import CallEvent
from sidecar.server.listeners import serve
from sidecar.settings import Settings


class RunningSidecar:
    def __init__(
        self,
        settings: Settings,
        registry: Any = None,
        span_exporter: Any = None,
        clickhouse_connect: Any = None,
        clock: Any = None,
    ) -> None:
        self.settings = replace(settings, port=settings.port)
        self.sidecar: Sidecar = build_sidecar(
            self.settings, registry, span_exporter, clickhouse_connect, clock=clock or time.time
        )
        self._servers: list[uvicorn.Server] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self.exit_code: int | None = None
        self.error: BaseException | None = None
        self.port = 0
        self.admin_port: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}" if self.admin_port else self.url

    def wait_events(
        self, count: int, *, session_id: str | None = None, timeout_s: float = 10.0
    ) -> list[CallEvent]:
        """The stored events once at least ``count`` are there (calls are recorded after their last byte)."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.sidecar.recorder.flush()
            events = self.sidecar.store.events(session_id=session_id)
            if len(events) >= count or time.monotonic() > deadline:
                return events
            time.sleep(0.01)

    def start(self, timeout_s: float = 10.0) -> RunningSidecar:
        """Start serving in a background thread; a second call (``with s.start():`` enters again) does
        nothing: two servers of one sidecar on two loops would share its upstream pool across loops."""
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._run, name="sidecar-under-test", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout_s):
            raise RuntimeError(f"sidecar did not start: {self.error!r}")
        if self.error is not None:
            raise RuntimeError("sidecar failed to start") from self.error
        return self

    def _run(self) -> None:
        import uvloop

        def started(servers: list[uvicorn.Server]) -> None:
            self._servers = servers
            self._loop = asyncio.get_running_loop()
            ports = [srv.servers[0].sockets[0].getsockname()[1] for srv in servers if srv.servers]
            if ports:
                self.port = ports[0]
                self.admin_port = ports[1] if len(ports) > 1 else None
            self._started.set()

        try:
            self.exit_code = uvloop.run(serve(self.sidecar, on_started=started))
        except BaseException as exc:
            self.error = exc
        finally:
            self._started.set()

    def stop(self, timeout_s: float = 30.0) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():

            def shutdown() -> None:
                for server in self._servers:
                    server.should_exit = True

            self._loop.call_soon_threadsafe(shutdown)
            self._thread.join(timeout_s)

    def __enter__(self) -> RunningSidecar:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
