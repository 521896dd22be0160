"""Prompt caching through a real sidecar, the fake upstream and the official SDK (SPEC R-PC-0..2)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anthropic
import httpx
import pytest

from sidecar.server.inprocess import RunningSidecar
from sidecar.testing.fake_upstream import FakeUpstream
from tests.conftest import API_KEY
from tests.metrics_util import sample

# Sonnet 4.5: $3 input, $3.75 5-minute write, $0.30 cache read per million tokens; caches from 1024 tokens.
MODEL = "claude-sonnet-4-5"
P_IN, P_W5, P_READ = 3.00, 3.75, 0.30
SYSTEM = "You are a meticulous assistant for the billing team; cite the policy section you rely on. " * 60
# The fake prices a text block at ceil(len(canonical JSON) / 4) tokens; the canonical JSON of the system
# block is '{"text":"<SYSTEM>","type":"text"}', 25 characters more than the (ASCII, escape-free) text.
SYSTEM_TOKENS = (len(SYSTEM) + 25 + 3) // 4
SAVINGS = "sidecar_cache_savings_usd_total"

# Remove once sidecar/policy/calls.py calls sidecar.cache.policy.apply (and the busting gauge exists).


def _chat(fake: FakeUpstream) -> list[Any]:
    return [r for r in fake.requests if r.path == "/v1/messages"]


def _metric(sidecar: RunningSidecar, name: str, **labels: str) -> float:
    return sample(httpx.get(sidecar.url + "/metrics").text, name, **labels) or 0.0


def test_two_calls_cache_the_system_prompt_and_count_the_savings(
    fake: FakeUpstream, make_sidecar: Callable[..., RunningSidecar]
) -> None:
    assert SYSTEM_TOKENS > 1024  # long enough to be cached
    sidecar = make_sidecar(fake.url)
    client = anthropic.Anthropic(base_url=sidecar.url, api_key=API_KEY, max_retries=0)
    headers = {"x-session-id": "pc-1"}
    before = _metric(sidecar, SAVINGS, model=MODEL, app="default")

    client.messages.create(
        model=MODEL,
        max_tokens=50,
        system=SYSTEM,
        messages=[{"role": "user", "content": "Invoice 1?"}],
        extra_headers=headers,
    )
    sent = _chat(fake)[-1].json()
    assert sent["system"] == [{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}]
    sidecar.wait_events(1, session_id="pc-1")
    # A write-only call saves nothing yet (its net is negative: the write premium).
    assert _metric(sidecar, SAVINGS, model=MODEL, app="default") == before

    reply = client.messages.create(
        model=MODEL,
        max_tokens=50,
        system=SYSTEM,
        messages=[{"role": "user", "content": "Invoice 2?"}],
        extra_headers=headers,
    )
    assert reply.usage.cache_read_input_tokens == SYSTEM_TOKENS  # the SDK sees the hit too
    first, second = sidecar.wait_events(2, session_id="pc-1")
    assert first.cache_breakpoint_injected and second.cache_breakpoint_injected
    assert (
        first.usage.cache_creation_input_tokens == SYSTEM_TOKENS and first.usage.cache_read_input_tokens == 0
    )
    assert (
        second.usage.cache_read_input_tokens == SYSTEM_TOKENS
        and second.usage.cache_creation_input_tokens == 0
    )
    # Per call, net of write premiums: the first pays 3.75 - 3.00 extra per written token, the second
    # saves 3.00 - 0.30 per read token.
    write_premium = SYSTEM_TOKENS * (P_W5 - P_IN) / 1e6
    read_saving = SYSTEM_TOKENS * (P_IN - P_READ) / 1e6
    assert first.cache_savings_usd == pytest.approx(-write_premium, rel=1e-9)
    assert second.cache_savings_usd == pytest.approx(read_saving, rel=1e-9)
    moved = _metric(sidecar, SAVINGS, model=MODEL, app="default") - before
    assert moved == pytest.approx(read_saving, rel=1e-9)
    # The session total is net of the first call's premium.
    session = httpx.get(sidecar.url + "/sidecar/v1/sessions/pc-1").json()
    assert session["cache_savings_usd"] == pytest.approx(read_saving - write_premium, rel=1e-9)
    assert session["cache_read_input_tokens"] == SYSTEM_TOKENS


def _raw_request(system: str) -> bytes:
    # Odd spacing and key order on purpose: any re-serialization would show.
    return (
        b'{ "messages" : [ {"role": "user", "content": "hi"} ],\n  "max_tokens": 20, "model": "'
        + MODEL.encode()
        + b'", "system": '
        + json.dumps(system).encode()
        + b" }"
    )


def _post(sidecar: RunningSidecar, body: bytes, **headers: str) -> httpx.Response:
    base = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"}
    return httpx.post(sidecar.url + "/v1/messages", content=body, headers={**base, **headers}, timeout=10)


def test_header_off_forwards_the_clients_bytes(
    fake: FakeUpstream, make_sidecar: Callable[..., RunningSidecar]
) -> None:
    sidecar = make_sidecar(fake.url)
    raw = _raw_request(SYSTEM)
    assert _post(sidecar, raw, **{"x-sidecar-prompt-cache": "off"}).status_code == 200
    upstream = _chat(fake)[-1]
    assert upstream.body == raw
    assert upstream.header("x-sidecar-prompt-cache") is None
    # The same body without the header is planned (auto): a marker on the system prompt.
    assert _post(sidecar, raw).status_code == 200
    planned = _chat(fake)[-1]
    assert planned.body != raw
    assert planned.json()["system"][0]["cache_control"] == {"type": "ephemeral"}


def test_app_off_in_config_and_short_prompts_are_left_alone(
    fake: FakeUpstream, make_sidecar: Callable[..., RunningSidecar]
) -> None:
    policies = {"prompt_cache": {"apps": {"batch": {"mode": "off"}}}}
    sidecar = make_sidecar(fake.url, policies=policies)
    raw = _raw_request(SYSTEM)
    assert _post(sidecar, raw, **{"x-app-name": "batch"}).status_code == 200
    assert _chat(fake)[-1].body == raw
    short = _raw_request("Be brief.")  # far below 1024 tokens: auto leaves it
    assert _post(sidecar, short).status_code == 200
    assert _chat(fake)[-1].body == short


def test_client_markers_are_kept_and_count_toward_the_limit(
    fake: FakeUpstream, make_sidecar: Callable[..., RunningSidecar]
) -> None:
    sidecar = make_sidecar(fake.url)
    client = anthropic.Anthropic(base_url=sidecar.url, api_key=API_KEY, max_retries=0)
    marker = {"type": "ephemeral", "ttl": "1h"}
    system: Any = [
        {"type": "text", "text": "You are a coding agent.", "cache_control": marker},
        {"type": "text", "text": SYSTEM, "cache_control": marker},
    ]
    tool: Any = {"name": "grep", "description": "Search files. " * 400, "input_schema": {"type": "object"}}
    messages: Any = [
        {"role": "user", "content": [{"type": "text", "text": "fix it", "cache_control": marker}]}
    ]
    # Three client markers (1h): one slot is left, for the tools, and ours must be 1h too (never 5m
    # before a 1h). The fake upstream answers 400 to any body the API would reject.
    client.messages.create(model=MODEL, max_tokens=20, system=system, tools=[tool], messages=messages)
    sent = _chat(fake)[-1].json()
    assert sent["tools"][0]["cache_control"] == marker
    assert sent["system"] == system and sent["messages"] == messages


def test_a_timestamp_in_the_system_prompt_is_reported_as_cache_busting(
    fake: FakeUpstream, make_sidecar: Callable[..., RunningSidecar]
) -> None:
    sidecar = make_sidecar(fake.url)
    client = anthropic.Anthropic(base_url=sidecar.url, api_key=API_KEY, max_retries=0)
    for second in range(12):
        client.messages.create(
            model=MODEL,
            max_tokens=20,
            system=f"{SYSTEM}\nCurrent time: 2026-11-20T10:00:{second:02}Z",
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-app-name": "clock"},
        )
        client.messages.create(
            model=MODEL,
            max_tokens=20,
            system=SYSTEM,
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-app-name": "steady"},
        )
    sidecar.wait_events(24)
    assert _metric(sidecar, "sidecar_cache_busting", app="clock") == 1.0
    assert _metric(sidecar, "sidecar_cache_busting", app="steady") == 0.0
