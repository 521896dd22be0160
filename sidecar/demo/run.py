"""``claude-sidecar demo``: the sidecar against the built-in fake upstream, with synthetic agent traffic.

No API key and no network: everything runs on 127.0.0.1. It prints where to look and a per-session
summary read back from the sidecar's own store.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from sidecar.demo import cache_story, subagents
from sidecar.demo.bedrock import DEMO_BEDROCK_KEY, bedrock_session
from sidecar.demo.evals import run_eval_loop
from sidecar.demo.fleet import alert_printer, demo_fleet_config, run_demo_fleet
from sidecar.errors import ConfigError
from sidecar.infra.listen import bind_tcp
from sidecar.report.commands import report_main
from sidecar.server.inprocess import RunningSidecar
from sidecar.settings import Settings
from sidecar.testing.fake_bedrock import FakeBedrock
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


async def _agent_session(
    http: aiohttp.ClientSession, url: str, n: int, rng: random.Random, deadline: float = math.inf
) -> None:
    """One multi-turn agent: model call → tool (sleeps) → model call with tool_result, a few times; no new
    turn once ``deadline`` (monotonic) has passed."""
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
        if time.monotonic() >= deadline:
            break
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
        story = asyncio.ensure_future(cache_story.clock_session(http, url, DEMO_KEY))
        agents = asyncio.ensure_future(subagents.subagent_session(http, url, DEMO_KEY))
        while time.monotonic() < deadline:
            batch = [_agent_session(http, url, n + i, rng, deadline) for i in range(3)]
            batch.append(bedrock_session(http, url, n + 3, rng, TOOLS, deadline))  # through /bedrock/
            await asyncio.gather(*batch)
            n += len(batch)
        await story
        await agents
    return n


DEFAULT_PORT = 8788
ALERT_MIN_DURATION_S = 15.0  # shorter, and the frozen member cannot fire and resolve its alert in time


def _pick_port(port: int | None) -> int:
    """The port asked for; else 8788 when it is free, else any free port (the demo needs no fixed one)."""
    if port is not None:
        return port
    try:
        bind_tcp("127.0.0.1", DEFAULT_PORT, "--port").close()
    except ConfigError:
        return 0
    return DEFAULT_PORT


async def _start(running: RunningSidecar) -> None:
    try:
        await asyncio.to_thread(running.start)
    except RuntimeError as exc:
        if isinstance(exc.__cause__, ConfigError):  # e.g. --port taken: its one line, not a traceback
            raise exc.__cause__ from None
        raise


async def _demo(
    port: int, duration_s: float, data_dir: Path, fakes: tuple[str, str], box: list[RunningSidecar]
) -> None:
    """Start the sidecar (into ``box``, so the caller stops it even when interrupted) and drive it for
    ``duration_s`` seconds in all: traffic and fleet, then a moment for the last alert to arrive."""
    async with alert_printer() as webhook:
        fleet_cfg = demo_fleet_config(fleet="voice", members=3, webhook_url=webhook)
        fake_url, bedrock_url = fakes
        settings = Settings(
            upstream_url=fake_url,
            bedrock_url=bedrock_url,
            bedrock_api_key=DEMO_BEDROCK_KEY,  # the fake Bedrock's: no AWS credentials needed
            bedrock_region="us-east-1",
            port=port,
            store=f"sqlite:///{data_dir}/events.db",
            policies=fleet_cfg["policies"],
            policy_env=fleet_cfg["policy_env"],
            response_cache="opt-in",  # the eval loop opts in; the agents do not
            cache_diagnostics="api",  # the API's own diagnosis beside the sidecar's
        )
        box.append(RunningSidecar(settings))
        await _start(box[0])
        sidecar = box[0]
        fleet = sidecar.sidecar.fleet
        assert fleet is not None
        print(f"console:                 {sidecar.admin_url}/ui/")
        print(f"fake Anthropic upstream: {fake_url}")
        print(f"fake Amazon Bedrock:     {bedrock_url}   (an agent calls it through {sidecar.url}/bedrock)")
        print(f"sidecar proxy:           {sidecar.url}   (ANTHROPIC_BASE_URL={sidecar.url})")
        print(f"metrics:                 {sidecar.url}/metrics")
        print(f"sessions:                {sidecar.url}/sidecar/v1/sessions?order=cost")
        print(f"fleet / alerts:          {sidecar.url}/sidecar/v1/fleet   {sidecar.url}/sidecar/v1/alerts")
        print(f"events store:            {data_dir}/events.db")
        print(f"driving synthetic agent sessions and a 3-member fleet for {duration_s:.0f} s ...")
        if duration_s < ALERT_MIN_DURATION_S:
            need = f"--duration {ALERT_MIN_DURATION_S:.0f}"
            print(f"(the dead-man alert needs {need} or more to fire and resolve)")
        print()
        started = time.monotonic()
        settle = min(1.5, duration_s / 4)  # the resolved notification needs a moment to arrive
        active_s = duration_s - settle
        traffic = asyncio.ensure_future(_traffic(sidecar.url, active_s))
        evals = asyncio.ensure_future(run_eval_loop(sidecar.url, DEMO_KEY))
        await run_demo_fleet(
            fleet.connect_url,
            fleet="voice",
            members=3,
            freeze_after_s=min(3.0, active_s / 6),
            freeze_for_s=active_s * 0.5,
            duration_s=active_s,
        )
        n = await traffic
        eval_run = await evals
        await asyncio.sleep(max(0.0, started + duration_s - time.monotonic()))
        print(f"\n{n} agent sessions done.")
        print(eval_run.line())


def run_demo(
    port: int | None = None,
    duration_s: float = 20.0,
    keep_running: bool | None = None,
    data_dir: str | None = None,
) -> int:
    """Sidecar + fake upstream + agents + a fleet whose frozen member fires and resolves a dead-man alert.

    Returns 0, or 130 when interrupted (Ctrl+C) before the end; either way the sidecar is stopped and a
    temporary data directory removed (``data_dir`` is kept). Raises ``ConfigError`` when ``port`` is taken.
    ``keep_running``: keep serving after the traffic until Ctrl+C; by default only on a terminal, so the
    console can be explored, while a pipe (CI, scripts) gets a command that ends.
    """
    if keep_running is None:
        keep_running = sys.stdin.isatty() and sys.stdout.isatty()
    keep = data_dir is not None
    path = Path(data_dir) if data_dir is not None else Path(tempfile.mkdtemp(prefix="sidecar-demo-"))
    path.mkdir(parents=True, exist_ok=True)
    box: list[RunningSidecar] = []
    code = 0
    try:
        timing = FakeConfig(first_token_delay_s=0.05, chunk_delay_s=0.01, deltas=6)
        with FakeUpstream(timing) as fake, FakeBedrock(timing, api_key=DEMO_BEDROCK_KEY) as bedrock:
            asyncio.run(_demo(_pick_port(port), duration_s, path, (fake.url, bedrock.url), box))
            box[0].sidecar.recorder.flush()
            print(cache_story.describe(box[0].sidecar.store.events(session_id=cache_story.SESSION)) + "\n")
            store_url = f"sqlite:///{path}/events.db"
            print(f"$ claude-sidecar report --store {store_url} --limit 5\n")
            report_main(["--store", store_url, "--limit", "5"])
            if keep_running:
                print(f"\nstill serving: console at {box[0].admin_url}/ui/ — Ctrl+C to stop", flush=True)
                while True:
                    time.sleep(3600)
    except KeyboardInterrupt:
        code = 0 if keep_running and box else 130
        print("\nstopping" if code == 0 else "\ninterrupted; stopping")
    finally:
        if box:
            box[0].stop()
        if keep:
            print(f"demo data kept in {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)
            print("demo data removed (pass --data-dir DIR to keep it)")
    return code
