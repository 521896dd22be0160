"""``claude-sidecar demo``: the sidecar against the built-in fake upstream, with synthetic agent traffic.

No API key and no network: everything runs on 127.0.0.1. It prints where to look and a per-session
summary read back from the sidecar's own store.
"""

from __future__ import annotations

import asyncio
import json
import random
import tempfile
import time
from pathlib import Path

import aiohttp

from sidecar.demo.fleet import alert_printer, demo_fleet_config, run_demo_fleet
from sidecar.report.commands import report_main
from sidecar.server.inprocess import RunningSidecar
from sidecar.settings import Settings
from sidecar.testing.fake_upstream import FakeConfig, FakeUpstream

DEMO_KEY = "sk-ant-demo-not-a-real-key"
TOOLS = [
    {
        "name": "search_orders",
        "description": "Find orders",
        "input_schema": {"type": "object", "properties": {}},
    },
    {
        "name": "refund",
        "description": "Refund an order",
        "input_schema": {"type": "object", "properties": {}},
    },
]
MODELS = ("claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-6")


async def _agent_session(http: aiohttp.ClientSession, url: str, n: int, rng: random.Random) -> None:
    """One multi-turn agent: model call → tool (sleeps) → model call with tool_result, a few times."""
    model = MODELS[n % len(MODELS)]
    app = ("support-bot", "voice-agent", "batch-jobs")[n % 3]
    headers = {
        "x-api-key": DEMO_KEY,
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
        "x-session-id": f"demo-{n:03d}",
        "x-app-name": app,
    }
    messages: list[dict[str, object]] = [{"role": "user", "content": f"Customer {n} wants a refund."}]
    system = "You are a careful support agent. Follow the refund policy exactly. " * 300  # cacheable
    for turn in range(rng.randint(2, 4)):
        body = {
            "model": model,
            "max_tokens": 200,
            "system": system,
            "messages": messages,
            "tools": TOOLS,
            "stream": turn % 2 == 0,
        }
        async with http.post(url + "/v1/messages", headers=headers, data=json.dumps(body)) as resp:
            raw = await resp.read()
        content = content_from_sse(raw) if body["stream"] else json.loads(raw).get("content", [])
        tool_uses = [b for b in content if b.get("type") == "tool_use"]
        messages.append({"role": "assistant", "content": content})
        if not tool_uses:
            break
        await asyncio.sleep(rng.uniform(0.05, 0.4))  # the "tool" runs
        results = [{"type": "tool_result", "tool_use_id": b["id"], "content": "ok"} for b in tool_uses]
        messages.append({"role": "user", "content": results})


def content_from_sse(raw: bytes) -> list[dict[str, object]]:
    """The content blocks of a recorded Messages stream (tool_use inputs left empty): for sample agents."""
    blocks: dict[int, dict[str, object]] = {}
    for line in raw.split(b"\n"):
        if line.startswith(b"data: "):
            doc = json.loads(line[6:])
            if doc.get("type") == "content_block_start":
                block = dict(doc["content_block"])
                if block.get("type") == "tool_use":
                    block["input"] = {}
                blocks[doc["index"]] = block
    return [blocks[i] for i in sorted(blocks)]


async def _traffic(url: str, duration_s: float, seed: int = 7) -> int:
    rng = random.Random(seed)
    deadline = time.monotonic() + duration_s
    n = 0
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            batch = [_agent_session(http, url, n + i, rng) for i in range(4)]
            await asyncio.gather(*batch)
            n += len(batch)
    return n


async def _demo(port: int, duration_s: float, data_dir: Path, fake_url: str) -> RunningSidecar:
    async with alert_printer() as webhook:
        fleet_cfg = demo_fleet_config(fleet="voice", members=3, webhook_url=webhook)
        settings = Settings(
            upstream_url=fake_url,
            port=port,
            store=f"sqlite:///{data_dir}/events.db",
            policies=fleet_cfg["policies"],
            policy_env=fleet_cfg["policy_env"],
        )
        sidecar = await asyncio.to_thread(RunningSidecar(settings).start)
        fleet = sidecar.sidecar.fleet
        assert fleet is not None
        print(f"fake Anthropic upstream: {fake_url}")
        print(f"sidecar proxy:           {sidecar.url}   (ANTHROPIC_BASE_URL={sidecar.url})")
        print(f"metrics:                 {sidecar.url}/metrics")
        print(f"sessions:                {sidecar.url}/sidecar/v1/sessions?order=cost")
        print(f"fleet / alerts:          {sidecar.url}/sidecar/v1/fleet   {sidecar.url}/sidecar/v1/alerts")
        print(f"events store:            {data_dir}/events.db")
        print(f"driving synthetic agent sessions and a 3-member fleet for {duration_s:.0f} s ...\n")
        traffic = asyncio.ensure_future(_traffic(sidecar.url, duration_s))
        await run_demo_fleet(
            fleet.connect_url,
            fleet="voice",
            members=3,
            freeze_after_s=min(3.0, duration_s / 6),
            freeze_for_s=max(duration_s * 0.5, 8.0),
            duration_s=duration_s,
        )
        n = await traffic
        await asyncio.sleep(1.5)  # let the resolved notification arrive
        print(f"\n{n} agent sessions done.")
        return sidecar


def run_demo(port: int = 8788, duration_s: float = 20.0, keep_running: bool = False) -> int:
    """Sidecar + fake upstream + agents + a fleet whose frozen member fires and resolves a dead-man alert."""
    data_dir = Path(tempfile.mkdtemp(prefix="sidecar-demo-"))
    with FakeUpstream(FakeConfig(first_token_delay_s=0.05, chunk_delay_s=0.01, deltas=6)) as fake:
        sidecar = asyncio.run(_demo(port, duration_s, data_dir, fake.url))
        try:
            sidecar.sidecar.recorder.flush()
            store_url = f"sqlite:///{data_dir}/events.db"
            print(f"$ claude-sidecar report --store {store_url} --limit 5\n")
            report_main(["--store", store_url, "--limit", "5"])
            if keep_running:
                print("\nstill serving; Ctrl+C to stop")
                while True:
                    time.sleep(3600)
        except KeyboardInterrupt:
            pass
        finally:
            sidecar.stop()
    return 0
