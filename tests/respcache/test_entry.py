"""Which stored answer a request may get, in which form (SPEC R-RC-3): Anthropic's JSON and SSE render
into each other where the route allows it; a Bedrock event stream is only ever replayed as stored."""

from __future__ import annotations

import orjson

from sidecar.respcache.entry import EVENTSTREAM, JSON, SSE, Entry, answer_for
from sidecar.sansio.replay import render_sse

MESSAGE = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "content": [{"type": "text", "text": "Hi"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 3, "output_tokens": 1},
}
FRAMES = b"\x00\x00\x00\x10\x00\x00\x00\x00not-really-frames"  # replayed as they are, never read


def entry(kind: str, body: bytes, content_type: bytes) -> Entry:
    return Entry(kind, 200, content_type, body, "app", 100.0, 200.0, 0.01, "claude-sonnet-4-5", "end_turn")


def test_an_event_stream_is_replayed_only_to_a_stream_request_byte_for_byte() -> None:
    stored = entry(EVENTSTREAM, FRAMES, b"application/vnd.amazon.eventstream")
    answer = answer_for(stored, True, 130.0)
    assert answer is not None and answer.body == FRAMES
    assert answer.headers == [
        (b"content-type", b"application/vnd.amazon.eventstream"),
        (b"x-sidecar-cache", b"hit"),
        (b"x-sidecar-cache-age", b"30"),
    ]
    assert answer_for(stored, False, 130.0) is None
    assert Entry.decode(stored.encode()) == stored


def test_without_rendering_only_the_stored_form_answers() -> None:
    as_json = entry(JSON, orjson.dumps(MESSAGE), b"application/json")
    as_sse = entry(SSE, render_sse(MESSAGE), b"text/event-stream")
    assert answer_for(as_json, True, 130.0) is not None  # rendered by default
    assert answer_for(as_json, True, 130.0, render=False) is None
    assert answer_for(as_sse, False, 130.0, render=False) is None
    same = answer_for(as_json, False, 130.0, render=False)
    assert same is not None and orjson.loads(same.body) == MESSAGE
