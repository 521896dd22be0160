"""The in-run yardstick: an aiohttp server + pooled aiohttp client that streams bytes through, parses nothing.

The same event loop as the sidecar (uvloop), aiohttp's client (the one the sidecar used before its own lean
client, ``sidecar/proxy/h1.py``), no accounting, metrics or recording. The first stdout line is the bound
URL::

    python bench/bare_forwarder.py --upstream-url http://127.0.0.1:PORT --port 0
"""

from __future__ import annotations

import argparse
import asyncio
import socket

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "host", "content-length"})
_SESSION: web.AppKey[aiohttp.ClientSession] = web.AppKey("session", aiohttp.ClientSession)
_UPSTREAM: web.AppKey[str] = web.AppKey("upstream", str)


async def forward(request: web.Request) -> web.StreamResponse:
    """Send the request upstream as is; relay status, headers and body chunks as they arrive."""
    headers = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in _HOP)
    body = await request.read()
    session = request.app[_SESSION]
    url = request.app[_UPSTREAM] + request.path_qs
    async with session.request(request.method, url, headers=headers, data=body) as up:
        resp = web.StreamResponse(status=up.status)
        for k, v in up.headers.items():
            if k.lower() not in _HOP:
                resp.headers.add(k, v)
        if up.content_length is not None:
            resp.content_length = up.content_length
        await resp.prepare(request)
        async for chunk in up.content.iter_any():
            await resp.write(chunk)
        await resp.write_eof()
        return resp


async def serve(upstream: str, host: str, port: int) -> None:
    """Serve until cancelled (SIGINT/SIGTERM end the process); prints the URL once listening."""
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[_UPSTREAM] = upstream.rstrip("/")
    app.router.add_route("*", "/{tail:.*}", forward)
    connector = aiohttp.TCPConnector(limit=1000)
    session = aiohttp.ClientSession(
        connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent",)
    )
    app[_SESSION] = session
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.create_server((host, port), backlog=1024)
    await web.SockSite(runner, sock, backlog=1024).start()  # as uvicorn's 2048: no SYN drops at 200
    print(f"http://{host}:{sock.getsockname()[1]}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await session.close()
        await runner.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--upstream-url", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    import uvloop

    uvloop.run(serve(args.upstream_url, args.host, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
