"""Soak: a bounded run of mixed streaming / tool-using agent sessions at steady concurrency.

Shows that the sidecar's memory stays flat and that no event is lost: every request the load sent
is in the SQLite store after a graceful SIGTERM. Everything runs on 127.0.0.1 and stops by itself.

    python bench/soak.py                 # 10 minutes, 32 concurrent agents
    python bench/soak.py --minutes 1     # a short run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from sidecar.demo.run import content_from_sse

HERE = Path(__file__).resolve().parent
TOOLS = [
    {"name": n, "description": "a tool", "input_schema": {"type": "object", "properties": {}}}
    for n in ("search", "lookup", "refund")
]
# Sessions come back (long-lived conversations): per-session state is bounded by design, so memory
# that keeps growing across the run would be a leak.
SESSIONS = 2_000
SYSTEM = "You are a support agent for a large retailer. Be exact. " * 120


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def _agent(http: aiohttp.ClientSession, url: str, n: int, rng: random.Random, sent: list[int]) -> None:
    """One session: a few model calls, tools in between (short sleeps), streaming on odd turns."""
    headers = {
        "x-api-key": "sk-ant-soak",
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
        "x-session-id": f"soak-{n % SESSIONS}",
        "x-app-name": f"app-{n % 4}",
    }
    messages: list[dict[str, Any]] = [{"role": "user", "content": f"case {n}: please help"}]
    turns = rng.randint(2, 5)
    for turn in range(turns):
        last = turn == turns - 1
        body = {
            "model": ("claude-sonnet-4-5", "claude-haiku-4-5")[n % 2],
            "max_tokens": 200,
            "system": SYSTEM,
            "messages": messages,
            "tools": TOOLS,
            "tool_choice": {"type": "none" if last else "any"},
            "stream": turn % 2 == 1,
        }
        sent[0] += 1
        async with http.post(url + "/v1/messages", headers=headers, data=json.dumps(body)) as resp:
            raw = await resp.read()
        if resp.status != 200:
            return
        content = _content(raw, bool(body["stream"]))
        messages.append({"role": "assistant", "content": content})
        uses = [b for b in content if b.get("type") == "tool_use"]
        if not uses:
            return
        await asyncio.sleep(rng.uniform(0.01, 0.1))
        messages.append(
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": u["id"], "content": "ok"} for u in uses],
            }
        )


def _content(raw: bytes, stream: bool) -> list[dict[str, Any]]:
    if not stream:
        return list(json.loads(raw).get("content", []))
    return [dict(b) for b in content_from_sse(raw)]


async def _load(
    url: str, seconds: float, concurrency: int, pid: int, samples: list[tuple[float, int]]
) -> int:
    sent = [0]
    deadline = time.monotonic() + seconds
    start = time.monotonic()
    counter = iter(range(10**9))

    async def worker(seed: int) -> None:
        rng = random.Random(seed)
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                await _agent(http, url, next(counter), rng, sent)

    async def sampler() -> None:
        while time.monotonic() < deadline:
            samples.append((time.monotonic() - start, _rss_kb(pid)))
            await asyncio.sleep(5)

    await asyncio.gather(sampler(), *(worker(i) for i in range(concurrency)))
    return sent[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="sidecar-soak-"))
    fake_port, port = _port(), _port()
    fake = subprocess.Popen(
        [sys.executable, "-m", "sidecar.testing.fake_upstream", "--port", str(fake_port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert fake.stdout is not None
    fake.stdout.readline()  # its URL: it is listening
    env = {
        **os.environ,
        "SIDECAR_UPSTREAM_URL": f"http://127.0.0.1:{fake_port}",
        "SIDECAR_PORT": str(port),
        "SIDECAR_FLEET_PORT": "0",
        "SIDECAR_STORE": f"sqlite:///{work}/events.db",
        "SIDECAR_LOG_LEVEL": "warning",
    }
    sidecar = subprocess.Popen(
        [sys.executable, "-m", "sidecar.cli", "serve"],
        env=env,
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.05)
        samples: list[tuple[float, int]] = []
        seconds = args.minutes * 60
        sent = asyncio.run(_load(f"http://127.0.0.1:{port}", seconds, args.concurrency, sidecar.pid, samples))
        sidecar.send_signal(signal.SIGTERM)
        code = sidecar.wait(60)
    finally:
        for proc in (sidecar, fake):
            if proc.poll() is None:
                proc.kill()
    with sqlite3.connect(work / "events.db") as db:
        stored = db.execute("SELECT count(*) FROM events").fetchone()[0]
        sessions = db.execute("SELECT count(DISTINCT session_id) FROM events").fetchone()[0]
    rss = [kb for _, kb in samples]
    warm = rss[len(rss) // 4 :] or rss  # after the first quarter: caches and pools are warm
    doc = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "minutes": args.minutes,
        "concurrency": args.concurrency,
        "requests_sent": sent,
        "events_stored": stored,
        "sessions": sessions,
        "lost": sent - stored,
        "exit_code": code,
        "rss_mb_first": rss[0] / 1024 if rss else None,
        "rss_mb_after_warmup_min": min(warm) / 1024 if warm else None,
        "rss_mb_after_warmup_max": max(warm) / 1024 if warm else None,
        "rss_mb_last": rss[-1] / 1024 if rss else None,
        "rss_samples": samples,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.json").write_text(json.dumps(doc, indent=1))
    lines = [
        "# Soak run",
        "",
        f"- {doc['date']}: {args.minutes:g} min, {args.concurrency} concurrent agents "
        "(mixed streaming / tool use), sidecar with SQLite store, metrics and logs on, "
        "project fake upstream on 127.0.0.1",
        f"- requests sent: {sent:,}; events stored: {stored:,} ({sessions:,} sessions); "
        f"lost: {sent - stored}; exit code after SIGTERM: {code}",
        f"- RSS: first sample {doc['rss_mb_first']:.1f} MB; after warm-up "
        f"{doc['rss_mb_after_warmup_min']:.1f} to {doc['rss_mb_after_warmup_max']:.1f} MB; "
        f"last {doc['rss_mb_last']:.1f} MB",
    ]
    (args.out / "soak.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if sent == stored and code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
