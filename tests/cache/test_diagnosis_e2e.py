"""Why the cache missed, through a real sidecar: the official SDK → sidecar → fake upstream (SPEC R-CD).

Each reason is built from a real sequence of requests. Time is a controllable clock shared by the fake
upstream (which ages its cache entries with it) and the sidecar (which measures idle time with it).
Costs are checked against a hand calculation: Sonnet 4.5 is $3 input, $3.75 5-minute write, $0.30 read per
million tokens; Opus 4.1 is $15, $18.75 and $1.50.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from sidecar.core.events import CallEvent
from sidecar.server.inprocess import RunningSidecar
from sidecar.settings import Settings
from sidecar.testing.fake_upstream import FakeConfig, FakeUpstream
from tests.conftest import API_KEY
from tests.metrics_util import sample

MODEL, OTHER_MODEL = "claude-sonnet-4-5", "claude-opus-4-1"
P_IN, P_W5, P_READ = 3.00, 3.75, 0.30
O_W5, O_READ = 18.75, 1.50
BASE = "You are the billing assistant of a small bookshop; cite the policy section you rely on. " * 60
# The fake prices a text block at ceil(len(canonical JSON) / 4); a system block's JSON is
# '{"text":"<text>","type":"text"}', 25 characters more than its (ASCII, escape-free) text.
TOOLS: Any = [
    {"name": "search", "description": "Search the catalogue. " * 120, "input_schema": {"type": "object"}},
    {"name": "order", "description": "Look up an order. " * 120, "input_schema": {"type": "object"}},
]


def block_tokens(text: str) -> int:
    return (len(text) + 25 + 3) // 4


class Clock:
    """Wall and monotonic time with a shared offset a test can move forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def wall(self) -> float:
        return time.time() + self.offset

    def mono(self) -> float:
        return time.monotonic() + self.offset


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fake(clock: Clock) -> Iterator[FakeUpstream]:
    with FakeUpstream(FakeConfig(clock=clock.mono)) as upstream:
        yield upstream


@pytest.fixture
def start(tmp_path: Path, fake: FakeUpstream, clock: Clock) -> Iterator[Callable[..., RunningSidecar]]:
    running: list[RunningSidecar] = []

    def make(**overrides: Any) -> RunningSidecar:
        settings = Settings(
            upstream_url=fake.url, store=f"sqlite:///{tmp_path}/events.db", port=0, **overrides
        )
        sidecar = RunningSidecar(settings, clock=clock.wall).start()
        running.append(sidecar)
        return sidecar

    yield make
    for sidecar in running:
        sidecar.stop()


def client(sidecar: RunningSidecar) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=sidecar.url, api_key=API_KEY, max_retries=0)


def ask(sidecar: RunningSidecar, session: str, system: Any = BASE, **kw: Any) -> Any:
    params: dict[str, Any] = {"model": kw.pop("model", MODEL), "max_tokens": 20, "system": system}
    params["messages"] = kw.pop("messages", [{"role": "user", "content": "Where is my order?"}])
    headers = {"x-session-id": session, **kw.pop("extra_headers", {})}
    return client(sidecar).messages.create(**params, **kw, extra_headers=headers)


def events(sidecar: RunningSidecar, session: str, count: int) -> list[CallEvent]:
    found = sidecar.wait_events(count, session_id=session)
    assert len(found) == count
    return found


def test_a_timestamp_in_the_system_prompt_is_named_with_its_position_and_cost(
    start: Callable[..., RunningSidecar],
) -> None:
    sidecar = start()
    first, second = f"{BASE}Now: 2026-11-20T10:00:00Z.", f"{BASE}Now: 2026-11-20T10:00:07Z."
    ask(sidecar, "ts", first)
    ask(sidecar, "ts", second)
    ask(sidecar, "ts", second)
    one, two, three = events(sidecar, "ts", 3)
    assert one.cache_outcome == "write" and one.cache_miss_reason is None
    assert two.cache_outcome == "miss" and two.cache_miss_reason == "system_changed"
    at = len(BASE) + len("Now: ")
    assert two.cache_miss_detail == f"system block 0 changed at char {at:,} (digit run, timestamp-like)"
    tokens = block_tokens(first)
    assert two.usage.cache_read_input_tokens == 0 and two.usage.cache_creation_input_tokens == tokens
    assert two.cache_missed_tokens == tokens
    # Written again at the 5-minute rate instead of read: (3.75 - 0.30) per million tokens.
    assert two.cache_miss_cost_usd == pytest.approx(tokens * (P_W5 - P_READ) / 1e6, abs=1e-6)
    assert three.cache_outcome == "hit" and three.cache_miss_cost_usd is None


def test_reordered_added_and_edited_tools(start: Callable[..., RunningSidecar]) -> None:
    sidecar = start()
    reordered = [TOOLS[1], TOOLS[0]]
    added = [*reordered, {"name": "refund", "input_schema": {"type": "object"}}]
    edited = [{**added[0], "description": "Look up an order by number. " * 100}, *added[1:]]
    for tools in (TOOLS, reordered, added, edited):
        ask(sidecar, "tools", tools=tools)
    _, two, three, four = events(sidecar, "tools", 4)
    assert (two.cache_miss_reason, two.cache_miss_detail) == ("tools_changed", "tools reordered")
    assert (three.cache_miss_reason, three.cache_miss_detail) == ("tools_changed", 'tool "refund" added')
    assert (four.cache_miss_reason, four.cache_miss_detail) == ("tools_changed", 'tool "order" edited')
    assert all(e.cache_missed_tokens and e.cache_missed_tokens > 0 for e in (two, three, four))


def test_a_model_switch_is_priced_at_the_new_models_rates(start: Callable[..., RunningSidecar]) -> None:
    sidecar = start()
    ask(sidecar, "model")
    ask(sidecar, "model", model=OTHER_MODEL)
    _, two = events(sidecar, "model", 2)
    assert two.cache_miss_reason == "model_changed"
    assert two.cache_miss_detail == f"model {MODEL} → {OTHER_MODEL}"
    tokens = block_tokens(BASE)
    assert two.cache_missed_tokens == tokens
    assert two.cache_miss_cost_usd == pytest.approx(tokens * (O_W5 - O_READ) / 1e6, abs=1e-6)


def conversation(first_user: str, turns: int) -> list[dict[str, Any]]:
    """A history whose newest user block carries the marker, as agent harnesses send it."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": first_user}]
    for i in range(turns):
        messages.append({"role": "assistant", "content": f"Answer {i}: " + "details " * 150})
        messages.append({"role": "user", "content": [{"type": "text", "text": f"Question {i + 1}?"}]})
    messages[-1]["content"][-1]["cache_control"] = {"type": "ephemeral"}
    return messages


def test_an_edited_history_names_the_first_edited_message(start: Callable[..., RunningSidecar]) -> None:
    sidecar = start()
    ask(sidecar, "hist", messages=conversation("Hello, I need help with order 1.", 3))
    grown = conversation("Hello, I need help with order 1.", 4)
    ask(sidecar, "hist", messages=grown)
    compacted = conversation("Summary of the conversation so far: orders.", 1)
    ask(sidecar, "hist", messages=compacted)
    _, two, three = events(sidecar, "hist", 3)
    assert two.cache_outcome == "hit" and two.usage.cache_read_input_tokens > block_tokens(BASE)
    assert three.cache_miss_reason == "messages_changed"
    assert three.cache_miss_detail == "message 0 edited (history rewritten: 9 → 3 messages)"
    # What the previous call had cached beyond the system prompt, read no more.
    cached = two.usage.cache_read_input_tokens + two.usage.cache_creation_input_tokens
    assert (
        three.cache_missed_tokens
        == min(cached, three.usage.total_input) - three.usage.cache_read_input_tokens
    )


def test_a_breakpoint_moved_past_the_lookback(start: Callable[..., RunningSidecar]) -> None:
    sidecar = start()
    ask(sidecar, "far", messages=conversation("Hello.", 3))  # marker on message 6
    ask(sidecar, "far", messages=conversation("Hello.", 14))  # the same history, marker on message 28
    _, two = events(sidecar, "far", 2)
    assert two.cache_miss_reason == "breakpoint_moved"
    assert two.cache_miss_detail == (
        "breakpoint moved from message 6 to message 28, more than 20 blocks on "
        "(past the API's 20-block lookback)"
    )
    assert two.usage.cache_read_input_tokens == block_tokens(BASE)  # only the system prompt was read


def test_idle_past_the_ttl_then_an_eviction(
    start: Callable[..., RunningSidecar], fake: FakeUpstream, clock: Clock
) -> None:
    sidecar = start()
    ask(sidecar, "idle")
    clock.offset += 400  # 6 minutes 40 seconds: the 5-minute entry is gone
    ask(sidecar, "idle")
    fake.evict_cache()  # same prefix, well inside the TTL, yet not in the cache
    ask(sidecar, "idle")
    _, two, three = events(sidecar, "idle", 3)
    assert (two.cache_miss_reason, two.cache_miss_detail) == ("ttl_expired", "idle 6m40s > ttl 5m")
    assert three.cache_miss_reason == "evicted"
    assert three.cache_miss_detail is not None and three.cache_miss_detail.startswith("same prefix, idle ")
    tokens = block_tokens(BASE)
    for e in (two, three):
        assert e.cache_missed_tokens == tokens
        assert e.cache_miss_cost_usd == pytest.approx(tokens * (P_W5 - P_READ) / 1e6, abs=1e-6)


def test_short_prompts_and_errors_get_no_miss(start: Callable[..., RunningSidecar]) -> None:
    sidecar = start()
    ask(sidecar, "short", "Be brief.")
    ask(sidecar, "short", "Be brief.")
    with pytest.raises(anthropic.APIStatusError):
        ask(sidecar, "short", "Be brief.", extra_headers={"x-fake-scenario": "error-529"})
    one, two, three = events(sidecar, "short", 3)
    assert one.cache_outcome == two.cache_outcome == "none"
    assert three.status == 529 and three.cache_outcome is None


def test_api_mode_asks_the_api_and_records_both_diagnoses(
    start: Callable[..., RunningSidecar], fake: FakeUpstream
) -> None:
    sidecar = start(cache_diagnostics="api")
    first = ask(sidecar, "api", f"{BASE}Now: 10:00:00.")
    reply = ask(sidecar, "api", f"{BASE}Now: 10:00:07.")
    chat = [r for r in fake.requests if r.path == "/v1/messages"]
    # The session's first call opts in with no previous id; the next names the previous answer.
    assert chat[0].json()["diagnostics"] == {"previous_message_id": None}
    assert chat[1].json()["diagnostics"] == {"previous_message_id": first.id}
    assert chat[1].header("anthropic-beta") == "cache-diagnosis-2026-04-07"
    assert reply.diagnostics is not None and reply.diagnostics.cache_miss_reason is not None
    assert reply.diagnostics.cache_miss_reason.type == "system_changed"  # the SDK sees the API's view too
    _, two = events(sidecar, "api", 2)
    assert two.cache_miss_reason == two.api_cache_miss_reason == "system_changed"
    assert (
        two.cache_miss_detail
        == f"system block 0 changed at char {len(BASE) + 5:,} (digit run, timestamp-like)"
    )


def test_passive_mode_records_the_reason_a_streaming_client_asked_for(
    start: Callable[..., RunningSidecar], fake: FakeUpstream
) -> None:
    sidecar = start()
    beta = {"anthropic-beta": "cache-diagnosis-2026-04-07", "x-fake-diagnostics-in": "delta"}
    opt_in = {"diagnostics": {"previous_message_id": None}}
    first = ask(sidecar, "passive", extra_headers=beta, extra_body=opt_in)
    with client(sidecar).messages.stream(
        model=MODEL,
        max_tokens=20,
        system=[{"type": "text", "text": BASE, "cache_control": {"type": "ephemeral"}}],
        tools=TOOLS,
        messages=[{"role": "user", "content": "Where is my order?"}],
        extra_headers={"x-session-id": "passive", **beta},
        extra_body={"diagnostics": {"previous_message_id": first.id}},
    ) as stream:
        stream.until_done()
    chat = [r for r in fake.requests if r.path == "/v1/messages"]
    assert chat[-1].json()["diagnostics"] == {"previous_message_id": first.id}  # the client's, as sent
    _, two = events(sidecar, "passive", 2)
    assert two.api_cache_miss_reason == "tools_changed"
    assert (
        two.cache_miss_reason == "tools_changed" and two.cache_miss_detail == 'tools "search", "order" added'
    )


def strings_in(value: object, seen: set[int] | None = None) -> Iterator[str]:
    """Every str/bytes reachable from ``value`` through containers, dataclasses and slots."""
    seen = set() if seen is None else seen
    if id(value) in seen:
        return
    seen.add(id(value))
    if isinstance(value, str | bytes):
        yield value if isinstance(value, str) else value.decode("latin-1")
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from strings_in(k, seen)
            yield from strings_in(v, seen)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from strings_in(item, seen)
    elif hasattr(value, "__slots__") or hasattr(value, "__dict__"):
        names = [n for c in type(value).__mro__ for n in getattr(c, "__slots__", ())]
        for name in [*names, *getattr(value, "__dict__", {})]:
            yield from strings_in(getattr(value, name, None), seen)


def test_outputs_carry_the_diagnosis_and_no_prompt_text(
    start: Callable[..., RunningSidecar], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    secret = "Zanzibar-octopus-7731"
    sidecar = start(cache_diagnostics="api")
    system = f"{BASE} Internal codename {secret}. Now: 2026-11-20T10:00:00Z."
    ask(sidecar, "secret", system, messages=conversation(f"My account is {secret}.", 2))
    ask(sidecar, "secret", system.replace("10:00:00", "10:00:09"), messages=conversation(secret, 3))
    _, two = events(sidecar, "secret", 2)
    assert two.cache_miss_reason == "system_changed"
    session = httpx.get(f"{sidecar.url}/sidecar/v1/sessions/secret").json()
    call = session["calls"][1]
    assert call["cache_outcome"] == "miss" and call["cache_miss_reason"] == "system_changed"
    assert call["cache_miss_cost_usd"] == pytest.approx(two.cache_miss_cost_usd)
    assert call["api_cache_miss_reason"] == "system_changed"
    assert session["cache_misses"] == 1 and session["cache_misses_by_reason"] == {"system_changed": 1}
    assert session["cache_miss_cost_usd"] == pytest.approx(two.cache_miss_cost_usd)
    listed = httpx.get(f"{sidecar.url}/sidecar/v1/sessions").json()["sessions"][0]
    assert listed["cache_miss_cost_usd"] == pytest.approx(two.cache_miss_cost_usd)  # from the rollup
    summary = httpx.get(f"{sidecar.url}/sidecar/v1/summary").json()
    assert summary["totals"]["cache_miss_cost_usd"] == pytest.approx(two.cache_miss_cost_usd)
    assert summary["totals"]["cache_misses_by_reason"] == {
        "system_changed": {"misses": 1, "cost_usd": pytest.approx(two.cache_miss_cost_usd)}
    }
    headroom = {row["type"]: row for row in summary["ratelimit"] if row.get("type")}
    assert headroom["requests"]["limit"] == 4000 and headroom["requests"]["utilization"] > 0
    metrics = httpx.get(f"{sidecar.url}/metrics").text
    labels = {"app": "default", "model": MODEL, "reason": "system_changed"}
    assert sample(metrics, "sidecar_cache_misses_total", **labels) == 1
    assert sample(metrics, "sidecar_cache_miss_cost_usd_total", **labels) == pytest.approx(
        two.cache_miss_cost_usd
    )
    logged = [r for r in caplog.records if getattr(r, "fields", {}).get("cache_miss_reason")]
    assert logged and logged[0].fields["cache_miss_detail"] == two.cache_miss_detail  # type: ignore[attr-defined]
    state = list(strings_in(sidecar.sidecar.proxy.deps.policies))
    assert MODEL in state and any(s.startswith("msg_01") for s in state)  # it reached the fingerprints
    sidecar.stop()
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("events.db*"))
    assert b"system_changed" in stored  # the verdict is there...
    assert secret.encode() not in stored  # ...and none of the prompt
    assert secret not in metrics and secret not in repr(session)
    assert not [s for s in state if secret in s]
    assert not [r for r in caplog.records if secret in repr(vars(r))]


def test_sub_agents_side_by_side_are_each_compared_with_their_own_previous_call(
    start: Callable[..., RunningSidecar],
) -> None:
    # Claude Code runs sub-agents in one session, each with its own prompt, their calls interleaved. Each
    # is compared with its own agent's previous call: their prompts differing from each other is no miss.
    sidecar = start()
    prompts = {"explore": f"{BASE}You explore the docs.", "tests": f"{BASE}You run the tests."}
    order = ["explore", "tests", "explore", "tests", "explore"]
    for agent in order:
        headers = {"x-claude-code-agent-id": agent, "x-claude-code-parent-agent-id": "main"}
        ask(sidecar, "subs", prompts[agent], extra_headers=headers)
    found = events(sidecar, "subs", len(order))
    assert [e.agent_id for e in found] == order
    assert [e.cache_outcome for e in found] == ["write", "write", "hit", "hit", "hit"]
    assert all(e.cache_miss_reason is None and e.cache_miss_cost_usd is None for e in found)
