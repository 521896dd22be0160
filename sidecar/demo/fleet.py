"""The ``demo`` fleet: a few members on the fleet listener, one of which freezes and later comes back.

The frozen member keeps its TCP connection but stops reading (so it answers no pings), is closed with
1011 by the heartbeat, and — once it has been gone longer than the member check's grace — fires the
dead-man alert; when it reconnects, the alert resolves. :func:`alert_printer` is a local webhook
receiver that prints what the sidecar sends, so the firing and resolved messages show in the terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

Log = Callable[[str], None]


def demo_fleet_config(
    fleet: str = "voice", members: int = 3, webhook_url: str | None = None
) -> dict[str, Any]:
    """Settings fragments for a lively demo: ``{"policies": {...}, "policy_env": {...}}`` to merge in."""
    env = {
        "SIDECAR_FLEET_PORT": "0",
        "SIDECAR_FLEET_PING_INTERVAL": "1",
        "SIDECAR_FLEET_PING_TIMEOUT": "2",
    }
    if webhook_url:
        env["SIDECAR_ALERT_WEBHOOK_URL"] = webhook_url
    checks = [
        {"name": f"{fleet}-members", "fleet": fleet, "grace": "3s"},
        {"name": f"{fleet}-size", "fleet": fleet, "min_members": members, "grace": "20s"},
    ]
    return {"policies": {"checks": checks}, "policy_env": env}


@dataclass
class DemoFleetResult:
    connects: int = 0
    status_messages: int = 0
    froze: list[str] = field(default_factory=list)


async def _member(url: str, name: str, result: DemoFleetResult) -> ClientConnection:
    ws = await connect(f"{url}&member={name}", ping_interval=None)
    result.connects += 1
    return ws


async def _chatter(
    ws: ClientConnection, result: DemoFleetResult, rng: random.Random, stop: asyncio.Event
) -> None:
    """Send a status message every second or so, like a voice agent reporting its load."""
    with contextlib.suppress(ConnectionClosed):
        while not stop.is_set():
            doc = {"type": "status", "calls_in_progress": rng.randint(0, 4)}
            await ws.send(orjson.dumps(doc).decode())
            result.status_messages += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), rng.uniform(0.8, 1.2))


async def run_demo_fleet(
    connect_url: str,
    *,
    fleet: str = "voice",
    members: int = 3,
    freeze_after_s: float = 3.0,
    freeze_for_s: float = 12.0,
    duration_s: float = 20.0,
    token: str | None = None,
    log: Log = print,
    seed: int = 11,
) -> DemoFleetResult:
    """Run ``members`` members for ``duration_s``; the last one freezes for ``freeze_for_s`` then returns."""
    rng = random.Random(seed)
    base = f"{connect_url}?fleet={fleet}" + (f"&token={token}" if token else "")
    names = [f"{fleet}-agent-{i + 1}" for i in range(members)]
    result, stop = DemoFleetResult(), asyncio.Event()
    sockets = {n: await _member(base, n, result) for n in names}
    log(f"fleet {fleet!r}: {members} members connected to {connect_url}")
    chatter = [asyncio.ensure_future(_chatter(ws, result, rng, stop)) for ws in sockets.values()]
    loop = asyncio.get_running_loop()
    started = loop.time()
    frozen = names[-1]
    await asyncio.sleep(freeze_after_s)
    sockets[frozen].transport.pause_reading()  # alive but deaf: no pongs from here on
    result.froze.append(frozen)
    log(f"member {frozen!r} froze (stops answering pings); watch GET /sidecar/v1/alerts")
    await asyncio.sleep(freeze_for_s)
    sockets[frozen].transport.abort()
    sockets[frozen] = await _member(base, frozen, result)
    chatter.append(asyncio.ensure_future(_chatter(sockets[frozen], result, rng, stop)))
    log(f"member {frozen!r} is back (reconnected); the alert resolves")
    await asyncio.sleep(max(0.0, duration_s - (loop.time() - started)))
    stop.set()
    await asyncio.gather(*chatter, return_exceptions=True)
    for ws in sockets.values():
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(), 2.0)
    return result


@contextlib.asynccontextmanager
async def alert_printer(log: Log = print) -> AsyncIterator[str]:
    """A webhook receiver on 127.0.0.1 that logs each alert text; yields its URL."""

    async def handle(request: web.Request) -> web.Response:
        doc = await request.json()
        log(f"ALERT  {doc.get('text', doc)}")
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/alerts", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    await web.SockSite(runner, sock).start()
    try:
        yield f"http://127.0.0.1:{port}/alerts"
    finally:
        await runner.cleanup()
