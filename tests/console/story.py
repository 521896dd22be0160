"""A small, realistic day on a sidecar for the console tests: agent sessions with tool calls over three
apps and models (the official SDK as client, the project's fake upstream), Claude Code sub-agents on a
subscription, a session whose system prompt carries the time (its cache misses), a failed call, a refused
call, a fleet with members and dead-man checks. Exact usage per call (``x-fake-usage``) keeps the agents'
costs checkable; the clock session's usage is the fake upstream's own prompt-cache simulation.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic
import httpx
from websockets.sync.client import ClientConnection, connect

from sidecar.server.inprocess import RunningSidecar
from sidecar.settings import Settings
from sidecar.testing.fake_upstream import FakeUpstream
from tests.conftest import API_KEY

TOOLS: list[Any] = [
    {
        "name": "lookup_order",
        "description": "Find an order",
        "input_schema": {"type": "object", "properties": {}},
    },
    {
        "name": "refund",
        "description": "Refund an order",
        "input_schema": {"type": "object", "properties": {}},
    },
]
APPS = ("support-bot", "voice-agent", "batch-jobs")
MODELS = ("claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-6")
STORY_SESSION = "checkout-7f3a"  # the session whose page is checked call by call
AGENTS_SESSION = "research-c41d"  # a main agent and two sub-agents
MAIN_AGENT = "main-5e0c"
SUBSCRIPTION = "5h=0.62,7d=0.35"  # the agents' Claude Code plan: its usage windows (R-RL-1)
CLOCK_SESSION = "orders-2b7e"  # the time in its system prompt: every call after the first misses the cache
CLOCK_APP = "order-assistant"
CLOCK_PROMPT = "You are the shop's order assistant. Answer from the order history only. " * 80
DIAGNOSIS_BETA = "cache-diagnosis-2026-04-07"  # the client asks the API for its own diagnosis too
TOOL_SLEEPS = (0.15, 0.30, 0.05)  # the tools of its turns 1..3; turn 2's tool fails
BUDGETS = {
    "defaults": {"session_max_usd": 2.0, "session_max_tool_calls": 40},
    "apps": {"batch-jobs": {"session_max_model_calls": 3, "app_max_usd_per_day": 5.0}},
}


def usage(i: int, turn: int = 0) -> dict[str, Any]:
    """Agent ``i``'s usage at ``turn``: each turn reads all the previous turn cached and writes its new
    part, as a well-cached loop does (so the cache diagnosis calls it a hit)."""
    write = 300 + 20 * i
    return {
        "input_tokens": 800 + 150 * i,
        "output_tokens": 120 + 40 * i,
        "cache_read_input_tokens": 4000 + 500 * i + turn * write,
        "cache_creation": {"ephemeral_5m_input_tokens": write, "ephemeral_1h_input_tokens": 0},
    }


def settings(tmp: Path, fake_url: str, **overrides: Any) -> Settings:
    checks = [
        {"name": "voice-members", "fleet": "voice", "grace": "1s"},
        {"name": "voice-size", "fleet": "voice", "min_members": 3, "grace": "1h"},
        {"name": "nightly-eval", "period": "1d", "grace": "1h"},
    ]
    env = {"SIDECAR_FLEET_PORT": "0", "SIDECAR_FLEET_PING_INTERVAL": "0.5", "SIDECAR_FLEET_PING_TIMEOUT": "2"}
    return Settings(
        upstream_url=fake_url,
        store=f"sqlite:///{tmp}/events.db",
        port=0,
        policies={"checks": checks, "budgets": BUDGETS},
        policy_env=env,
        **overrides,
    )


def agent(
    client: anthropic.Anthropic,
    session: str,
    app: str,
    model: str,
    *,
    turns: int,
    i: int,
    sleeps: tuple[float, ...] = (),
    extra: dict[str, str] | None = None,
) -> list[str]:
    """A tool-using agent loop: each turn asks for a tool, runs it, sends its result; the last turn ends.
    Returns the upstream request ids of its calls."""
    ids: list[str] = []
    messages: list[Any] = [{"role": "user", "content": f"Customer {i} wants a refund for order {40 + i}."}]
    headers = {
        "x-session-id": session,
        "x-app-name": app,
        "x-fake-first-token-delay-ms": "60",
        "x-fake-chunk-delay-ms": "10",
        **(extra or {}),
    }
    for turn in range(turns):
        last = turn == turns - 1
        kwargs: Any = {
            "model": model,
            "max_tokens": 200,
            "messages": messages,
            "tools": TOOLS,
            "tool_choice": {"type": "none"} if last else {"type": "any"},
            "extra_headers": {**headers, "x-fake-usage": json.dumps(usage(i, turn))},
            "system": "You are a careful support agent. Follow the refund policy exactly.",
        }
        if turn % 2 == 1:
            with client.messages.stream(**kwargs) as stream:
                msg = stream.get_final_message()
                ids.append(stream.request_id or "")
        else:
            msg = client.messages.create(**kwargs)
            ids.append(msg._request_id or "")
        messages.append({"role": "assistant", "content": [b.model_dump() for b in msg.content]})
        uses = [b for b in msg.content if b.type == "tool_use"]
        if last or not uses:
            return ids
        time.sleep(sleeps[turn] if turn < len(sleeps) else 0.02 + 0.03 * (i % 3))
        messages.append(
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": u.id,
                        "content": "done",
                        "is_error": sleeps != () and turn == 1,
                    }
                    for u in uses
                ],
            }
        )
    return ids


def with_subagents(client: anthropic.Anthropic) -> dict[str, tuple[str, str | None]]:
    """A session whose main agent hands work to two sub-agents running side by side (Claude Code's agent
    headers on each call). Returns request id -> (agent id, parent agent id) for every call."""
    agents: dict[str, tuple[str, str | None]] = {}

    def run(agent_id: str, parent: str | None, i: int, turns: int) -> None:
        extra = {"x-claude-code-agent-id": agent_id, "x-fake-unified-ratelimit": SUBSCRIPTION}
        if parent:
            extra["x-claude-code-parent-agent-id"] = parent
        ids = agent(client, AGENTS_SESSION, "research", MODELS[i % 2], turns=turns, i=i, extra=extra)
        agents.update(dict.fromkeys(ids, (agent_id, parent)))

    run(MAIN_AGENT, None, 0, 2)
    with ThreadPoolExecutor(2) as pool:
        subs = [("explore-docs", MAIN_AGENT, 1, 3), ("check-tests", MAIN_AGENT, 2, 2)]
        list(pool.map(lambda a: run(*a), subs))
    run(MAIN_AGENT, None, 3, 1)
    return agents


def clock_session(client: anthropic.Anthropic, calls: int = 3) -> None:
    """A session whose system prompt ends with the current time (the usual cache bug): the sidecar's
    planner marks the prompt cacheable, the fake upstream caches it, and each new time writes it again.
    The client opts in to the API's own diagnosis, naming its previous answer."""
    previous: str | None = None
    headers = {"x-session-id": CLOCK_SESSION, "x-app-name": CLOCK_APP, "anthropic-beta": DIAGNOSIS_BETA}
    for n in range(calls):
        msg = client.messages.create(
            model=MODELS[0],
            max_tokens=100,
            system=f"{CLOCK_PROMPT}\nCurrent time: 2026-11-20T10:0{n}:{7 * n:02}Z",
            messages=[{"role": "user", "content": "Where is order 1042?"}],
            extra_headers=headers,
            extra_body={"diagnostics": {"previous_message_id": previous}},
        )
        previous = msg.id


def drive(url: str) -> dict[str, tuple[str, str | None]]:
    """The traffic: the story session, a session with sub-agents, seven more sessions, the clock session,
    a failed call and a refused one. Returns the sub-agent session's agents by request id."""
    client = anthropic.Anthropic(base_url=url, api_key=API_KEY, max_retries=0)
    agent(client, STORY_SESSION, "support-bot", MODELS[0], turns=4, i=2, sleeps=TOOL_SLEEPS)
    for i in range(7):
        agent(client, f"sess-{i:02d}-{'abcdefg'[i]}9e1", APPS[i % 3], MODELS[i % 3], turns=2 + i % 2, i=i)
    with contextlib.suppress(anthropic.APIStatusError):  # overloaded: a failed call of its session
        headers = {"x-session-id": "sess-00-a9e1", "x-app-name": APPS[0], "x-fake-scenario": "error-529"}
        hello: Any = [{"role": "user", "content": "hi"}]
        client.messages.create(model=MODELS[1], max_tokens=10, messages=hello, extra_headers=headers)
    with contextlib.suppress(anthropic.RateLimitError):  # batch-jobs allows 3 model calls: the 4th is refused
        agent(client, "batch-refused-1", "batch-jobs", MODELS[2], turns=4, i=5)
    clock_session(client)
    return with_subagents(client)


@dataclass
class Story:
    sidecar: RunningSidecar
    agents: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    members: dict[str, ClientConnection] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.sidecar.admin_url

    def _get(self, path: str, params: dict[str, Any]) -> httpx.Response:
        token = self.sidecar.settings.admin_token
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return httpx.get(self.url + path, params=params, headers=headers, timeout=10)

    def get(self, path: str, **params: Any) -> Any:
        return self._get(path, params).raise_for_status().json()

    def get_status(self, path: str, **params: Any) -> int:
        return self._get(path, params).status_code


@contextmanager
def running_story(tmp: Path, fake: FakeUpstream, **overrides: Any) -> Iterator[Story]:
    """A sidecar with the story's traffic recorded, three fleet members (one gone) and a check-in."""
    with ExitStack() as stack:
        sidecar = RunningSidecar(settings(tmp, fake.url, **overrides)).start()
        stack.callback(sidecar.stop)
        story = Story(sidecar, drive(sidecar.url))
        assert sidecar.sidecar.fleet is not None
        for n in (1, 2, 3):
            url = f"{sidecar.sidecar.fleet.connect_url}?fleet=voice&member=voice-agent-{n}"
            ws = stack.enter_context(connect(url))
            story.members[f"voice-agent-{n}"] = ws
        story.members["voice-agent-3"].close_socket()  # lost without a goodbye: fires after its grace
        httpx.post(sidecar.admin_url + "/sidecar/v1/checkins/nightly-eval").raise_for_status()
        sidecar.wait_events(37)  # every call above, the refused one included
        yield story
