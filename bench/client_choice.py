"""Experiment: CPU per request of upstream HTTP clients (the sidecar's own, aiohttp, httpx) on a proxy's hop.

Each client runs in its own process pinned to the proxy core, under uvloop, and does what the sidecar's
upstream seam does: POST the 2.4 KB Messages body with the client's headers, then read the raw answer
bytes as they arrive (no decompression, no decoding). The lean upstream runs on the other core. CPU is
the worker's getrusage (all threads) over the measured requests, after a warm-up::

    python bench/client_choice.py            # ~4 min; writes bench/results/client_choice.md
    python bench/client_choice.py --quick

Rows: aiohttp with ``trust_env=True`` and with ``trust_env=False`` (as the sidecar configures it for
what its own client does not handle), httpx (``AsyncClient``, HTTP/1.1, ``trust_env=False``), and the
sidecar's lean keep-alive client (``sidecar.proxy.h1``), which carries every Messages call.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from procs import LOADGEN_CORE, PROXY_CORE, Processes, pinned
from workload import request_body, request_headers

BENCH_DIR = Path(__file__).resolve().parent
CLIENTS = ("aiohttp-trust-env", "aiohttp", "httpx", "sidecar-h1")
KEYS = ("json-c1", "json-c50", "stream-c1", "stream-c50")
Fetch = Callable[[], Awaitable[int]]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _drive(fetch: Fetch, concurrency: int, warmup: int, requests: int) -> dict[str, float]:
    """Run ``warmup`` then ``requests`` fetches with ``concurrency`` workers; CPU and rate of the latter."""

    async def batch(n: int) -> None:
        left = [n]

        async def worker() -> None:
            while left[0] > 0:
                left[0] -= 1
                if await fetch() != 200:
                    raise RuntimeError("upstream answered with an error")

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    await batch(warmup)
    cpu0, t0 = _cpu(), time.perf_counter()
    await batch(requests)
    cpu, wall = _cpu() - cpu0, time.perf_counter() - t0
    return {"cpu_us_per_req": round(cpu / requests * 1e6, 1), "rps": round(requests / wall, 1)}


async def run_aiohttp(url: str, stream: bool, trust_env: bool, args: argparse.Namespace) -> dict[str, float]:
    import aiohttp

    body, headers = request_body(stream), list(request_headers(0).items())
    connector = aiohttp.TCPConnector(limit=1000)
    async with aiohttp.ClientSession(
        connector=connector, auto_decompress=False, trust_env=trust_env, skip_auto_headers=("User-Agent",)
    ) as session:

        async def fetch() -> int:
            resp = await session.request("POST", url, headers=headers, data=body, allow_redirects=False)
            try:
                async for _chunk in resp.content.iter_any():
                    pass
                return resp.status
            finally:
                resp.close()

        return await _drive(fetch, args.concurrency, args.warmup, args.requests)


async def run_httpx(url: str, stream: bool, args: argparse.Namespace) -> dict[str, float]:
    import httpx

    body, headers = request_body(stream), list(request_headers(0).items())
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=1000)
    async with httpx.AsyncClient(limits=limits, trust_env=False, timeout=30.0) as client:

        async def fetch() -> int:
            request = client.build_request("POST", url, headers=headers, content=body)
            resp = await client.send(request, stream=True)
            try:
                async for _chunk in resp.aiter_raw():
                    pass
                return resp.status_code
            finally:
                await resp.aclose()

        return await _drive(fetch, args.concurrency, args.warmup, args.requests)


async def run_h1(base_url: str, stream: bool, args: argparse.Namespace) -> dict[str, float]:
    from sidecar.proxy.h1 import H1Pool, Origin

    body = request_body(stream)
    headers = [(k.lower().encode(), v.encode()) for k, v in request_headers(0).items()]
    pool = H1Pool(Origin(base_url), limit=1000, connect_timeout_s=5.0, read_timeout_s=30.0)

    async def fetch() -> int:
        resp = await pool.request("POST", "/v1/messages", headers, body)
        try:
            async for _chunk in resp.iter_chunks():
                pass
            return resp.status
        finally:
            resp.close()

    try:
        return await _drive(fetch, args.concurrency, args.warmup, args.requests)
    finally:
        await pool.close()


def worker_main(args: argparse.Namespace) -> int:
    import uvloop

    url = args.url + "/v1/messages"
    if args.worker == "httpx":
        result = uvloop.run(run_httpx(url, args.stream, args))
    elif args.worker == "sidecar-h1":
        result = uvloop.run(run_h1(args.url, args.stream, args))
    else:
        result = uvloop.run(run_aiohttp(url, args.stream, args.worker == "aiohttp-trust-env", args))
    print(json.dumps(result), flush=True)
    return 0


def _worker_argv(
    client: str, url: str, stream: bool, concurrency: int, args: argparse.Namespace
) -> list[str]:
    argv = [sys.executable, str(Path(__file__).resolve()), "--worker", client, "--url", url]
    # One client waits ~50 ms per stream: fewer of those keep the run short.
    slow = 10 if stream and concurrency == 1 else 1
    n = args.requests // (5 if stream else 1) // slow
    argv += ["--concurrency", str(concurrency), "--warmup", str(max(10, args.warmup // slow))]
    argv += ["--requests", str(n)]
    return argv + (["--stream"] if stream else [])


Results = dict[str, dict[str, list[dict[str, float]]]]  # "json-c50" → client → runs


def experiment(args: argparse.Namespace, log_dir: Path) -> Results:
    """Every (kind, concurrency, client) ``--repeat`` times, interleaved so drift hits all clients alike."""
    results: Results = {}
    with Processes(log_dir) as procs:
        upstream_argv = [sys.executable, str(BENCH_DIR / "fast_upstream.py"), "--port", "0"]
        upstream = procs.start("upstream", pinned(LOADGEN_CORE, upstream_argv), stdout_pipe=True)
        url = upstream.readline(timeout_s=30)
        for rep in range(args.repeat):
            for key in KEYS:
                kind, concurrency = key.split("-c")
                for client in CLIENTS:
                    argv = _worker_argv(client, url, kind == "stream", int(concurrency), args)
                    child = procs.start(f"{client}-{key}-{rep}", pinned(PROXY_CORE, argv), stdout_pipe=True)
                    line = child.readline(timeout_s=600)
                    procs.stop(child)
                    results.setdefault(key, {}).setdefault(client, []).append(json.loads(line))
    return results


def markdown(results: Results, args: argparse.Namespace) -> str:
    lines = [
        "# Upstream HTTP client choice: CPU per request (median of runs)",
        "",
        f"Per run: {args.requests:,} JSON requests, {args.requests // 5:,} SSE streams (a tenth of that "
        f"with one client), after a warm-up; {args.repeat} runs, interleaved. Client process pinned to "
        "core 1, lean upstream (SSE: 12 chunks, 5 ms apart) to core 0; uvloop.",
        "",
        "| client | " + " | ".join(f"{k} CPU µs/req | {k} req/s" for k in KEYS) + " |",
        "|---|" + "---|---|" * len(KEYS),
    ]
    for client in CLIENTS:
        cells = []
        for key in KEYS:
            runs = results[key][client]
            cells.append(f"{statistics.median(r['cpu_us_per_req'] for r in runs):,.0f}")
            cells.append(f"{statistics.median(r['rps'] for r in runs):,.0f}")
        lines.append(f"| {client} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--worker", choices=CLIENTS, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--stream", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, default=50, help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--requests", type=int, default=10_000, help="JSON requests per run (SSE: a fifth)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results")
    args = parser.parse_args()
    if args.worker:
        return worker_main(args)
    if args.quick:
        args.requests, args.repeat, args.warmup = 2000, 1, 100
    with tempfile.TemporaryDirectory(prefix="client-choice-") as tmp:
        results = experiment(args, Path(tmp))
    text = markdown(results, args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "client_choice.md").write_text(text)
    (args.out / "client_choice.json").write_text(json.dumps(results, indent=1) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
