"""The fake Anthropic upstream, driven by the official SDK (and raw HTTP where the SDK cannot go).

Token numbers are checked against hand calculations: a block costs ceil(len(canonical JSON) / 4) tokens,
and the canonical JSON of a text block with text T is '{"text":"T","type":"text"}', i.e. len(T) + 25.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from sidecar.testing.fake_upstream import FakeConfig, FakeUpstream
from tests.waiting import SLACK_S

KEY = "sk-ant-test"
MODEL = "claude-sonnet-4-6"
HELLO: Any = [{"role": "user", "content": "Hello there friend"}]
HELLO_TOKENS = 11  # ceil((18 + 25) / 4)
BODY: Any = {"model": MODEL, "max_tokens": 100, "messages": HELLO}
RAW_HEADERS = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
WEATHER: Any = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
CLOCK: Any = {"name": "get_time", "input_schema": {"type": "object", "properties": {}}}
BIG_TEXT = "x" * 4095  # ceil((4095 + 25) / 4) = 1030 tokens, above Sonnet 4.6's 1024 minimum
BIG_TOKENS = 1030


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture
def client(upstream: FakeUpstream) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=upstream.url, api_key=KEY, max_retries=0)


def sse_events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for chunk in raw.decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in chunk.split("\n") if ": " in line)
        if "event" in fields:
            out.append((fields["event"], json.loads(fields["data"])))
    return out


def post_raw(fake: FakeUpstream, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(fake.url + "/v1/messages", content=content, headers={**RAW_HEADERS, **(headers or {})})


def error_of(resp: httpx.Response, status: int) -> tuple[str, str]:
    assert resp.status_code == status, resp.text
    doc = resp.json()
    assert doc["type"] == "error" and doc["request_id"] == resp.headers["request-id"]
    return doc["error"]["type"], doc["error"]["message"]


def texts(message: Any) -> list[str]:
    return [b.text for b in message.content if b.type == "text"]


def cached_system(ttl: str = "5m") -> Any:
    return [{"type": "text", "text": BIG_TEXT, "cache_control": {"type": "ephemeral", "ttl": ttl}}]


# --- Messages: content, usage, ids ---------------------------------------------------------------


def test_text_answer_and_hand_computed_usage(upstream: FakeUpstream, client: anthropic.Anthropic) -> None:
    raw = client.messages.with_raw_response.create(**BODY)
    message = raw.parse()
    assert [b.type for b in message.content] == ["text"]
    assert texts(message) == ["Fake reply to: Hello there friend"]
    assert message.stop_reason == "end_turn" and message.model == MODEL
    assert (message.usage.input_tokens, message.usage.output_tokens) == (HELLO_TOKENS, 6)
    assert message.usage.service_tier == "standard"
    assert message.id.startswith("msg_") and message._request_id == raw.headers["request-id"]
    assert raw.headers["anthropic-organization-id"]
    for family in ("requests", "tokens", "input-tokens", "output-tokens"):
        for part in ("limit", "remaining", "reset"):
            assert raw.headers[f"anthropic-ratelimit-{family}-{part}"]
    again = client.messages.with_raw_response.create(**BODY)
    assert again.parse().id == message.id and again.headers["request-id"] == raw.headers["request-id"]
    remaining = int(raw.headers["anthropic-ratelimit-requests-remaining"])
    assert int(again.headers["anthropic-ratelimit-requests-remaining"]) == remaining - 1


def test_max_tokens_cuts_the_answer(client: anthropic.Anthropic) -> None:
    message = client.messages.create(**{**BODY, "max_tokens": 2})
    assert texts(message) == ["Fake reply"]
    assert (message.stop_reason, message.usage.output_tokens) == ("max_tokens", 2)


def test_tool_use_then_tool_result(client: anthropic.Anthropic) -> None:
    first = client.messages.create(**BODY, tools=[WEATHER])
    assert first.stop_reason == "tool_use"
    text, call = first.content
    assert text.type == "text" and call.type == "tool_use"
    assert (call.name, call.input) == ("get_weather", {"city": "fake"})
    assert call.id.startswith("toolu_")
    # words: I will call the get_weather tool (6) + {"city": "fake"} (2)
    assert first.usage.output_tokens == 8
    result: Any = {"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}
    messages: Any = [*HELLO, {"role": "assistant", "content": [text.model_dump(), call.model_dump()]}]
    second = client.messages.create(
        model=MODEL,
        max_tokens=100,
        tools=[WEATHER],
        messages=[*messages, {"role": "user", "content": [result]}],
    )
    assert second.stop_reason == "end_turn" and [b.type for b in second.content] == ["text"]


def test_parallel_tool_calls_cycle_through_tools(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        **BODY,
        tools=[WEATHER, CLOCK],
        extra_headers={"x-fake-tool-calls": "3"},
    )
    calls = [b for b in message.content if b.type == "tool_use"]
    assert [c.name for c in calls] == ["get_weather", "get_time", "get_weather"]
    assert len({c.id for c in calls}) == 3


def test_thinking_block_with_signature(client: anthropic.Anthropic) -> None:
    message = client.messages.create(**BODY, thinking={"type": "adaptive"})
    thinking, text = message.content
    assert thinking.type == "thinking" and thinking.signature and thinking.thinking
    assert text.type == "text"
    with client.messages.stream(**BODY, thinking={"type": "adaptive"}) as stream:
        kinds = [e.delta.type for e in stream if e.type == "content_block_delta"]
        final = stream.get_final_message()
    assert "thinking_delta" in kinds and kinds.index("signature_delta") < kinds.index("text_delta")
    streamed = final.content[0]
    assert streamed.type == "thinking" and streamed.signature  # the body differs ("stream"), so do ids
    assert streamed.thinking == thinking.thinking


# --- Streaming wire format -----------------------------------------------------------------------


def test_stream_wire_format(upstream: FakeUpstream) -> None:
    resp = post_raw(upstream, {**BODY, "stream": True, "tools": [WEATHER]})
    assert resp.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert resp.headers["cache-control"] == "no-cache"
    assert b'event: ping\ndata: {"type": "ping"}\n\n' in resp.content
    events = sse_events(resp.content)
    assert all(name == data["type"] for name, data in events)
    names = [name for name, _ in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-2:] == ["message_delta", "message_stop"]
    start = events[0][1]["message"]
    assert start["usage"]["output_tokens"] == 1 and start["stop_reason"] is None and start["content"] == []
    assert set(start["usage"]) >= {"cache_creation", "cache_read_input_tokens", "cache_creation_input_tokens"}
    json_deltas = [
        d["delta"]["partial_json"] for n, d in events if d.get("delta", {}).get("type") == "input_json_delta"
    ]
    assert json_deltas[0] == "" and json.loads("".join(json_deltas)) == {"city": "fake"}
    delta = events[-2][1]
    assert delta["delta"]["stop_reason"] == "tool_use"
    assert delta["usage"]["input_tokens"] == start["usage"]["input_tokens"]


def test_config_and_header_set_the_number_of_text_deltas() -> None:
    with FakeUpstream(FakeConfig(deltas=5)) as fake:
        events = sse_events(post_raw(fake, {**BODY, "stream": True}).content)
        assert sum(1 for _, d in events if d.get("delta", {}).get("type") == "text_delta") == 5
        events = sse_events(post_raw(fake, {**BODY, "stream": True}, {"x-fake-deltas": "2"}).content)
        assert sum(1 for _, d in events if d.get("delta", {}).get("type") == "text_delta") == 2


def test_stream_usage_follows_x_fake_usage(client: anthropic.Anthropic) -> None:
    usage = {
        "input_tokens": 100,
        "output_tokens": 50,
        "cache_read_input_tokens": 2000,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 300},
    }
    with client.messages.stream(**BODY, extra_headers={"x-fake-usage": json.dumps(usage)}) as stream:
        final = stream.get_final_message()
    got = final.usage
    assert (got.input_tokens, got.output_tokens, got.cache_read_input_tokens) == (100, 50, 2000)
    assert got.cache_creation_input_tokens == 300  # defaults to the sum of the split
    assert got.cache_creation is not None and got.cache_creation.ephemeral_1h_input_tokens == 300
    plain = client.messages.create(**BODY, extra_headers={"x-fake-usage": '{"cache_creation": null}'})
    assert plain.usage.cache_creation is None


def test_cache_fields_only_in_message_delta(upstream: FakeUpstream, client: anthropic.Anthropic) -> None:
    headers = {"x-fake-usage": '{"cache_read_input_tokens": 700}', "x-fake-cache-fields-in-delta": "1"}
    events = sse_events(post_raw(upstream, {**BODY, "stream": True}, headers).content)
    start, delta = events[0][1]["message"]["usage"], events[-2][1]["usage"]
    assert (start["input_tokens"], start["cache_read_input_tokens"]) == (0, 0)
    assert (delta["input_tokens"], delta["cache_read_input_tokens"]) == (HELLO_TOKENS, 700)
    with client.messages.stream(**BODY, extra_headers=headers) as stream:
        final = stream.get_final_message()
    assert (final.usage.input_tokens, final.usage.cache_read_input_tokens) == (HELLO_TOKENS, 700)


# --- Prompt caching ------------------------------------------------------------------------------


def test_second_identical_call_reads_the_cache(client: anthropic.Anthropic) -> None:
    first = client.messages.create(**BODY, system=cached_system())
    assert (first.usage.cache_creation_input_tokens, first.usage.cache_read_input_tokens) == (BIG_TOKENS, 0)
    assert first.usage.cache_creation is not None
    assert first.usage.cache_creation.ephemeral_5m_input_tokens == BIG_TOKENS
    assert first.usage.input_tokens == HELLO_TOKENS  # only what follows the breakpoint
    second = client.messages.create(**BODY, system=cached_system())
    assert (second.usage.cache_creation_input_tokens, second.usage.cache_read_input_tokens) == (0, BIG_TOKENS)
    assert second.usage.input_tokens == HELLO_TOKENS
    count = client.messages.count_tokens(model=MODEL, messages=HELLO, system=cached_system())
    assert count.input_tokens == BIG_TOKENS + HELLO_TOKENS


def test_one_hour_ttl_and_minimum_length(client: anthropic.Anthropic) -> None:
    hour = client.messages.create(**BODY, system=cached_system("1h"))
    assert hour.usage.cache_creation is not None
    assert hour.usage.cache_creation.ephemeral_1h_input_tokens == BIG_TOKENS
    two = [
        cached_system("1h")[0],
        {"type": "text", "text": "y" * 4095, "cache_control": {"type": "ephemeral"}},
    ]
    mixed = client.messages.create(**BODY, system=two)
    assert mixed.usage.cache_read_input_tokens == BIG_TOKENS  # the 1h prefix was written just above
    assert mixed.usage.cache_creation is not None
    assert mixed.usage.cache_creation.ephemeral_5m_input_tokens == BIG_TOKENS
    assert mixed.usage.cache_creation.ephemeral_1h_input_tokens == 0
    # Opus 4.6 needs 4096 tokens: the same prompt is too short to be cached at all.
    short = client.messages.create(**{**BODY, "model": "claude-opus-4-6"}, system=cached_system())
    assert (short.usage.cache_creation_input_tokens, short.usage.cache_read_input_tokens) == (0, 0)
    assert short.usage.input_tokens == BIG_TOKENS + HELLO_TOKENS


def test_moving_breakpoint_reads_the_previous_prefix(client: anthropic.Anthropic) -> None:
    marker = {"type": "ephemeral"}
    user1 = {"type": "text", "text": "Hello there friend"}
    turn1: Any = [{"role": "user", "content": [{**user1, "cache_control": marker}]}]
    first = client.messages.create(model=MODEL, max_tokens=100, system=BIG_TEXT, messages=turn1)
    assert first.usage.cache_creation_input_tokens == BIG_TOKENS + HELLO_TOKENS
    turn2: Any = [
        {"role": "user", "content": [user1]},
        {"role": "assistant", "content": "Fake reply to: Hello there friend"},  # ceil((33 + 25) / 4) = 15
        {"role": "user", "content": [{"type": "text", "text": "And more", "cache_control": marker}]},  # 9
    ]
    second = client.messages.create(model=MODEL, max_tokens=100, system=BIG_TEXT, messages=turn2)
    assert second.usage.cache_read_input_tokens == BIG_TOKENS + HELLO_TOKENS
    assert (second.usage.cache_creation_input_tokens, second.usage.input_tokens) == (15 + 9, 0)


def test_top_level_cache_control_marks_the_last_block(client: anthropic.Anthropic) -> None:
    body = {**BODY, "system": BIG_TEXT}
    first = client.messages.create(**body, extra_body={"cache_control": {"type": "ephemeral"}})
    assert (first.usage.cache_creation_input_tokens, first.usage.input_tokens) == (
        BIG_TOKENS + HELLO_TOKENS,
        0,
    )


def test_reset_forgets_requests_and_cache(upstream: FakeUpstream, client: anthropic.Anthropic) -> None:
    client.messages.create(**BODY, system=cached_system())
    upstream.reset()
    assert upstream.requests == []
    again = client.messages.create(**BODY, system=cached_system())
    assert again.usage.cache_read_input_tokens == 0 and again.usage.cache_creation_input_tokens == BIG_TOKENS


@pytest.mark.parametrize(
    ("body_change", "needle"),
    [
        (
            {
                "system": [
                    {"type": "text", "text": f"s{i}", "cache_control": {"type": "ephemeral"}}
                    for i in range(5)
                ]
            },
            "Found 5",
        ),
        (
            {
                "system": [
                    {"type": "text", "text": f"s{i}", "cache_control": {"type": "ephemeral"}}
                    for i in range(4)
                ],
                "cache_control": {"type": "ephemeral"},
            },
            "Found 5",
        ),
        (
            {"system": [{"type": "text", "text": "s", "cache_control": {"type": "ephemeral", "ttl": "10m"}}]},
            "ttl",
        ),
        (
            {
                "system": [
                    {"type": "text", "text": "a", "cache_control": {"type": "ephemeral", "ttl": "5m"}},
                    {"type": "text", "text": "b", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
                ]
            },
            "1h",
        ),
        ({"system": [{"type": "text", "text": "", "cache_control": {"type": "ephemeral"}}]}, "empty text"),
        (
            {
                "messages": [
                    *HELLO,
                    {
                        "role": "assistant",
                        "content": [
                            {
                                "type": "thinking",
                                "thinking": "t",
                                "signature": "s",
                                "cache_control": {"type": "ephemeral"},
                            }
                        ],
                    },
                ]
            },
            "thinking",
        ),
    ],
)
def test_invalid_cache_markers_are_400(
    upstream: FakeUpstream, body_change: dict[str, Any], needle: str
) -> None:
    kind, message = error_of(post_raw(upstream, {**BODY, **body_change}), 400)
    assert kind == "invalid_request_error" and needle in message


# --- Versions, auth, validation ------------------------------------------------------------------


def test_version_auth_and_body_rules(upstream: FakeUpstream) -> None:
    no_version = {"x-api-key": KEY}
    assert httpx.post(upstream.url + "/v1/messages", json=BODY, headers=no_version).status_code == 400
    assert (
        error_of(post_raw(upstream, BODY, {"anthropic-version": "2024-01-01"}), 400)[0]
        == "invalid_request_error"
    )
    new = {"anthropic-version": "2026-10-21"}
    for name, value in (("temperature", 1.0), ("top_p", 0.9), ("top_k", 5)):
        assert "2026-10-21" in error_of(post_raw(upstream, {**BODY, name: value}, new), 400)[1]
    assert post_raw(upstream, {**BODY, "temperature": 1.0}).status_code == 200  # fine under 2023-06-01
    anonymous = httpx.post(
        upstream.url + "/v1/messages", json=BODY, headers={"anthropic-version": "2023-06-01"}
    )
    assert error_of(anonymous, 401)[0] == "authentication_error"
    bearer = {"authorization": f"Bearer {KEY}", "anthropic-version": "2026-10-21"}
    assert httpx.post(upstream.url + "/v1/messages", json=BODY, headers=bearer).status_code == 200
    assert error_of(post_raw(upstream, b"{not json"), 400)[0] == "invalid_request_error"
    for field in ("model", "messages", "max_tokens"):
        body = {k: v for k, v in BODY.items() if k != field}
        assert field in error_of(post_raw(upstream, body), 400)[1]


def test_auth_can_be_turned_off() -> None:
    with FakeUpstream(FakeConfig(require_auth=False)) as fake:
        resp = httpx.post(fake.url + "/v1/messages", json=BODY, headers={"anthropic-version": "2023-06-01"})
        assert resp.status_code == 200


def test_unknown_paths_are_404_and_beta_query_is_ignored(upstream: FakeUpstream) -> None:
    for path in ("/v1/nope", "/health", "/"):
        resp = httpx.get(upstream.url + path, headers=RAW_HEADERS)
        assert error_of(resp, 404)[0] == "not_found_error"
    beta = httpx.post(upstream.url + "/v1/messages?beta=true", json=BODY, headers=RAW_HEADERS)
    assert beta.status_code == 200 and beta.json()["type"] == "message"


def test_requests_are_recorded_verbatim(upstream: FakeUpstream) -> None:
    headers = [
        ("x-api-key", KEY),
        ("anthropic-version", "2023-06-01"),
        ("anthropic-beta", "a-1"),
        ("anthropic-beta", "b-2"),
        ("X-Mixed-Case", "v"),
    ]
    content = json.dumps(BODY).encode()
    before = time.monotonic()
    httpx.post(upstream.url + "/v1/messages?beta=true", content=content, headers=headers)
    (seen,) = upstream.requests
    assert (seen.method, seen.path, seen.query_string, seen.body) == (
        "POST",
        "/v1/messages",
        "beta=true",
        content,
    )
    assert [v for k, v in seen.headers if k == "anthropic-beta"] == ["a-1", "b-2"]
    assert ("X-Mixed-Case", "v") in seen.headers and seen.received_at >= before
    listed = httpx.get(upstream.url + "/__fake/requests").json()
    assert len(listed) == 1 and listed[0]["body"] == content.decode()
    assert len(upstream.requests) == 1  # the hook itself is not recorded


# --- Scenarios -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "exc_type", "error_type"),
    [
        ("error-400", anthropic.BadRequestError, "invalid_request_error"),
        ("error-401", anthropic.AuthenticationError, "authentication_error"),
        ("error-429", anthropic.RateLimitError, "rate_limit_error"),
        ("error-500", anthropic.InternalServerError, "api_error"),
        ("error-529", anthropic.OverloadedError, "overloaded_error"),
    ],
)
def test_error_scenarios_raise_sdk_errors(
    client: anthropic.Anthropic, scenario: str, exc_type: type[anthropic.APIStatusError], error_type: str
) -> None:
    with pytest.raises(exc_type) as info:
        client.messages.create(**BODY, extra_headers={"x-fake-scenario": scenario})
    body = info.value.body
    assert isinstance(body, dict) and body["error"]["type"] == error_type
    assert body["request_id"] == info.value.response.headers["request-id"]
    if scenario == "error-429":
        assert info.value.response.headers["retry-after"] == "1"


def test_error_event_inside_a_200_stream(client: anthropic.Anthropic) -> None:
    headers = {"x-fake-scenario": "error-in-stream"}
    with (
        pytest.raises(anthropic.APIStatusError) as info,
        client.messages.stream(**BODY, extra_headers=headers) as s,
    ):
        for _ in s:
            pass
    assert info.value.status_code == 200
    assert info.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }


def test_reset_mid_stream_cuts_the_body(upstream: FakeUpstream) -> None:
    data = b""
    body, headers = {**BODY, "stream": True}, {**RAW_HEADERS, "x-fake-scenario": "reset-mid-stream"}
    with (
        pytest.raises(httpx.RemoteProtocolError),
        httpx.stream("POST", upstream.url + "/v1/messages", json=body, headers=headers) as resp,
    ):
        for chunk in resp.iter_raw():
            data += chunk
    names = [name for name, _ in sse_events(data)]
    assert names[0] == "message_start" and "message_stop" not in names


def test_malformed_sse_still_parses_in_the_sdk(upstream: FakeUpstream, client: anthropic.Anthropic) -> None:
    headers = {"x-fake-scenario": "malformed-sse"}
    raw = post_raw(upstream, {**BODY, "stream": True}, headers).content
    assert b"\nthis line is not valid SSE {{{\n" in raw
    with client.messages.stream(**BODY, extra_headers=headers) as stream:
        final = stream.get_final_message()
    assert texts(final) == ["Fake reply to: Hello there friend"]


def test_slow_stream_waits_before_the_first_event(upstream: FakeUpstream) -> None:
    # A delay longer than a loaded machine's slack: "headers at once" stays distinct from "after it".
    delay_s = SLACK_S + 0.5
    headers = {
        **RAW_HEADERS,
        "x-fake-scenario": "slow",
        "x-fake-first-token-delay-ms": str(int(delay_s * 1000)),
        "x-fake-chunk-delay-ms": "10",
    }
    start = time.monotonic()
    with httpx.stream(
        "POST", upstream.url + "/v1/messages", json={**BODY, "stream": True}, headers=headers
    ) as resp:
        headers_at = time.monotonic() - start
        first_chunk_at = None
        for _ in resp.iter_raw():
            first_chunk_at = first_chunk_at or time.monotonic() - start
        done_at = time.monotonic() - start
    assert first_chunk_at is not None
    assert headers_at < SLACK_S < delay_s - 0.01 <= first_chunk_at < done_at  # headers, then the delay


def test_hang_until_the_client_gives_up(client: anthropic.Anthropic) -> None:
    start = time.monotonic()
    with pytest.raises(anthropic.APITimeoutError):
        client.messages.create(**BODY, extra_headers={"x-fake-scenario": "hang"}, timeout=0.3)
    assert time.monotonic() - start < 2


def test_fail_times_with_sdk_retries(upstream: FakeUpstream) -> None:
    retrying = anthropic.Anthropic(base_url=upstream.url, api_key=KEY, max_retries=2)
    headers = {"x-fake-fail-times": "2", "x-fake-fail-key": "k1", "x-fake-retry-after-ms": "10"}
    message = retrying.messages.create(**BODY, extra_headers=headers)
    assert message.type == "message"
    assert [r.header("x-stainless-retry-count") for r in upstream.requests] == ["0", "1", "2"]
    once = anthropic.Anthropic(base_url=upstream.url, api_key=KEY, max_retries=0)
    headers = {"x-fake-fail-times": "1", "x-fake-fail-key": "k2"}
    with pytest.raises(anthropic.OverloadedError):
        once.messages.create(**BODY, extra_headers=headers)
    assert once.messages.create(**BODY, extra_headers=headers).type == "message"


# --- Other endpoints -----------------------------------------------------------------------------


def test_models_list_paginates_and_retrieves(client: anthropic.Anthropic) -> None:
    page = client.models.list(limit=2)
    assert page.has_more and len(page.data) == 2 and page.first_id == page.data[0].id
    every = [m.id for m in client.models.list(limit=2)]  # auto-pagination follows after_id
    assert len(every) == len(set(every)) >= 5 and every[:2] == [m.id for m in page.data]
    assert client.models.retrieve(every[-1]).id == every[-1]
    with pytest.raises(anthropic.NotFoundError):
        client.models.retrieve("claude-nope")


def test_batches_end_at_once_with_absolute_results_url(
    upstream: FakeUpstream, client: anthropic.Anthropic
) -> None:
    bad: Any = {"model": MODEL, "messages": HELLO}  # no max_tokens: an errored result, not a failed batch
    batch = client.messages.batches.create(
        requests=[{"custom_id": "ok", "params": BODY}, {"custom_id": "bad", "params": bad}]
    )
    assert batch.processing_status == "ended"
    assert (batch.request_counts.succeeded, batch.request_counts.errored) == (1, 1)
    assert batch.results_url == f"{upstream.url}/v1/messages/batches/{batch.id}/results"
    assert client.messages.batches.retrieve(batch.id).id == batch.id
    results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    assert results["bad"].type == "errored" and results["ok"].type == "succeeded"
    assert results["ok"].message.usage.service_tier == "batch"
    assert upstream.requests[-1].header("accept") == "application/binary"
    assert [b.id for b in client.messages.batches.list()] == [batch.id]
    assert client.messages.batches.cancel(batch.id).processing_status == "ended"
    assert client.messages.batches.delete(batch.id).type == "message_batch_deleted"
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve(batch.id)


def test_files_round_trip_exact_bytes(client: anthropic.Anthropic) -> None:
    content = b"\x00\xff\r\n--boundary-lookalike\r\n\r\nend\r\n"
    meta = client.files.upload(file=("data.bin", content, "application/octet-stream"))
    assert (meta.filename, meta.size_bytes, meta.mime_type) == (
        "data.bin",
        len(content),
        "application/octet-stream",
    )
    assert client.files.download(meta.id).read() == content
    assert client.files.retrieve_metadata(meta.id).id == meta.id
    assert [f.id for f in client.files.list()] == [meta.id]
    client.files.delete(meta.id)
    with pytest.raises(anthropic.NotFoundError):
        client.files.retrieve_metadata(meta.id)


async def test_async_client_create_and_stream(upstream: FakeUpstream) -> None:
    client = anthropic.AsyncAnthropic(
        base_url=upstream.url, api_key=KEY, max_retries=0, http_client=anthropic.DefaultAsyncHttpxClient()
    )
    message = await client.messages.create(**BODY)
    async with client.messages.stream(**BODY) as stream:
        final = await stream.get_final_message()
    assert texts(final) == texts(message) == ["Fake reply to: Hello there friend"]
    assert final.usage.output_tokens == message.usage.output_tokens == 6
    assert (await client.messages.count_tokens(model=MODEL, messages=HELLO)).input_tokens == HELLO_TOKENS
    await client.close()


def test_runs_as_a_process_and_exits_0_on_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "sidecar.testing.fake_upstream", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        resp = httpx.get(url + "/v1/models", headers=RAW_HEADERS)
        assert resp.status_code == 200 and resp.json()["data"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
