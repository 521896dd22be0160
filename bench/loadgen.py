"""Closed-loop asyncio load generator (aiohttp client, uvloop), run as its own process.

``--concurrency`` workers each send a request, read the whole answer, and send the next. The first
``--warmup`` seconds are not measured (connections open, pools fill); then the measured window runs for
``--duration`` seconds or ``--max-requests`` requests, whichever ends first. It prints one line
``measuring`` on stdout when the window opens (so a caller can snapshot the proxy's CPU counters) and
one JSON line with the results when done::

    {"requests": 5000, "errors": 0, "duration_s": 5.0, "rps": 1000.0,
     "latency_ms": {"p50": .., "p90": .., "p99": .., "max": .., "mean": ..}, "ttfb_ms": {...} | null}

Latency is from just before sending to the end of the answer; TTFB to its first body bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
from dataclasses import dataclass, field
from time import perf_counter

import aiohttp
from workload import percentile, request_body, request_headers


@dataclass
class Run:
    """Shared state of the workers (one event loop, so no locks)."""

    url: str
    body: bytes
    headers: dict[str, str]
    measure_from: float
    measure_until: float
    max_requests: int
    started: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    ttfbs: list[float] = field(default_factory=list)
    last_done: float = 0.0

    def more(self, now: float) -> bool:
        # At least one measured request, even when the warm-up's own requests outlast the window (a
        # loaded machine, a short --smoke window): a phase never reports zero requests for that.
        return (now < self.measure_until or self.started == 0) and self.started < self.max_requests


async def _one(session: aiohttp.ClientSession, run: Run) -> tuple[float, float] | None:
    """(ttfb, total) in seconds for one request, or None when it failed."""
    t0 = perf_counter()
    async with session.post(run.url, data=run.body, headers=run.headers) as resp:
        first = True
        ttfb = 0.0
        async for _chunk in resp.content.iter_any():
            if first:
                ttfb, first = perf_counter() - t0, False
        if resp.status != 200:
            return None
    return ttfb, perf_counter() - t0


async def worker(session: aiohttp.ClientSession, run: Run) -> None:
    while run.more(perf_counter()):
        measured = perf_counter() >= run.measure_from
        if measured:
            run.started += 1
        try:
            result = await _one(session, run)
        except (aiohttp.ClientError, OSError, TimeoutError):
            result = None
            await asyncio.sleep(0.01)  # a refused connection must not become a hot loop
        if not measured:
            continue
        run.last_done = perf_counter()
        if result is None:
            run.errors += 1
        else:
            run.ttfbs.append(result[0])
            run.latencies.append(result[1])


def _summary(values: list[float]) -> dict[str, float]:
    ms = sorted(v * 1000.0 for v in values)
    keys = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "max": 100.0}
    out = {k: round(percentile(ms, q), 3) for k, q in keys.items()}
    out["mean"] = round(statistics.fmean(ms), 3) if ms else float("nan")
    return out


async def main_async(args: argparse.Namespace) -> dict[str, object]:
    now = perf_counter()
    run = Run(
        url=args.url,
        body=request_body(stream=args.stream),
        headers={**request_headers(args.ttfb_ms), **dict(args.header)},
        measure_from=now + args.warmup,
        measure_until=now + args.warmup + args.duration,
        max_requests=args.max_requests,
    )
    connector = aiohttp.TCPConnector(limit=args.concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False) as session:
        tasks = [asyncio.ensure_future(worker(session, run)) for _ in range(args.concurrency)]
        await asyncio.sleep(max(0.0, run.measure_from - perf_counter()))
        print("measuring", flush=True)
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=args.warmup + args.duration + 60)
    done = len(run.latencies) + run.errors
    elapsed = max(1e-9, run.last_done - run.measure_from)
    return {
        "requests": done,
        "errors": run.errors,
        "duration_s": round(elapsed, 3),
        "rps": round(done / elapsed, 1),
        "latency_ms": _summary(run.latencies),
        "ttfb_ms": _summary(run.ttfbs) if args.stream else None,
    }


def _header(raw: str) -> tuple[str, str]:
    """``NAME:VALUE`` → (lower-case name, value)."""
    name, sep, value = raw.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"--header wants NAME:VALUE, got {raw!r}")
    return name.strip().lower(), value.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--url", required=True, help="full URL, e.g. http://127.0.0.1:8788/v1/messages")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=0.5, help="unmeasured seconds first")
    parser.add_argument("--max-requests", type=int, default=1_000_000)
    parser.add_argument("--stream", action="store_true", help='send "stream": true')
    parser.add_argument("--ttfb-ms", type=int, default=0, help="ask the bench upstream for this delay")
    parser.add_argument(
        "--header",
        type=_header,
        action="append",
        default=[],
        metavar="NAME:VALUE",
        help="override a request header (repeatable)",
    )
    args = parser.parse_args()
    import uvloop

    result = uvloop.run(main_async(args))
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
