"""The API's cache diagnosis, read from JSON bodies and from every place a stream may carry it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sidecar.sansio.messages import PENDING, StreamParser, cache_miss_reason, parse_message_body

REASON = {"cache_miss_reason": {"type": "system_changed", "cache_missed_input_tokens": 1200}}


def sse(event: str, payload: object) -> bytes:
    return f"event: {event}\ndata: {json.dumps(payload)}\n\n".encode()


def stream(where: str, diagnostics: object) -> bytes:
    message: dict[str, Any] = {"id": "msg_1", "type": "message", "model": "m", "content": [], "usage": {}}
    delta: dict[str, Any] = {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {}}
    if where == "start":
        message["diagnostics"] = diagnostics
    elif where == "delta":
        delta["diagnostics"] = diagnostics
    else:
        delta["delta"]["diagnostics"] = diagnostics
    return b"".join(
        [
            sse("message_start", {"type": "message_start", "message": message}),
            sse("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {}}),
            sse("message_delta", delta),
            b'event: message_stop\ndata: {"type":"message_stop"}',  # no blank line at the end
        ]
    )


@pytest.mark.parametrize(
    ("diagnostics", "expected"),
    [
        (REASON, "system_changed"),
        ({"cache_miss_reason": {"type": "previous_message_not_found"}}, "previous_message_not_found"),
        ({"cache_miss_reason": None}, PENDING),
        (None, None),  # no divergence, or not asked for
        ({}, None),
        ({"cache_miss_reason": {"type": "Weird Type!"}}, "other"),
        ({"cache_miss_reason": {"type": "x" * 200}}, "other"),
        ({"cache_miss_reason": "oops"}, "other"),
    ],
)
def test_reason_values(diagnostics: object, expected: str | None) -> None:
    assert cache_miss_reason(diagnostics) == expected
    body = {"id": "msg_1", "type": "message", "model": "m", "content": [], "diagnostics": diagnostics}
    assert parse_message_body(json.dumps(body).encode()).api_cache_miss_reason == expected


@pytest.mark.parametrize("where", ["start", "delta", "delta-inner"])
def test_read_wherever_the_stream_carries_it_split_at_every_offset(where: str) -> None:
    data = stream(where, REASON)
    for cut in range(len(data) + 1):
        parser = StreamParser()
        parser.feed(data[:cut])
        parser.feed(data[cut:])
        summary = parser.close()
        assert summary.api_cache_miss_reason == "system_changed", cut
        assert parser.internal_errors == 0


def test_a_conclusive_reason_replaces_pending_never_the_reverse() -> None:
    pending = {"cache_miss_reason": None}
    message: dict[str, Any] = {"id": "m", "type": "message", "content": [], "diagnostics": pending}
    later = {"type": "message_delta", "delta": {}, "usage": {}, "diagnostics": REASON}
    parser = StreamParser()
    parser.feed(
        sse("message_start", {"type": "message_start", "message": message}) + sse("message_delta", later)
    )
    assert parser.close().api_cache_miss_reason == "system_changed"
    message["diagnostics"] = REASON
    later["diagnostics"] = pending
    parser = StreamParser()
    parser.feed(
        sse("message_start", {"type": "message_start", "message": message}) + sse("message_delta", later)
    )
    assert parser.close().api_cache_miss_reason == "system_changed"
