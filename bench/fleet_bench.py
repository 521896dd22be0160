"""Fleet heartbeat benchmark: N members on one fleet listener process, clients in other processes.

    python bench/fleet_bench.py            # 10,000 members, 10 s ping interval, 30 s window
    python bench/fleet_bench.py --quick    # 2,000 members, 1 s interval, 6 s window

For each mode — ``shared`` (the sidecar's one ping loop) and ``builtin`` (websockets' own keepalive: a
task and a sleep per connection) — it starts a server process (uvloop, pinned to CPU 0 when there are
two), connects the members from ``--client-procs`` client processes (pinned to the other CPU), waits one
interval, then measures for ``--window`` seconds: server CPU share, CPU per ping, RSS per member, RTT
p50/p99 (the last 64 pongs of every member, pooled), pongs missed and disconnects. Loopback only; the
soft file-descriptor limit is raised to the hard limit.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def raise_nofile(need: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(need, soft)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def pin(cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {cpu % (os.cpu_count() or 1)})


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.999999) - 1))]


# --- server process ---------------------------------------------------------------------------


async def serve(args: argparse.Namespace) -> None:
    from prometheus_client import CollectorRegistry
    from websockets.asyncio.server import ServerConnection
    from websockets.asyncio.server import serve as ws_serve

    from sidecar.fleet.registry import FleetRegistry
    from sidecar.fleet.server import FleetOptions, FleetServer, WsLink
    from sidecar.telemetry.metrics import declare_fleet_metrics

    registry = FleetRegistry(declare_fleet_metrics(CollectorRegistry()))
    base_rss = rss_bytes()
    if args.mode == "shared":
        server = FleetServer(
            registry, FleetOptions(port=0, ping_interval_s=args.interval, ping_timeout_s=args.timeout)
        )
        await server.start()
        port = server.port
    else:
        conns: set[ServerConnection] = set()
        closing: set[asyncio.Task[None]] = set()

        async def handler(conn: ServerConnection) -> None:
            link = WsLink(conn, closing)
            member, _ = registry.connect("bench", str(conn.id), link, time.time())
            conns.add(conn)
            try:
                async for _ in conn:
                    pass
            except Exception:
                pass
            finally:
                conns.discard(conn)
                registry.disconnect(member, link, "abnormal", time.time(), conn.close_code)

        ws = await ws_serve(
            handler,
            "127.0.0.1",
            0,
            ping_interval=args.interval,
            ping_timeout=args.timeout,
            compression=None,
            max_queue=4,
        )
        port = ws.sockets[0].getsockname()[1]
    print(json.dumps({"port": port}), flush=True)
    loop = asyncio.get_running_loop()
    marks: dict[str, float] = {}
    profiler = cProfile.Profile()
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
        if line in ("", "quit"):
            return
        if line == "mark":
            if args.profile:
                profiler.enable()
            pings = sum(m.pings for f in registry.fleets() for m in f.members.values())
            marks = {"cpu": time.process_time(), "wall": time.monotonic(), "pings": pings}
            print(json.dumps({"marked": True}), flush=True)
        elif line == "report":
            if args.profile:
                profiler.disable()
                profiler.dump_stats(args.profile)
            members = [m for f in registry.fleets() for m in f.members.values()]
            # Each member's latest RTT (what websockets' own `latency` holds), in both modes; the
            # shared loop also keeps the last 64 per member, pooled as `rtt_all_*`.
            pooled: list[float] = []
            rtts = [conn.latency for conn in conns] if args.mode == "builtin" else []
            for m in members:
                if m.rtts is not None and m.rtt_count:
                    pooled.extend(m.rtts[: min(m.rtt_count, 64)])
                    rtts.append(m.rtts[(m.rtt_count - 1) % 64])
            cpu, wall = time.process_time() - marks["cpu"], time.monotonic() - marks["wall"]
            connected = sum(m.connected for m in members)
            pings = sum(m.pings for m in members) - marks["pings"]
            report: dict[str, Any] = {
                "mode": args.mode,
                "connected": connected,
                "cpu_share_pct": round(100 * cpu / wall, 2),
                "window_s": round(wall, 1),
                "pings_in_window": pings if args.mode == "shared" else None,
                "cpu_us_per_member_per_interval": round(
                    1e6 * cpu / max(1, connected) / (wall / args.interval), 1
                ),
                "rss_mb": round(rss_bytes() / 1e6, 1),
                "rss_per_member_kb": round((rss_bytes() - base_rss) / max(1, connected) / 1024, 1),
                "rtt_p50_ms": round(1000 * (quantile(rtts, 0.5) or 0), 3),
                "rtt_p99_ms": round(1000 * (quantile(rtts, 0.99) or 0), 3),
                "rtt_all_p99_ms": round(1000 * (quantile(pooled, 0.99) or 0), 3) if pooled else None,
                "pongs_missed": sum(m.missed_pongs for m in members),
                "disconnects": sum(1 for m in members if not m.connected),
            }
            print(json.dumps(report), flush=True)


# --- client process ---------------------------------------------------------------------------


async def clients(args: argparse.Namespace) -> None:
    from websockets.asyncio.client import ClientConnection, connect

    sem = asyncio.Semaphore(args.concurrency)
    conns: list[ClientConnection] = []
    url = f"ws://127.0.0.1:{args.port}/sidecar/v1/fleet/connect?fleet=bench&member="

    async def one(i: int) -> None:
        async with sem:
            for _ in range(20):
                try:
                    conns.append(
                        await connect(url + f"p{args.offset}-{i}", ping_interval=None, compression=None)
                    )
                    return
                except OSError:
                    await asyncio.sleep(0.2)

    await asyncio.gather(*(one(i) for i in range(args.count)))
    print(json.dumps({"connected": len(conns)}), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)  # members answer pings until told to stop
    for ws in conns:
        ws.transport.abort()


# --- driver -----------------------------------------------------------------------------------


def spawn(role_args: list[str], cpu: int) -> subprocess.Popen[str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), *role_args, "--cpu", str(cpu)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)


def ask(proc: subprocess.Popen[str], command: str | None = None) -> dict[str, Any]:
    assert proc.stdin is not None and proc.stdout is not None
    if command is not None:
        proc.stdin.write(command + "\n")
        proc.stdin.flush()
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"process {proc.args} ended early")
    result: dict[str, Any] = json.loads(line)
    return result


def run_mode(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    server_args = [
        "--role",
        "server",
        "--mode",
        mode,
        "--interval",
        str(args.interval),
        "--timeout",
        str(args.timeout),
    ]
    if args.profile:
        server_args += ["--profile", f"{args.profile}.{mode}"]
    server = spawn(server_args, 0)
    port = ask(server)["port"]
    per = args.members // args.client_procs
    started = time.monotonic()
    procs = [
        spawn(
            [
                "--role",
                "clients",
                "--port",
                str(port),
                "--count",
                str(per),
                "--offset",
                str(i),
                "--concurrency",
                "100",
            ],
            1,
        )
        for i in range(args.client_procs)
    ]
    connected = sum(ask(p)["connected"] for p in procs)
    connect_s = time.monotonic() - started
    time.sleep(args.interval * 1.5)  # every member has had its first ping
    ask(server, "mark")
    time.sleep(args.window)
    report = ask(server, "report")
    report.update(
        members_requested=per * args.client_procs, clients_connected=connected, connect_s=round(connect_s, 1)
    )
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("stop\n")
        p.stdin.flush()
    for p in procs:
        p.wait(60)
    assert server.stdin is not None
    server.stdin.write("quit\n")
    server.stdin.flush()
    server.wait(60)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--role", choices=["driver", "server", "clients"], default="driver")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--client-procs", type=int, default=4)
    parser.add_argument("--modes", default="shared,builtin")
    parser.add_argument("--mode", default="shared")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--offset", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--cpu", type=int, default=0)
    parser.add_argument("--profile", default="", help="server: write cProfile stats of the window here")
    args = parser.parse_args()
    raise_nofile(2 * args.members + 1000)
    if args.role != "driver":
        pin(args.cpu)
        import uvloop

        uvloop.run(serve(args) if args.role == "server" else clients(args))
        return 0
    if args.quick:
        args.members, args.interval, args.timeout, args.window = 2000, 1.0, 1.0, 6.0
    print(
        f"# {args.members} members, interval {args.interval}s, timeout {args.timeout}s, window {args.window}s"
    )
    for mode in args.modes.split(","):
        print(json.dumps(run_mode(mode, args)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
