"""The fake upstream answers cache diagnostics and subscription rate-limit headers the way the API does."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from sidecar.testing.fake_upstream import FakeConfig, FakeUpstream

KEY = "sk-ant-test"
BETA = {"anthropic-beta": "cache-diagnosis-2026-04-07"}
SYSTEM = "You are terse. " * 300  # above the 1024-token minimum
TOOL: Any = {"name": "search", "description": "Search. " * 50, "input_schema": {"type": "object"}}


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def upstream(clock: Clock) -> Iterator[FakeUpstream]:
    with FakeUpstream(FakeConfig(clock=clock)) as fake:
        yield fake


def create(fake: FakeUpstream, previous: str | None, headers: dict[str, str] | None = None, **kw: Any) -> Any:
    client = anthropic.Anthropic(base_url=fake.url, api_key=KEY, max_retries=0)
    params: dict[str, Any] = {"model": "claude-sonnet-4-5", "max_tokens": 10, "system": SYSTEM}
    params["messages"] = kw.pop("messages", [{"role": "user", "content": "hi"}])
    params.update(kw)
    return client.messages.create(
        **params,
        extra_headers={**BETA, **(headers or {})},
        extra_body={"diagnostics": {"previous_message_id": previous}},
    )


def reason(message: Any) -> Any:
    d = message.diagnostics
    return None if d is None or d.cache_miss_reason is None else d.cache_miss_reason.model_dump()


def test_each_reason(upstream: FakeUpstream) -> None:
    first = create(upstream, None)
    assert first.diagnostics is None  # the first turn: nothing to compare
    assert create(upstream, first.id).diagnostics is None  # the same prefix
    assert reason(create(upstream, "msg_unknown")) == {"type": "previous_message_not_found"}
    model = reason(create(upstream, first.id, model="claude-opus-4-1"))
    assert model["type"] == "model_changed" and model["cache_missed_input_tokens"] > 0
    assert reason(create(upstream, first.id, tools=[TOOL]))["type"] == "tools_changed"
    assert reason(create(upstream, first.id, system="Other."))["type"] == "system_changed"
    longer = create(upstream, first.id, messages=[{"role": "user", "content": "hi"}] * 3)
    assert longer.diagnostics is None  # the history grew: the previous prefix is still there
    edited = reason(create(upstream, longer.id, messages=[{"role": "user", "content": "HI"}] * 3))
    assert edited["type"] == "messages_changed"
    choice = create(upstream, first.id, tools=[TOOL], tool_choice={"type": "any"})
    assert reason(create(upstream, choice.id, tools=[TOOL]))["type"] == "unavailable"


def test_pending_and_no_beta(upstream: FakeUpstream) -> None:
    first = create(upstream, None)
    pending = create(upstream, first.id, headers={"x-fake-diagnostics": "pending"})
    assert pending.diagnostics is not None and pending.diagnostics.cache_miss_reason is None
    raw = httpx.post(
        f"{upstream.url}/v1/messages",
        headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"},
        json={"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}],
              "diagnostics": {"previous_message_id": None}},
    )  # fmt: skip
    assert "diagnostics" not in raw.json()  # without the beta header the field is not answered


@pytest.mark.parametrize("where", ["start", "delta", "delta-inner"])
def test_placement_in_a_stream(upstream: FakeUpstream, where: str) -> None:
    first = create(upstream, None)
    body = {"model": "claude-sonnet-4-5", "max_tokens": 5, "system": "x", "stream": True,
            "messages": [{"role": "user", "content": "hi"}],
            "diagnostics": {"previous_message_id": first.id}}  # fmt: skip
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01", **BETA, "x-fake-diagnostics-in": where}
    raw = httpx.post(f"{upstream.url}/v1/messages", headers=headers, json=body).text
    events = [json.loads(line[6:]) for line in raw.splitlines() if line.startswith("data: ")]
    start, delta = events[0], next(e for e in events if e["type"] == "message_delta")
    found = {
        "start": start["message"].get("diagnostics"),
        "delta": delta.get("diagnostics"),
        "delta-inner": delta["delta"].get("diagnostics"),
    }
    assert found[where] == {
        "cache_miss_reason": {"type": "system_changed", "cache_missed_input_tokens": 3}
    } or (found[where]["cache_miss_reason"]["type"] == "system_changed")
    assert [k for k, v in found.items() if v is not None] == [where]


def test_the_cache_ages_on_the_given_clock_and_can_be_evicted(upstream: FakeUpstream, clock: Clock) -> None:
    marked = [{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}]
    assert create(upstream, None, system=marked).usage.cache_creation_input_tokens > 0
    assert create(upstream, None, system=marked).usage.cache_read_input_tokens > 0
    clock.offset += 301
    assert create(upstream, None, system=marked).usage.cache_read_input_tokens == 0  # expired: written again
    upstream.evict_cache()
    assert create(upstream, None, system=marked).usage.cache_read_input_tokens == 0


def test_subscription_rate_limit_headers(upstream: FakeUpstream) -> None:
    headers = {
        "x-api-key": KEY,
        "anthropic-version": "2023-06-01",
        "x-fake-unified-ratelimit": "5h=0.93,7d=0.4",
    }
    raw = httpx.get(f"{upstream.url}/v1/models", headers=headers).headers
    assert raw["anthropic-ratelimit-unified-status"] == "allowed_warning"
    assert raw["anthropic-ratelimit-unified-5h-utilization"] == "0.93"
    assert raw["anthropic-ratelimit-unified-7d-utilization"] == "0.4"
    assert raw["anthropic-ratelimit-unified-representative-claim"] == "five_hour"
    assert int(raw["anthropic-ratelimit-unified-5h-reset"]) > time.time()
