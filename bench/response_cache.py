"""The response cache's cost (SPEC R-RC-6): what a miss adds, what a hit takes, and the cache off.

    python bench/response_cache.py            # ~1 min → bench/results/response_cache.md + .json
    python bench/response_cache.py --quick    # fewer iterations: rough numbers

Three measurements, on the bench's 2,400-byte Messages request (``workload.request_body``):

1. **Key hashing** (the miss's added CPU that R-RC-6 bounds at 50 µs): ``request_key`` on the parsed body
   (canonical JSON without ``stream``, BLAKE2b over route, version, beta set, tenant and body), CPU time
   per key over many iterations, in this process.
2. **Handler CPU per call**, in-process with a canned upstream answer (as ``handler_cost.py``): the cache
   off (the default; the hot path then checks one attribute per stage), on with every call a miss
   (distinct bodies: key, SQLite lookup on a worker thread, the copy of the answer, the entry written on
   a worker thread), and on with every call a hit. CPU of the whole process (all threads) per call.
3. **Hit latency on loopback**: ``claude-sidecar serve`` (response cache on) in its own process, pinned to
   the proxy core as in ``run.py``, the bench's lean upstream on the other; a blocking keep-alive client
   sends the request sequentially and times each answer. The same request with ``x-sidecar-cache: off``
   (forwarded to the upstream) is the comparison. Also the sidecar's CPU µs per hit from ``/proc``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import handler_cost
import orjson
import procs
import workload

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results"


def key_hashing(iterations: int) -> dict[str, Any]:
    from sidecar.respcache.key import request_key

    body = workload.request_body(stream=False)
    doc = orjson.loads(body)  # the handler has parsed the body already: not the cache's cost
    headers = [(k.encode(), v.encode()) for k, v in workload.request_headers(0).items()]
    for _ in range(1000):
        request_key(route=b"/v1/messages", headers=headers, doc=doc, shared=False)
    cpu = time.process_time()
    for _ in range(iterations):
        request_key(route=b"/v1/messages", headers=headers, doc=doc, shared=False)
    cpu = time.process_time() - cpu
    return {
        "body_bytes": len(body),
        "iterations": iterations,
        "cpu_us_per_key": round(cpu / iterations * 1e6, 2),
    }


async def _drive(app: Any, bodies: list[bytes]) -> None:
    headers = [(k.encode(), v.encode()) for k, v in workload.request_headers(0).items()]
    forever: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def send(message: Any) -> None:
        return None

    for body in bodies:
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/v1/messages",
            "raw_path": b"/v1/messages",
            "query_string": b"",
            "headers": [*headers, (b"host", b"127.0.0.1"), (b"content-length", str(len(body)).encode())],
            "server": ("127.0.0.1", 8080),
        }
        sent = False

        async def receive(body: bytes = body) -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.shield(forever)
            return {"type": "http.disconnect"}

        await app(scope, receive, send)
        await asyncio.sleep(0)


def _bodies(calls: int, distinct: bool) -> list[bytes]:
    base = workload.request_body(stream=False)
    if not distinct:
        return [base] * calls
    marker = b"bench-user-0001"
    return [base.replace(marker, b"bench-u%08d" % i) for i in range(calls)]  # same length, other keys


def handler_cpu(mode: str, calls: int) -> dict[str, Any]:
    """CPU µs per call of the in-process handler: ``off``, ``miss`` (cache on, every call new), ``hit``."""
    import uvloop

    from sidecar.app import build_sidecar
    from sidecar.proxy.handler import ProxyHandler
    from sidecar.settings import load_settings
    from sidecar.telemetry.logs import configure_logging

    work = Path(tempfile.mkdtemp(prefix="sidecar-rc-bench-"))
    configure_logging("info", stream=open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the process
    flags = {"store": f"sqlite:///{work}/events.db", "upstream_url": "http://127.0.0.1:9"}
    if mode != "off":
        flags["response_cache"] = "on"
    sidecar = build_sidecar(load_settings(flags, env={}))
    handler = ProxyHandler(dataclasses.replace(sidecar.proxy.deps, upstream=handler_cost._CannedUpstream()))
    sidecar.store.open()
    sidecar.recorder.start()
    cache = sidecar.response_cache

    async def run() -> tuple[float, float]:
        if cache is not None:
            await cache.open()
        await _drive(handler, _bodies(min(1000, calls), distinct=mode == "miss"))  # warm-up (and the entry)
        if cache is not None:
            await cache.drain(30)
        bodies = _bodies(calls, distinct=mode == "miss")
        if mode == "miss":
            bodies = [b.replace(b"bench-u", b"bench-v") for b in bodies]  # none of the warm-up's keys
        wall, cpu = time.perf_counter(), time.process_time()
        await _drive(handler, bodies)
        if cache is not None:
            await cache.drain(60)  # the entries' writes belong to the misses' cost
        return time.perf_counter() - wall, time.process_time() - cpu

    wall, cpu = uvloop.run(run())
    sidecar.recorder.stop()
    return {
        "mode": mode,
        "calls": calls,
        "cpu_us_per_call": round(cpu / calls * 1e6, 1),
        "wall_us_per_call": round(wall / calls * 1e6, 1),
    }


def _request(body: bytes, cache: str | None) -> bytes:
    headers = {**workload.request_headers(0), "host": "127.0.0.1", "content-length": str(len(body))}
    if cache is not None:
        headers["x-sidecar-cache"] = cache
    head = "POST /v1/messages HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    return head.encode() + body


def _exchange(sock: socket.socket, request: bytes) -> bytes:
    """Send one request on a keep-alive connection; return the answer's headers (body read and dropped)."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.lower().split(b"\r\n")
        if line.startswith(b"content-length:")
    )
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed")
        rest += chunk
    return head


def _timed(sock: socket.socket, request: bytes, count: int, want: bytes) -> list[float]:
    times = []
    for _ in range(count):
        t0 = time.perf_counter()
        head = _exchange(sock, request)
        times.append(time.perf_counter() - t0)
        if want not in head.lower():
            raise RuntimeError(f"expected {want!r} in the answer's headers: {head[:300]!r}")
    return sorted(times)


def _ms(sorted_times: list[float]) -> dict[str, float]:
    return {f"p{q}_ms": round(workload.percentile(sorted_times, q) * 1000, 3) for q in (50, 90, 99)}


def hit_latency(requests: int, work: Path) -> dict[str, Any]:
    py = sys.executable
    with procs.Processes(work) as children:
        upstream = children.start(
            "upstream",
            procs.pinned(procs.LOADGEN_CORE, [py, str(BENCH_DIR / "fast_upstream.py"), "--port", "0"]),
            stdout_pipe=True,
        )
        up_url = upstream.readline(timeout_s=30)
        port = procs.free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_")}
        env.update(SIDECAR_FLEET_PORT="0", SIDECAR_RESPONSE_CACHE="on")
        argv = [py, "-m", "sidecar.cli", "serve", "--upstream-url", up_url, "--port", str(port)]
        argv += ["--store", f"sqlite:///{work}/events.db"]
        sidecar = children.start("sidecar", procs.pinned(procs.PROXY_CORE, argv), env=env, cwd=work)
        procs.wait_http_ok(f"http://127.0.0.1:{port}/readyz", 60, sidecar.alive)
        if procs.can_pin():
            os.sched_setaffinity(0, {procs.LOADGEN_CORE})  # the client beside the upstream, as run.py's
        body = workload.request_body(stream=False)
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _timed(sock, _request(body, None), 1, b"x-sidecar-cache: miss")
            time.sleep(0.5)  # the entry is written just after the answer
            _timed(sock, _request(body, None), 200, b"x-sidecar-cache: hit")  # warm-up
            cpu = procs.cpu_seconds(sidecar.pid)
            hits = _timed(sock, _request(body, None), requests, b"x-sidecar-cache: hit")
            cpu = procs.cpu_seconds(sidecar.pid) - cpu
            forwarded = _timed(sock, _request(body, "off"), min(requests, 2000), b"200 ok")
    return {
        "requests": requests,
        "hit": {**_ms(hits), "sidecar_cpu_us_per_hit": round(cpu / requests * 1e6, 1)},
        "forwarded": _ms(forwarded),
        "pinned": procs.can_pin(),
    }


def _latency_row(name: str, ms: dict[str, float]) -> str:
    return f"| {name} | {ms['p50_ms']} ms | {ms['p90_ms']} ms | {ms['p99_ms']} ms |"


def _markdown(result: dict[str, Any]) -> str:
    key, lat = result["key_hashing"], result["hit_latency"]
    rows = "\n".join(
        f"| {r['mode']} | {r['calls']:,} | {r['cpu_us_per_call']} | {r['wall_us_per_call']} |"
        for r in result["handler_cpu"]
    )
    off = next(r for r in result["handler_cpu"] if r["mode"] == "off")["cpu_us_per_call"]
    miss = next(r for r in result["handler_cpu"] if r["mode"] == "miss")["cpu_us_per_call"]
    return f"""# Response cache benchmark (SPEC R-RC-6)

- date: {result["date"]}
- machine: {result["machine"]}
- method: `python bench/response_cache.py{" --quick" if result["quick"] else ""}` (see the script's docstring)
- load average at start / end: {result["load_start"]} / {result["load_end"]} (shared machine: noisy tails)

## Miss: key hashing on the bench's {key["body_bytes"]:,}-byte body

{key["cpu_us_per_key"]} µs of CPU per key ({key["iterations"]:,} iterations; target ≤ 50 µs).

## Handler CPU per call, in-process, canned upstream

| mode | calls | CPU µs / call | wall µs / call |
|---|---|---|---|
{rows}

A miss costs {miss - off:+.1f} µs of CPU over the cache off, all of it included: the key, the in-memory
index that answers a miss without a query, the copy of the answer, and the entry's write (batched, on a
worker thread, with the thread hand-offs it takes). With the cache off the hot path is unchanged but for
one attribute check per stage.

## Hit latency on loopback ({lat["requests"]:,} sequential requests, keep-alive, pinned: {lat["pinned"]})

| answer | p50 | p90 | p99 |
|---|---|---|---|
{_latency_row("hit", lat["hit"])}
{_latency_row("forwarded (`x-sidecar-cache: off`)", lat["forwarded"])}

Sidecar CPU per hit: {lat["hit"]["sidecar_cpu_us_per_hit"]} µs (target: a hit answers in ≤ 1 ms at p50).
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS / "response_cache")
    args = parser.parse_args(argv)
    calls, keys, hits = (2_000, 20_000, 1_000) if args.quick else (10_000, 200_000, 5_000)
    work = Path(tempfile.mkdtemp(prefix="sidecar-rc-bench-"))
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{os.cpu_count()} cores, Python {platform.python_version()}, {platform.platform()}",
        "quick": args.quick,
        "load_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "key_hashing": key_hashing(keys),
        "handler_cpu": [handler_cpu(mode, calls) for mode in ("off", "miss", "hit")],
        "hit_latency": hit_latency(hits, work),
    }
    result["load_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(_markdown(result))
    print(_markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
