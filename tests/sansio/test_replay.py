"""A stored answer in the other form: recorded streams accumulated to JSON, JSON rendered as a stream that
the official SDK accumulates to the same ``Message``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from anthropic._streaming import SSEDecoder as SDKDecoder
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message

from sidecar.sansio.replay import MessageAccumulator, message_from_sse, render_sse
from sidecar.sansio.sse import SSEDecoder

FIXTURES = Path(__file__).parent.parent / "fixtures" / "sse"
COMPLETE = (
    "basic_response.txt",
    "cache_hit.sse",
    "cr_only.sse",
    "crlf.sse",
    "server_tool_use.sse",
    "stream-a-refusal.sse",
    "thinking.sse",
    "tool_use_response.txt",
)
NOT_ANSWERS = ("truncated.sse", "error_after_start.sse", "incomplete_partial_json_response.txt")


def read(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def sdk_final(stream: bytes) -> dict[str, Any]:
    """What the 2.x SDK's ``get_final_message`` accumulates from ``stream``, as a plain ``Message``."""
    snapshot = None
    bufs: dict[int, bytes] = {}
    for event in SDKDecoder().iter_bytes(iter([stream])):
        if (event.event or "").startswith(("message_", "content_block_")) and event.event != "message_stop":
            data = orjson.loads(event.data)
            snapshot = accumulate_event(event=data, current_snapshot=snapshot, json_bufs=bufs)
    assert snapshot is not None
    dumped = snapshot.model_dump()
    for block in dumped["content"]:
        block.pop("parsed_output", None)  # the streaming helper's ParsedMessage adds it
    return dumped


def test_a_tool_use_stream_accumulates_to_the_json_message() -> None:
    message = message_from_sse(read("tool_use_response.txt"))
    assert message is not None
    assert message["content"] == [
        {"type": "text", "text": "I'll check the current weather in Paris for you."},
        {
            "type": "tool_use",
            "id": "toolu_01NRLabsLyVHZPKxbKvkfSMn",
            "name": "get_weather",
            "caller": {"type": "direct"},
            "input": {"location": "Paris"},
        },
    ]
    assert message["stop_reason"] == "tool_use" and message["stop_sequence"] is None
    # message_delta usage is cumulative: it replaces, never adds.
    assert message["usage"]["output_tokens"] == 65 and message["usage"]["input_tokens"] == 377


def test_thinking_and_server_tools_accumulate() -> None:
    thinking = message_from_sse(read("thinking.sse"))
    assert thinking is not None
    block = thinking["content"][0]
    assert block["type"] == "thinking" and block["thinking"].endswith("= 12231.")
    assert block["signature"] == "c3ludGhldGljLXNpZ25hdHVyZS10aGlua2luZy1maXh0dXJl"
    assert thinking["usage"]["output_tokens_details"] == {"thinking_tokens": 71}
    web = message_from_sse(read("server_tool_use.sse"))
    assert web is not None
    assert web["content"][0]["input"] == {"query": "weather NYC today"}
    assert web["content"][1]["type"] == "web_search_tool_result"
    assert web["usage"]["server_tool_use"] == {"web_search_requests": 1, "web_fetch_requests": 0}


@pytest.mark.parametrize("name", NOT_ANSWERS)
def test_a_stream_that_is_not_a_complete_answer_gives_none(name: str) -> None:
    assert message_from_sse(read(name)) is None


def test_defects_give_none() -> None:
    stream = read("tool_use_response.txt")
    assert message_from_sse(stream.replace(b'"is\\"}"', b'"is\\""')) is None  # tool input not JSON
    assert message_from_sse(stream.replace(b"event: message_start", b"event: x", 1)) is None
    assert message_from_sse(b"") is None
    assert message_from_sse(b"\xff\x00garbage\n\n") is None


@pytest.mark.parametrize("name", COMPLETE)
def test_accumulation_is_split_invariant(name: str) -> None:
    data = read(name)
    whole = message_from_sse(data)
    assert whole is not None
    for cut in range(1, len(data)):
        acc = MessageAccumulator()
        acc.feed(data[:cut])
        acc.feed(data[cut:])
        assert acc.close() == whole, cut


@pytest.mark.parametrize("name", COMPLETE)
def test_a_rendered_stream_accumulates_back_to_the_message(name: str) -> None:
    message = message_from_sse(read(name))
    assert message is not None
    assert message_from_sse(render_sse(message)) == message


@pytest.mark.parametrize("name", COMPLETE)
def test_the_sdk_accumulates_the_rendering_to_the_same_message(name: str) -> None:
    message = message_from_sse(read(name))
    assert message is not None
    assert sdk_final(render_sse(message)) == Message.model_validate(message).model_dump()


def test_the_rendering_streams_text_and_tool_input_as_deltas() -> None:
    message = message_from_sse(read("tool_use_response.txt"))
    assert message is not None
    decoder = SSEDecoder()
    events = decoder.feed(render_sse(message)) + decoder.close()
    names = [e.event for e in events]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    start = orjson.loads(events[0].data)["message"]
    assert start["content"] == [] and start["stop_reason"] is None
    deltas = [orjson.loads(e.data)["delta"] for e in events if e.event == "content_block_delta"]
    assert deltas == [
        {"type": "text_delta", "text": "I'll check the current weather in Paris for you."},
        {"type": "input_json_delta", "partial_json": '{"location":"Paris"}'},
    ]
    final = orjson.loads(events[-2].data)
    assert final["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert final["usage"] == message["usage"]


def test_the_rendering_of_an_empty_tool_input_and_odd_blocks() -> None:
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "now", "input": {}},
            {"type": "redacted_thinking", "data": "abc"},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "stop_details": None,
        "container": {"id": "c1", "expires_at": "2026-01-01T00:00:00Z"},
        "usage": {"input_tokens": 3, "output_tokens": 2},
    }
    again = message_from_sse(render_sse(message))
    assert again == message
