from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.core.usage import Usage
from sidecar.sansio.bedrock_stream import (
    INVALID_STREAM,
    BedrockStreamParser,
    InvocationMetrics,
    parse_invocation_metrics,
)
from sidecar.sansio.messages import MessageSummary, StreamParser
from sidecar.sansio.sse import SSEDecoder
from sidecar.testing.fake_eventstream import chunk_frame, encode_frame, exception_frame

FIXTURES = Path(__file__).parent.parent / "fixtures" / "sse"
# Recorded first-party streams whose events Bedrock would carry unchanged (pings included: harmless).
STREAMS = ("cache_hit.sse", "thinking.sse", "server_tool_use.sse", "error_after_start.sse")


def as_bedrock(sse: bytes) -> bytes:
    """The same Anthropic events framed as Bedrock frames them (one chunk event per SSE event)."""
    decoder = SSEDecoder()
    events = decoder.feed(sse) + decoder.close()
    return b"".join(chunk_frame(json.loads(e.data), padding=i) for i, e in enumerate(events))


def parse(data: bytes, step: int | None = None) -> tuple[MessageSummary, BedrockStreamParser]:
    parser = BedrockStreamParser()
    chunks = [data] if step is None else [data[i : i + step] for i in range(0, len(data), step)]
    for chunk in chunks:
        parser.feed(chunk)
    summary = parser.close()
    assert parser.internal_errors == 0
    return summary, parser


def first_party(sse: bytes) -> MessageSummary:
    parser = StreamParser()
    parser.feed(sse)
    return parser.close()


@pytest.mark.parametrize("name", STREAMS)
def test_the_same_events_give_the_same_summary_as_first_party(name: str) -> None:
    sse = (FIXTURES / name).read_bytes()
    summary, _ = parse(as_bedrock(sse))
    expected = first_party(sse)
    assert summary == expected
    assert summary.events == expected.events


@pytest.mark.parametrize("name", ["cache_hit.sse", "thinking.sse"])
def test_split_at_every_offset(name: str) -> None:
    data = as_bedrock((FIXTURES / name).read_bytes())
    whole, _ = parse(data)
    for cut in range(1, len(data), 3):
        parser = BedrockStreamParser()
        parser.feed(data[:cut])
        parser.feed(data[cut:])
        assert parser.close() == whole, cut


def message_start(usage: dict[str, Any]) -> dict[str, Any]:
    message = {
        "id": "msg_bdrk_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [],
        "stop_reason": None,
        "usage": usage,
    }
    return {"type": "message_start", "message": message}


TEXT_START = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
TEXT_DELTA = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}


def stop(metrics: dict[str, Any] | None) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "message_stop"}
    if metrics is not None:
        event["amazon-bedrock-invocationMetrics"] = metrics
    return event


def frames(*events: dict[str, Any]) -> bytes:
    return b"".join(chunk_frame(e) for e in events)


def test_usage_is_read_from_the_chunks_and_checked_against_the_metrics() -> None:
    data = frames(
        message_start({"input_tokens": 12, "output_tokens": 1, "cache_read_input_tokens": 100}),
        TEXT_START,
        TEXT_DELTA,
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 9}},
        stop(
            {
                "inputTokenCount": 12,
                "outputTokenCount": 9,
                "invocationLatency": 300,
                "firstByteLatency": 90,
                "cacheReadInputTokenCount": 100,
            }
        ),
    )
    summary, parser = parse(data, step=11)
    assert summary.usage == Usage(input_tokens=12, output_tokens=9, cache_read_input_tokens=100)
    assert summary.complete and summary.stop_reason == "end_turn"
    assert summary.message_id == "msg_bdrk_1"
    assert parser.metrics == InvocationMetrics(12, 9, 100, None)
    assert not parser.metrics_disagree


def test_metrics_that_disagree_are_flagged_and_the_stream_usage_kept() -> None:
    data = frames(
        message_start({"input_tokens": 12, "output_tokens": 1}),
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 9}},
        stop({"inputTokenCount": 12, "outputTokenCount": 10}),
    )
    summary, parser = parse(data)
    assert summary.usage.output_tokens == 9
    assert parser.metrics_disagree


def test_metrics_stand_in_when_the_stream_carried_no_usage() -> None:
    data = frames(
        TEXT_START,
        TEXT_DELTA,
        stop({"inputTokenCount": 30, "outputTokenCount": 4, "cacheWriteInputTokenCount": 2000}),
    )
    summary, parser = parse(data)
    assert summary.usage == Usage(input_tokens=30, output_tokens=4, cache_creation_input_tokens=2000)
    assert not parser.metrics_disagree


def test_an_exception_frame_is_the_streams_error() -> None:
    data = frames(message_start({"input_tokens": 5, "output_tokens": 1}), TEXT_START) + exception_frame(
        "modelStreamErrorException", "The model stream broke"
    )
    summary, _ = parse(data)
    assert summary.error_type == "modelStreamErrorException"
    assert summary.error_message == "The model stream broke"
    assert not summary.complete
    assert summary.usage.input_tokens == 5


def test_an_error_frame_uses_its_error_code() -> None:
    data = encode_frame(
        {":message-type": "error", ":error-code": "InternalFailure", ":error-message": "boom"}, b""
    )
    summary, _ = parse(data)
    assert (summary.error_type, summary.error_message) == ("InternalFailure", "boom")


def test_the_first_error_wins() -> None:
    data = exception_frame("throttlingException", "slow") + exception_frame("internalServerException", "x")
    summary, _ = parse(data)
    assert summary.error_type == "throttlingException"


def test_a_corrupt_frame_stops_the_reading_and_marks_the_stream() -> None:
    good = frames(message_start({"input_tokens": 5, "output_tokens": 1}))
    bad = bytearray(chunk_frame(TEXT_START))
    bad[-1] ^= 1
    parser = BedrockStreamParser()
    assert parser.feed(good) is False
    assert parser.feed(bytes(bad)) is False
    assert parser.feed(chunk_frame(TEXT_DELTA)) is False  # nothing after the bad frame is read
    summary = parser.close()
    assert summary.error_type == INVALID_STREAM
    assert summary.usage.input_tokens == 5


def test_first_content_fires_once_on_the_chunk_that_completes_it() -> None:
    start = frames(message_start({"input_tokens": 1, "output_tokens": 1}))
    block = chunk_frame(TEXT_START)
    parser = BedrockStreamParser()
    assert parser.feed(start) is False
    assert parser.feed(block[:-1]) is False
    assert parser.feed(block[-1:]) is True
    assert parser.feed(chunk_frame(TEXT_DELTA)) is False


def test_other_frames_and_bad_chunks_are_ignored() -> None:
    data = (
        encode_frame({":message-type": "event", ":event-type": "initial-response"}, b"{}")
        + encode_frame({":message-type": "event", ":event-type": "chunk"}, b'{"bytes": "not base64!"}')
        + encode_frame({":message-type": "event", ":event-type": "chunk"}, b"not json")
        + encode_frame({":message-type": "event", ":event-type": "chunk"}, b'{"bytes": 5}')
        + frames(message_start({"input_tokens": 3, "output_tokens": 1}))
    )
    summary, _ = parse(data)
    assert summary.usage.input_tokens == 3
    assert summary.events == 1


def test_an_event_whose_json_does_not_start_with_its_type_is_still_read() -> None:
    event = json.dumps({"message": message_start({"input_tokens": 7})["message"], "type": "message_start"})
    payload = json.dumps({"bytes": base64.b64encode(event.encode()).decode()}).encode()
    data = encode_frame({":message-type": "event", ":event-type": "chunk"}, payload)
    summary, _ = parse(data)
    assert summary.usage.input_tokens == 7


@pytest.mark.parametrize(
    "raw",
    [
        b"{}",
        b"[]",
        b"not json",
        b'{"amazon-bedrock-invocationMetrics": {"inputTokenCount": "3"}}',
        b'{"amazon-bedrock-invocationMetrics": {"inputTokenCount": -1, "outputTokenCount": 2}}',
    ],
)
def test_malformed_metrics_are_ignored(raw: bytes) -> None:
    assert parse_invocation_metrics(raw) is None


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=400), step=st.integers(1, 50))
def test_arbitrary_bytes_never_raise(data: bytes, step: int) -> None:
    parser = BedrockStreamParser()
    for i in range(0, len(data), step):
        parser.feed(data[i : i + step])
    summary = parser.close()
    assert parser.internal_errors == 0
    assert dataclasses.is_dataclass(summary)
