"""The sidecar's own cost per call, without sockets: the proxy handler driven in-process.

    python bench/handler_cost.py                  # 30,000 non-streaming calls, µs per call
    python bench/handler_cost.py --profile        # plus the top of a cProfile run (slower, relative)

The ASGI handler runs exactly as under uvicorn (request inspection, budgets, prompt-cache planning,
pricing, accounting, the recorder thread with its SQLite store, metrics and request log), but the
upstream is a canned answer (the bench's fixed JSON response) and the client is a loop calling the app.
What is left is the sidecar's own work: the number to watch when shaving the hot path, steadier than a
load test because no network, server or load generator shares the measurement. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import io
import json
import os
import pstats
import sqlite3
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import fast_upstream
import workload

_HEAD, _, _BODY = fast_upstream.json_answer().partition(b"\r\n\r\n")
_RAW_HEADERS = tuple(
    (name.strip(), value.strip())
    for name, _, value in (line.partition(b":") for line in _HEAD.split(b"\r\n")[1:])
)


class _Answer:
    """What the handler reads of an upstream answer (``sidecar.proxy.upstream.UpstreamAnswer``)."""

    status = 200
    raw_headers = _RAW_HEADERS
    content_type = "application/json"

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        yield _BODY

    async def read(self) -> bytes:
        return _BODY

    def close(self) -> None:
        return None


class _CannedUpstream:
    async def send(self, method: str, target: str, headers: Any, body: Any) -> _Answer:
        return _Answer()


def agent_body(turns: int) -> bytes:
    """A long agent conversation: the bench request plus ``turns`` tool_use / tool_result exchanges, and a
    client cache marker on the system prompt (as agent harnesses send). Sizes grow ~0.6 KB per turn."""
    doc = json.loads(workload.request_body(stream=False))
    doc["system"] = [{"type": "text", "text": doc["system"], "cache_control": {"type": "ephemeral"}}]
    messages = doc["messages"][:1]
    for i in range(turns):
        tool_id = f"toolu_{i:020d}"
        messages.append(
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": f"Let me look up order BK-{48213 + i}."},
                    {
                        "type": "tool_use",
                        "id": tool_id,
                        "name": "lookup_order",
                        "input": {"order_id": f"BK-{i}"},
                    },
                ],
            }
        )
        result = json.dumps({"status": "shipped", "items": ["atlas", "novel"], "eta_days": i % 7})
        messages.append(
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_id, "content": result}]}
        )
    messages.append({"role": "user", "content": "Thanks, and the atlas?"})
    doc["messages"] = messages
    return json.dumps(doc, separators=(",", ":")).encode()


async def _drive(app: Any, calls: int, body: bytes) -> None:
    headers = [(k.encode(), v.encode()) for k, v in workload.request_headers(0).items()]
    headers += [(b"host", b"127.0.0.1"), (b"content-length", str(len(body)).encode())]
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/messages",
        "raw_path": b"/v1/messages",
        "query_string": b"",
        "headers": headers,
        "server": ("127.0.0.1", 8080),
    }
    forever: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def send(message: Any) -> None:
        return None

    for _ in range(calls):
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.shield(forever)  # the disconnect watcher waits here until cancelled
            return {"type": "http.disconnect"}

        await app(scope, receive, send)
        await asyncio.sleep(0)  # let the loop run what the call scheduled, as a server would


def measure(calls: int, profile: bool, turns: int = 0) -> dict[str, Any]:
    from sidecar.app import build_sidecar
    from sidecar.proxy.handler import ProxyHandler
    from sidecar.server.listeners import tune_runtime
    from sidecar.settings import load_settings
    from sidecar.telemetry.logs import configure_logging

    work = Path(tempfile.mkdtemp(prefix="sidecar-handler-cost-"))
    configure_logging("info", stream=open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the process
    settings = load_settings(
        {"store": f"sqlite:///{work}/events.db", "upstream_url": "http://127.0.0.1:9"}, env={}
    )
    sidecar = build_sidecar(settings)
    handler = ProxyHandler(dataclasses.replace(sidecar.proxy.deps, upstream=_CannedUpstream()))
    sidecar.store.open()
    sidecar.recorder.start()
    tune_runtime()
    import uvloop

    body = agent_body(turns) if turns else workload.request_body(stream=False)
    warmup = min(1000, calls)
    uvloop.run(_drive(handler, warmup, body))
    profiler = cProfile.Profile() if profile else None
    wall, cpu = time.perf_counter(), time.process_time()
    if profiler is not None:
        profiler.enable()
    uvloop.run(_drive(handler, calls, body))
    if profiler is not None:
        profiler.disable()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    sidecar.recorder.stop()
    with sqlite3.connect(work / "events.db") as db:
        (stored,) = db.execute("SELECT count(*) FROM events").fetchone()
    result: dict[str, Any] = {
        "calls": calls,
        "request_bytes": len(body),
        "events_stored": stored - warmup,
        "wall_us_per_call": round(wall / calls * 1e6, 1),
        "cpu_us_per_call": round(cpu / calls * 1e6, 1),  # all threads: the recorder's work included
    }
    if profiler is not None:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(25)
        result["profile"] = out.getvalue()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=30_000)
    parser.add_argument("--profile", action="store_true", help="cProfile the measured calls")
    parser.add_argument(
        "--turns", type=int, default=0, help="send a long agent conversation (N tool exchanges) instead"
    )
    args = parser.parse_args(argv)
    result = measure(args.calls, args.profile, args.turns)
    profile = result.pop("profile", None)
    print(json.dumps(result))
    if profile:
        print(profile, file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
