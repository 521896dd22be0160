"""End to end: a real agent loop with the official SDK; the sessions API and report tell its story."""

from __future__ import annotations

import json
import time
from typing import Any

import anthropic
import httpx

from sidecar.report.commands import report_main
from sidecar.server.inprocess import RunningSidecar
from sidecar.testing.fake_upstream import FakeUpstream
from tests.conftest import API_KEY
from tests.waiting import SLACK_S

TOOLS: list[Any] = [
    {
        "name": "lookup_order",
        "description": "Find an order",
        "input_schema": {"type": "object", "properties": {}},
    },
    {"name": "refund", "description": "Refund", "input_schema": {"type": "object", "properties": {}}},
]
# Exact usage per call (the fake answers with these numbers), so cost can be checked by hand.
USAGE = {
    "input_tokens": 1000,
    "output_tokens": 200,
    "cache_read_input_tokens": 5000,
    "cache_creation": {"ephemeral_5m_input_tokens": 400, "ephemeral_1h_input_tokens": 0},
}
SLEEPS = [0.15, 0.30, 0.05]  # the "tools" of turns 1..3; turn 2's tool fails


def _warm_up(client: anthropic.Anthropic) -> None:
    """The SDK's first streamed call spends tens of ms importing and building its helpers; keep that
    one-off client cost out of the tool-latency measurement."""
    kwargs: Any = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "w"}],
        "extra_headers": {"x-session-id": "warm-up"},
    }
    client.messages.create(**kwargs)
    with client.messages.stream(**kwargs) as s:
        s.get_final_message()


def _agent(client: anthropic.Anthropic, session: str) -> None:
    messages: list[Any] = [{"role": "user", "content": "Refund order 42"}]
    headers = {"x-session-id": session, "x-fake-usage": json.dumps(USAGE), "x-app-name": "support"}
    for turn in range(4):
        tools = TOOLS if turn < 3 else TOOLS[:1]
        choice: Any = {"type": "any"} if turn < 3 else {"type": "none"}
        stream = turn % 2 == 1
        kwargs: Any = {
            "model": "claude-sonnet-4-5",
            "max_tokens": 100,
            "messages": messages,
            "tools": tools,
            "tool_choice": choice,
            "extra_headers": headers,
        }
        if stream:
            with client.messages.stream(**kwargs) as s:
                msg = s.get_final_message()
        else:
            msg = client.messages.create(**kwargs)
        messages.append({"role": "assistant", "content": [b.model_dump() for b in msg.content]})
        uses = [b for b in msg.content if b.type == "tool_use"]
        if not uses:
            return
        time.sleep(SLEEPS[turn])
        messages.append(
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": u.id, "content": "done", "is_error": turn == 1}
                    for u in uses
                ],
            }
        )


def test_agent_session_story(fake: FakeUpstream, sidecar: RunningSidecar, tmp_path) -> None:  # type: ignore[no-untyped-def]
    client = anthropic.Anthropic(base_url=sidecar.url, api_key=API_KEY, max_retries=0)
    _warm_up(client)
    _agent(client, "agent-1")
    sidecar.wait_events(4, session_id="agent-1")
    doc = httpx.get(sidecar.url + "/sidecar/v1/sessions/agent-1").json()
    assert doc["session_id"] == "agent-1" and doc["session_source"] == "header" and doc["app"] == "support"
    assert doc["model_calls"] == 4
    assert doc["tool_calls"] == 3
    assert doc["open"] is True
    # Sonnet 4.5 per call: 1000 x $3 + 200 x $15 + 5000 x $0.30 + 400 x $3.75 per million tokens.
    per_call = (1000 * 3 + 200 * 15 + 5000 * 0.30 + 400 * 3.75) / 1e6
    assert abs(doc["cost_usd"] - 4 * per_call) < 1e-9
    assert doc["input_tokens"] == 4000 and doc["cache_read_input_tokens"] == 20000
    assert [c["stream"] for c in doc["calls"]] == [False, True, False, True]
    tools = doc["tools"]
    assert sum(len(c["tool_uses"]) for c in doc["calls"]) == 3
    assert sum(v["count"] for v in tools.values()) == 3
    assert sum(v["errors"] for v in tools.values()) == 1
    # Each tool's latency is its true sleep plus the SDK's own time to parse the answer and build the
    # next request: a few ms on an idle machine, but a loaded CI machine can add hundreds (0.503 s was
    # seen for a 0.15 s sleep), so the upper bound only rules out gross errors. The exact arithmetic is
    # checked on a hand-driven clock in tests/core/test_tools.py.
    measured = [r for c in doc["calls"] for r in c["tool_results"]]
    assert [r["is_error"] for r in measured] == [False, True, False]
    for result, slept in zip(measured, SLEEPS, strict=True):
        assert slept <= result["latency_s"] < slept + SLACK_S
    assert abs(doc["tool_time_s"] - sum(r["latency_s"] for r in measured)) < 1e-9
    assert doc["model_time_s"] > 0
    listed = httpx.get(sidecar.url + "/sidecar/v1/sessions?order=cost&limit=5").json()["sessions"]
    assert listed[0]["session_id"] == "agent-1" and "calls" not in listed[0]
    missing = httpx.get(sidecar.url + "/sidecar/v1/sessions/nope")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"


def test_report_reads_the_same_store(fake: FakeUpstream, sidecar: RunningSidecar, capsys) -> None:  # type: ignore[no-untyped-def]
    client = anthropic.Anthropic(base_url=sidecar.url, api_key=API_KEY, max_retries=0)
    _agent(client, "agent-2")
    sidecar.wait_events(4, session_id="agent-2")
    code = report_main(["--store", sidecar.settings.store, "--json"])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    text = json.dumps(doc)
    assert "agent-2" in text


def test_sessions_grouped_without_any_header(fake: FakeUpstream, sidecar: RunningSidecar) -> None:
    client = anthropic.Anthropic(base_url=sidecar.url, api_key=API_KEY, max_retries=0)
    first = [{"role": "user", "content": "Plan my trip"}]
    client.messages.create(model="claude-haiku-4-5", max_tokens=20, system="Travel agent", messages=first)
    client.messages.create(
        model="claude-haiku-4-5",
        max_tokens=20,
        system="Travel agent",
        messages=[
            *first,
            {"role": "assistant", "content": "Where to?"},
            {"role": "user", "content": "Lisbon"},
        ],
    )
    events = sidecar.wait_events(2)
    assert len({e.session_id for e in events}) == 1
    assert events[0].session_source == "fingerprint"


def _main_and_subagent(sidecar: RunningSidecar) -> list[tuple[str | None, str | None]]:
    """Claude Code's main agent calls, spawns a subagent that calls twice, calls again; the agent ids
    each call sent, in order."""
    main = anthropic.Anthropic(
        base_url=sidecar.url,
        api_key=API_KEY,
        max_retries=0,
        default_headers={"x-session-id": "cc-agents", "x-claude-code-agent-id": "main-1"},
    )
    sub = main.with_options(
        default_headers={
            "x-session-id": "cc-agents",
            "x-claude-code-agent-id": "sub-7",
            "x-claude-code-parent-agent-id": "main-1",
        }
    )
    sent = [("main-1", None), ("sub-7", "main-1"), ("sub-7", "main-1"), ("main-1", None)]
    for client in (main, sub, sub, main):
        client.messages.create(
            model="claude-haiku-4-5", max_tokens=10, messages=[{"role": "user", "content": "q"}]
        )
    sidecar.wait_events(len(sent), session_id="cc-agents")
    return sent


def test_each_call_names_its_agent(fake: FakeUpstream, sidecar: RunningSidecar) -> None:
    sent = _main_and_subagent(sidecar)
    for request in fake.requests:  # the headers are Claude Code's business: forwarded as sent
        assert request.header("x-claude-code-agent-id") in ("main-1", "sub-7")
    doc = httpx.get(sidecar.url + "/sidecar/v1/sessions/cc-agents").json()
    assert [(c["agent_id"], c["parent_agent_id"]) for c in doc["calls"]] == sent
    assert [c["provider"] for c in doc["calls"]] == ["anthropic"] * 4


def test_a_session_lists_its_agents_and_providers(fake: FakeUpstream, sidecar: RunningSidecar) -> None:
    _main_and_subagent(sidecar)
    (row,) = httpx.get(sidecar.url + "/sidecar/v1/sessions").json()["sessions"]
    assert row["agent_ids"] == ["main-1", "sub-7"] and row["providers"] == ["anthropic"]
    doc = httpx.get(sidecar.url + "/sidecar/v1/sessions/cc-agents").json()
    assert doc["agent_ids"] == ["main-1", "sub-7"] and doc["providers"] == ["anthropic"]
