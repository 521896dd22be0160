from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from anthropic._streaming import SSEDecoder as SDKDecoder
from anthropic.lib.streaming._messages import accumulate_event
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.core.usage import Usage
from sidecar.sansio.messages import (
    UNKNOWN_ERROR_TYPE,
    MessageSummary,
    StreamParser,
    parse_error_body,
    parse_message_body,
    usage_from_mapping,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "sse"


def read(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def parse(*chunks: bytes) -> MessageSummary:
    parser = StreamParser()
    for chunk in chunks:
        parser.feed(chunk)
    summary = parser.close()
    assert parser.internal_errors == 0
    return summary


def sse(event: str, payload: object) -> bytes:
    # json, not orjson: the fuzz tests need integers beyond 64 bits.
    return f"event: {event}\ndata: {json.dumps(payload)}\n\n".encode()


def start(usage: dict[str, Any]) -> bytes:
    message = {"id": "msg_x", "type": "message", "model": "claude-sonnet-4-6", "content": [], "usage": usage}
    return sse("message_start", {"type": "message_start", "message": message})


def delta(usage: object, stop_reason: str | None = "end_turn") -> bytes:
    payload = {"type": "message_delta", "delta": {"stop_reason": stop_reason}, "usage": usage}
    return sse("message_delta", payload)


TEXT_START = sse("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {}})
STOP = sse("message_stop", {"type": "message_stop"})

# Hand-read from each file: (id, model, usage, stop_reason, tool ids, tool names, complete, events, error).
EXPECTED: dict[str, tuple[Any, ...]] = {
    "basic_response.txt": (
        "msg_4QpJur2dWWDjF6C758FbBw5vm12BaVipnK", "claude-3-opus-latest",
        Usage(input_tokens=11, output_tokens=6), "end_turn", [], [], True, 9, None,
    ),
    "incomplete_partial_json_response.txt": (
        "msg_01UdjYBBipA9omjYhicnevgq", "claude-3-7-sonnet-20250219",
        Usage(input_tokens=450, output_tokens=124, service_tier="standard"), "max_tokens",
        ["toolu_01EKqbqmZrGRXy18eN7m9kvY"], ["make_file"], True, 16, None,
    ),
    "stream-a-refusal.sse": (
        "msg_fixture_a_0001", "claude-fable-5",
        Usage(input_tokens=28, output_tokens=106, cache_creation_5m=0, cache_creation_1h=0,
              service_tier="standard", inference_geo="global"),
        "refusal", [], [], True, 14, None,
    ),
    "tool_use_response.txt": (
        "msg_019Q1hrJbZG26Fb9BQhrkHEr", "claude-sonnet-4-20250514",
        Usage(input_tokens=377, output_tokens=65, service_tier="standard"), "tool_use",
        ["toolu_01NRLabsLyVHZPKxbKvkfSMn"], ["get_weather"], True, 15, None,
    ),
    "thinking.sse": (
        "msg_01ThinkFixture00000000001", "claude-opus-4-6",
        Usage(input_tokens=512, output_tokens=96, cache_creation_5m=0, cache_creation_1h=0,
              service_tier="standard", inference_geo="global"),
        "end_turn", [], [], True, 13, None,
    ),
    "cache_hit.sse": (
        "msg_01CacheHitFixture000000001", "claude-sonnet-4-6",
        Usage(input_tokens=12, output_tokens=233, cache_read_input_tokens=40960,
              cache_creation_input_tokens=3072, cache_creation_5m=1024, cache_creation_1h=2048,
              service_tier="priority", inference_geo="us"),
        "end_turn", [], [], True, 8, None,
    ),
    "error_after_start.sse": (
        "msg_01ErrorFixture0000000001", "claude-haiku-4-5-20251001",
        Usage(input_tokens=1500, output_tokens=1, service_tier="standard"), None, [], [], False, 4,
        ("overloaded_error", "Overloaded"),
    ),
    "truncated.sse": (
        "msg_01TruncFixture0000000001", "claude-sonnet-4-5-20250929",
        Usage(input_tokens=2200, output_tokens=3, cache_read_input_tokens=1800, service_tier="standard"),
        None, [], [], False, 5, None,
    ),
    "server_tool_use.sse": (
        "msg_01WebSearchFixture00000001", "claude-opus-4-5-20251101",
        Usage(input_tokens=10682, output_tokens=510, web_search_requests=1, service_tier="standard"),
        "tool_use", ["toolu_01A09q90qw90lq917835lq9"], ["save_note"], True, 14, None,
    ),
    "crlf.sse": (
        "msg_01CrlfFixture00000000001", "claude-haiku-4-5", Usage(input_tokens=99, output_tokens=17),
        "end_turn", [], [], True, 7, None,
    ),
    "cr_only.sse": (
        "msg_01CrOnlyFixture0000000001", "claude-sonnet-4-6",
        Usage(input_tokens=41, output_tokens=64, cache_read_input_tokens=9000,
              cache_creation_input_tokens=700, cache_creation_5m=200, cache_creation_1h=500,
              web_fetch_requests=2),
        "max_tokens", [], [], True, 7, None,
    ),
}  # fmt: skip


def expected_summary(name: str) -> MessageSummary:
    mid, model, usage, stop, ids, names, complete, events, error = EXPECTED[name]
    err_type, err_msg = error or (None, None)
    return MessageSummary(mid, model, usage, stop, ids, names, err_type, err_msg, complete, events)


def test_every_fixture_has_expectations() -> None:
    assert sorted(EXPECTED) == sorted(p.name for p in FIXTURES.iterdir())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_summary(name: str) -> None:
    assert parse(read(name)) == expected_summary(name)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_split_at_every_offset(name: str) -> None:
    stream = read(name)
    whole = expected_summary(name)
    for i in range(len(stream) + 1):
        assert parse(stream[:i], stream[i:]) == whole, i
    assert parse(*[stream[i : i + 1] for i in range(len(stream))]) == whole


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(sorted(EXPECTED)), st.lists(st.integers(0, 10_000), max_size=12))
def test_fixture_in_random_chunkings(name: str, cuts: list[int]) -> None:
    stream = read(name)
    bounds = [0, *sorted({c % (len(stream) + 1) for c in cuts}), len(stream)]
    assert parse(*[stream[a:b] for a, b in itertools.pairwise(bounds)]) == expected_summary(name)


def sdk_snapshot(stream: bytes) -> Any:
    snapshot: Any = None
    bufs: dict[int, bytes] = {}
    for event in SDKDecoder().iter_bytes(iter([stream])):
        if (event.event or "").startswith(("message_", "content_block_")) and event.event != "message_stop":
            snapshot = accumulate_event(
                event=orjson.loads(event.data), current_snapshot=snapshot, json_bufs=bufs
            )
    return snapshot


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_usage_matches_the_sdks_own_accumulation(name: str) -> None:
    ours, theirs = parse(read(name)), sdk_snapshot(read(name))
    u = theirs.usage
    assert ours.usage.input_tokens == u.input_tokens
    assert ours.usage.output_tokens == u.output_tokens
    assert ours.usage.cache_read_input_tokens == (u.cache_read_input_tokens or 0)
    assert ours.usage.cache_creation_input_tokens == (u.cache_creation_input_tokens or 0)
    assert ours.usage.web_search_requests == (
        u.server_tool_use.web_search_requests if u.server_tool_use else 0
    )
    assert ours.usage.web_fetch_requests == (u.server_tool_use.web_fetch_requests if u.server_tool_use else 0)
    if name != "cr_only.sse":  # the one fixture whose delta carries a TTL split, which the SDK drops
        split = u.cache_creation
        assert ours.usage.cache_creation_5m == (split.ephemeral_5m_input_tokens if split else None)
        assert ours.usage.cache_creation_1h == (split.ephemeral_1h_input_tokens if split else None)
    tools = [(b.id, b.name) for b in theirs.content if b.type == "tool_use"]
    assert list(zip(ours.tool_use_ids, ours.tool_uses, strict=True)) == tools
    assert ours.stop_reason == theirs.stop_reason


# --- usage rules -------------------------------------------------------------------------------


def test_cumulative_deltas_are_assigned_not_added() -> None:
    s = parse(start({"input_tokens": 100, "output_tokens": 1}), delta({"output_tokens": 10}),
              delta({"output_tokens": 25}), STOP)  # fmt: skip
    assert s.usage.output_tokens == 25  # not 1 + 10 + 25, not 10 + 25
    assert s.usage.input_tokens == 100


def test_cache_fields_only_in_message_delta() -> None:
    s = parse(
        start({"input_tokens": 5, "output_tokens": 1}),
        delta({"output_tokens": 40, "cache_read_input_tokens": 3000, "cache_creation_input_tokens": 800}),
    )
    assert (s.usage.cache_read_input_tokens, s.usage.cache_creation_input_tokens) == (3000, 800)
    assert s.usage.total_input == 5 + 3000 + 800
    assert s.usage.write_buckets() == (800, 0)  # no split anywhere: all priced as 5-minute writes


def test_ttl_split_stays_from_start_unless_a_delta_repeats_it() -> None:
    split = {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 900}
    begin = start({"input_tokens": 1, "cache_creation_input_tokens": 1000, "cache_creation": split})
    kept = parse(begin, delta({"output_tokens": 7, "cache_creation_input_tokens": 1000}))
    assert (kept.usage.cache_creation_5m, kept.usage.cache_creation_1h) == (100, 900)
    new_split = {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 1200}
    changed = parse(begin, delta({"output_tokens": 7, "cache_creation_input_tokens": 1200,
                                  "cache_creation": new_split}))  # fmt: skip
    assert (changed.usage.cache_creation_5m, changed.usage.cache_creation_1h) == (0, 1200)
    assert changed.usage.write_buckets() == (0, 1200)


def test_null_fields_in_delta_do_not_overwrite() -> None:
    s = parse(
        start({"input_tokens": 300, "cache_read_input_tokens": 50, "output_tokens": 1}),
        delta({"output_tokens": 9, "input_tokens": None, "cache_read_input_tokens": None,
               "server_tool_use": None}),
    )  # fmt: skip
    assert (s.usage.input_tokens, s.usage.cache_read_input_tokens, s.usage.output_tokens) == (300, 50, 9)


@pytest.mark.parametrize("bad", [True, False, -1, 1.5, 10.0, "12", 2**53 + 1, 10**30, None, [], {}])
def test_invalid_numbers_are_ignored(bad: object) -> None:
    s = parse(
        start({"input_tokens": 70, "output_tokens": 2, "cache_creation": {"ephemeral_1h_input_tokens": 4}}),
        delta({"output_tokens": bad, "input_tokens": bad, "cache_read_input_tokens": bad,
               "cache_creation": {"ephemeral_1h_input_tokens": bad},
               "server_tool_use": {"web_search_requests": bad}}),
    )  # fmt: skip
    assert s.usage == Usage(input_tokens=70, output_tokens=2, cache_creation_1h=4)


def test_largest_exact_count_is_accepted() -> None:
    assert usage_from_mapping({"output_tokens": 2**53}).output_tokens == 2**53


def test_usage_from_mapping_overlays_base() -> None:
    base = Usage(input_tokens=1, output_tokens=2, web_search_requests=3, service_tier="standard")
    assert usage_from_mapping(None) == Usage()
    assert usage_from_mapping([1, 2], base) is base
    mapping = {
        "output_tokens": 5,
        "server_tool_use": {"web_fetch_requests": 4},
        "speed": "fast",
        "service_tier": 7,
    }
    got = usage_from_mapping(mapping, base)
    assert got == Usage(input_tokens=1, output_tokens=5, web_search_requests=3, web_fetch_requests=4,
                        service_tier="standard", speed="fast")  # fmt: skip


def test_wrong_shapes_are_ignored() -> None:
    s = parse(
        sse("message_start", {"type": "message_start", "message": "nope"}),
        sse("message_start", {"type": "message_start", "message": {"usage": [1], "id": 5, "model": None}}),
        sse("content_block_start", {"type": "content_block_start", "content_block": None}),
        sse("message_delta", {"type": "message_delta", "delta": 3, "usage": "many"}),
        sse("message_delta", [1, 2, 3]),
        b"event: message_delta\ndata: {not json\n\n",
        sse("error", {"type": "error", "error": "boom"}),
    )
    assert s == MessageSummary(events=7, error_type=UNKNOWN_ERROR_TYPE)


# --- events ------------------------------------------------------------------------------------


def test_unknown_events_are_ignored() -> None:
    s = parse(start({"input_tokens": 3, "output_tokens": 1}),
              sse("agent.thinking", {"type": "message_delta", "usage": {"output_tokens": 999}}),
              sse("message_delta_v2", {"usage": {"output_tokens": 998}}), STOP)  # fmt: skip
    assert (s.usage.output_tokens, s.events, s.complete) == (1, 4, True)


def test_events_without_event_field_use_the_payload_type() -> None:
    stream = (b'data: {"type":"message_start","message":{"usage":{"input_tokens":8,"output_tokens":1}}}\n\n'
              b'data: {"type":"content_block_delta","index":0}\n\n'
              b'data: {"type":"message_delta","usage":{"output_tokens":12}}\n\n'
              b'data: {"type":"message_stop"}\n\n')  # fmt: skip
    parser = StreamParser()
    assert [parser.feed(line + b"\n\n") for line in stream.split(b"\n\n")[:4]] == [False, True, False, False]
    s = parser.close()
    assert (s.usage.input_tokens, s.usage.output_tokens, s.complete) == (8, 12, True)


def test_message_stop_without_data_line_completes() -> None:
    assert parse(start({"input_tokens": 1}), b"event: message_stop\n").complete


def test_only_first_message_start_counts() -> None:
    s = parse(start({"input_tokens": 11}), start({"input_tokens": 22}))
    assert s.usage.input_tokens == 11


def test_first_error_wins_and_stream_is_incomplete() -> None:
    first = sse("error", {"type": "error", "error": {"type": "api_error", "message": "Internal"}})
    second = sse("error", {"type": "error", "error": {"type": "overloaded_error", "message": "x"}})
    s = parse(start({"input_tokens": 1}), first, second)
    assert (s.error_type, s.error_message, s.complete) == ("api_error", "Internal", False)


def test_tool_uses_come_from_block_starts_only() -> None:
    tool = {"type": "tool_use", "id": "toolu_1", "name": "grep", "input": {}}
    s = parse(
        sse("content_block_start", {"type": "content_block_start", "index": 0, "content_block": tool}),
        sse("content_block_delta", {"type": "content_block_delta", "delta": {"type": "tool_use", "id": "x"}}),
        sse(
            "content_block_start", {"content_block": {"type": "server_tool_use", "id": "srv", "name": "web"}}
        ),
        sse("content_block_start", {"content_block": {"type": "tool_use", "name": "no_id"}}),
        sse("content_block_start", {"content_block": {"type": "tool_use", "id": "toolu_2", "name": "ls"}}),
    )
    assert (s.tool_use_ids, s.tool_uses) == (["toolu_1", "toolu_2"], ["grep", "ls"])


def test_summary_is_readable_mid_stream() -> None:
    parser = StreamParser()
    parser.feed(start({"input_tokens": 640, "cache_read_input_tokens": 2, "output_tokens": 1}) + TEXT_START)
    assert parser.summary.usage == Usage(input_tokens=640, output_tokens=1, cache_read_input_tokens=2)
    parser.feed(delta({"output_tokens": 33}))
    assert parser.summary.usage.output_tokens == 33
    assert not parser.summary.complete


def test_close_counts_final_event_and_is_idempotent() -> None:
    parser = StreamParser()
    parser.feed(start({"input_tokens": 4}) + delta({"output_tokens": 8})[:-2])
    assert parser.summary.usage.output_tokens == 0  # the delta is not complete until EOF
    assert parser.close().usage.output_tokens == 8
    assert parser.close().events == 2


# --- time to first token -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["basic_response.txt", "thinking.sse", "server_tool_use.sse", "crlf.sse"])
def test_first_content_flag_fires_once_at_the_right_byte(name: str) -> None:
    stream = read(name)
    first = stream.index(b"event: content_block_start")
    # The event completes at the line end that closes its blank line: the second of a pair.
    eol = b"\r\n" if b"\r\n" in stream else b"\n"
    end = stream.index(eol + eol, first) + len(eol)
    parser = StreamParser()
    hits = [i for i in range(len(stream)) if parser.feed(stream[i : i + 1])]
    assert hits == [end]
    assert StreamParser().feed(stream) is True


def test_first_content_flag_on_a_delta_without_block_start() -> None:
    parser = StreamParser()
    assert parser.feed(start({"input_tokens": 1})) is False
    assert parser.feed(b"event: ping\ndata: {}\n\nevent: content_block_delta\ndata: {}\n") is False
    assert parser.feed(b"\n") is True
    assert parser.feed(TEXT_START + b"event: content_block_delta\ndata: {}\n\n") is False


def test_no_first_content_when_stream_errors_early() -> None:
    parser = StreamParser()
    assert parser.feed(start({"input_tokens": 1}) + sse("error", {"error": {"type": "api_error"}})) is False
    assert parser.close().error_type == "api_error"


# --- robustness --------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.integers(1, 64))
def test_arbitrary_bytes_never_raise(data: bytes, step: int) -> None:
    parser = StreamParser(max_event_bytes=128)
    for i in range(0, len(data), step):
        parser.feed(data[i : i + step])
    parser.close()
    assert parser.internal_errors == 0


COUNT_LIKE = st.integers(0, 5000) | st.sampled_from([-1, 2**53, 2**53 + 1]) | st.integers(-(2**70), 2**70)
JSON = st.recursive(
    st.none() | st.booleans() | COUNT_LIKE | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
SUB_KEYS = [
    "ephemeral_5m_input_tokens",
    "ephemeral_1h_input_tokens",
    "web_search_requests",
    "web_fetch_requests",
]
USAGE_KEYS = [
    *("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"),
    *("cache_creation", "server_tool_use", "service_tier", "speed"),
]
USAGE = st.dictionaries(
    st.sampled_from(USAGE_KEYS),
    COUNT_LIKE | JSON | st.dictionaries(st.sampled_from(SUB_KEYS), COUNT_LIKE | JSON, max_size=4),
    max_size=8,
)
MESSAGE_LIKE = st.fixed_dictionaries({}, optional={"usage": USAGE | JSON, "id": JSON, "model": JSON})
PAYLOAD = st.fixed_dictionaries(
    {},
    optional={"message": MESSAGE_LIKE | JSON, "usage": USAGE | JSON, "delta": JSON, "content_block": JSON,
              "error": JSON, "type": JSON},
)  # fmt: skip
NAMES = ["message_start", "message_delta", "content_block_start", "error", "message_stop", "x", ""]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(NAMES), PAYLOAD), max_size=6))
def test_hostile_json_never_raises_and_counts_stay_sane(events: list[tuple[str, dict[str, Any]]]) -> None:
    s = parse(b"".join(sse(name, payload) for name, payload in events))
    for f in dataclasses.fields(Usage):
        value = getattr(s.usage, f.name)
        assert value is None or (type(value) is int and 0 <= value <= 2**53) or type(value) is str


def test_deeply_nested_json_does_not_raise() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    s = parse(start({"input_tokens": 2}), b'event: message_delta\ndata: {"usage":' + deep + b"}\n\n")
    assert s.usage.input_tokens == 2


def test_oversized_event_is_dropped_and_counted() -> None:
    parser = StreamParser(max_event_bytes=1024)
    big = sse("content_block_delta", {"delta": {"text": "x" * 5000}})
    assert parser.feed(start({"input_tokens": 6}) + big) is False
    parser.feed(delta({"output_tokens": 21}) + STOP)
    s = parser.close()
    assert (parser.overflowed, s.usage.output_tokens, s.complete, s.events) == (1, 21, True, 3)


# --- JSON bodies -------------------------------------------------------------------------------

MESSAGE = {
    "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF", "type": "message", "role": "assistant",
    "model": "claude-sonnet-4-6",
    "content": [{"type": "text", "text": "Hi"},
                {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}},
                {"type": "tool_use", "id": "toolu_9", "name": "lookup", "input": {"q": 1}}],
    "stop_reason": "tool_use", "stop_sequence": None,
    "usage": {"input_tokens": 50, "cache_creation_input_tokens": 2051, "cache_read_input_tokens": 100000,
              "cache_creation": {"ephemeral_5m_input_tokens": 2051, "ephemeral_1h_input_tokens": 0},
              "output_tokens": 503, "server_tool_use": {"web_search_requests": 2, "web_fetch_requests": 0},
              "service_tier": "standard", "inference_geo": "global"},
}  # fmt: skip


def test_parse_message_body() -> None:
    s = parse_message_body(orjson.dumps(MESSAGE))
    assert s == MessageSummary(
        message_id="msg_013Zva2CMHLNnXjNJJKqJ2EF", model="claude-sonnet-4-6",
        usage=Usage(input_tokens=50, output_tokens=503, cache_read_input_tokens=100000,
                    cache_creation_input_tokens=2051, cache_creation_5m=2051, cache_creation_1h=0,
                    web_search_requests=2, service_tier="standard", inference_geo="global"),
        stop_reason="tool_use", tool_use_ids=["toolu_9"], tool_uses=["lookup"], complete=True,
    )  # fmt: skip
    assert s.usage.total_input == 50 + 100000 + 2051


ERROR = b'{"type":"error","error":{"type":"rate_limit_error","message":"Slow down"},"request_id":"req_1"}'


def test_parse_message_body_error_and_garbage() -> None:
    assert parse_message_body(ERROR) == MessageSummary(
        error_type="rate_limit_error", error_message="Slow down"
    )
    assert parse_message_body(b"<html>502 Bad Gateway</html>") == MessageSummary()
    assert parse_message_body(b"[1,2]") == MessageSummary()
    assert parse_message_body(b"\xff\xfe") == MessageSummary()
    assert parse_message_body(b'{"usage":{"input_tokens":3}}') == MessageSummary(usage=Usage(input_tokens=3))


def test_parse_error_body() -> None:
    assert parse_error_body(ERROR) == ("rate_limit_error", "Slow down")
    assert parse_error_body(b'{"error":{"type":"request_too_large"}}') == ("request_too_large", None)
    assert parse_error_body(b'{"error":"flat"}') == (None, None)
    assert parse_error_body(b"Request Entity Too Large") == (None, None)
    assert parse_error_body(b"") == (None, None)
