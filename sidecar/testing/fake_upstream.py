"""The project's own fake Anthropic API, faithful to the wire protocol, for tests and ``demo``.

``build_app(config)`` gives the aiohttp application; ``FakeUpstream`` runs it on 127.0.0.1 in a
background thread (sync tests, demo); ``main`` serves it as a process, printing its URL as the first
line of stdout and exiting 0 on SIGINT/SIGTERM::

    python -m sidecar.testing.fake_upstream --port 0

Endpoints: ``POST /v1/messages`` (JSON or SSE), ``/v1/messages/count_tokens``, models, message batches,
files; any other path is a 404 ``not_found_error``; a ``?beta=true`` query is accepted and ignored.
Test hooks: ``GET /__fake/requests`` (what was received) and ``POST /__fake/reset``. The per-request
``x-fake-*`` headers are described in ``fake_http`` and ``fake_messages``; the answer rules in
``fake_content``; the cache simulation in ``fake_cache``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import signal
import socket
import threading
from types import TracebackType

from aiohttp import web

from sidecar.testing.fake_http import (
    STATE_KEY,
    add_common_headers,
    fake_middleware,
    json_response,
    mark_stopping,
)
from sidecar.testing.fake_messages import handle_count_tokens, handle_messages
from sidecar.testing.fake_resources import add_resource_routes
from sidecar.testing.fake_state import FakeConfig, FakeState, RecordedRequest

__all__ = ["FakeConfig", "FakeUpstream", "RecordedRequest", "build_app", "main"]

_MAX_BODY_BYTES = 64 * 1024 * 1024  # above the API's 32 MB Messages limit, so the fake never refuses first
_SHUTDOWN_TIMEOUT_S = 0.5  # in-flight slow or hanging handlers are cancelled after this on stop
DEFAULT_CONFIG = FakeConfig()


async def _list_requests(request: web.Request) -> web.Response:
    recorded = [
        {
            "method": r.method,
            "path": r.path,
            "query_string": r.query_string,
            "headers": [list(pair) for pair in r.headers],
            "body": r.body.decode("utf-8", "replace"),
            "body_base64": base64.b64encode(r.body).decode(),
            "received_at": r.received_at,
        }
        for r in request.app[STATE_KEY].requests()
    ]
    return json_response(recorded)


async def _reset(request: web.Request) -> web.Response:
    request.app[STATE_KEY].reset()
    return web.Response(status=204)


def build_app(config: FakeConfig = DEFAULT_CONFIG) -> web.Application:
    """A fresh fake upstream with its own state (``app[STATE_KEY]``)."""
    app = web.Application(middlewares=[fake_middleware], client_max_size=_MAX_BODY_BYTES)
    app[STATE_KEY] = FakeState(config)
    app.router.add_post("/v1/messages", handle_messages)
    app.router.add_post("/v1/messages/count_tokens", handle_count_tokens)
    add_resource_routes(app)
    app.router.add_get("/__fake/requests", _list_requests)
    app.router.add_post("/__fake/reset", _reset)
    app.on_response_prepare.append(add_common_headers)
    app.on_shutdown.append(mark_stopping)
    return app


class FakeUpstream:
    """Runs the fake on 127.0.0.1 in a background thread with its own event loop (for sync tests and demo).

    Use as a context manager, or call ``start()``/``stop()``. ``url`` is set once started.
    """

    def __init__(
        self,
        config: FakeConfig = DEFAULT_CONFIG,
        host: str = "127.0.0.1",
        port: int = 0,
        app: web.Application | None = None,
    ) -> None:
        self.config = config
        self.app = build_app(config) if app is None else app  # another fake (Bedrock, Vertex) on the runner
        self._state = self.app[STATE_KEY]
        self._host, self._port = host, port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far (a snapshot, oldest first; ``/__fake/`` calls excluded)."""
        return self._state.requests()

    def reset(self) -> None:
        """Forget recorded requests, cache entries, failure counters, files and batches."""
        self._state.reset()

    def evict_cache(self) -> None:
        """Drop every prompt-cache entry now (the API evicting before a TTL runs out)."""
        self._state.evict_cache()

    def start(self, timeout_s: float = 10.0) -> None:
        """Bind, start serving in the background thread, and return once requests are accepted."""
        sock = socket.create_server((self._host, self._port))
        self.url = f"http://{self._host}:{sock.getsockname()[1]}"
        loop = asyncio.new_event_loop()
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT_S)
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            # Set up inside the thread: the caller may itself be running an event loop.
            try:
                loop.run_until_complete(runner.setup())
                loop.run_until_complete(web.SockSite(runner, sock).start())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()

        self._loop, self._runner = loop, runner
        self._thread = threading.Thread(target=run, name="fake-upstream", daemon=True)
        self._thread.start()
        if not ready.wait(timeout_s) or failure:
            sock.close()
            raise RuntimeError("fake upstream did not start") from (failure[0] if failure else None)

    def stop(self) -> None:
        """Close the server (in-flight requests are cut after a short grace period) and the loop."""
        loop, runner, thread = self._loop, self._runner, self._thread
        if loop is None or runner is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        self._loop = self._runner = self._thread = None

    def __enter__(self) -> FakeUpstream:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


async def _serve(config: FakeConfig, host: str, port: int) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(build_app(config), access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    sock = socket.create_server((host, port))
    await web.SockSite(runner, sock).start()
    print(f"http://{host}:{sock.getsockname()[1]}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Serve the fake until SIGINT/SIGTERM, then return 0. The first stdout line is the bound URL."""
    parser = argparse.ArgumentParser(prog="python -m sidecar.testing.fake_upstream", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8790, help="0 picks a free port")
    parser.add_argument("--first-token-delay-ms", type=int, default=0)
    parser.add_argument("--chunk-delay-ms", type=int, default=0)
    parser.add_argument("--deltas", type=int, default=FakeConfig.deltas)
    parser.add_argument("--no-auth", action="store_true", help="accept requests without credentials")
    args = parser.parse_args(argv)
    config = FakeConfig(
        first_token_delay_s=args.first_token_delay_ms / 1000,
        chunk_delay_s=args.chunk_delay_ms / 1000,
        deltas=args.deltas,
        require_auth=not args.no_auth,
    )
    return asyncio.run(_serve(config, args.host, args.port))


if __name__ == "__main__":
    raise SystemExit(main())
