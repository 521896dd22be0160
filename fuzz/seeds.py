"""Seed inputs for the fuzz targets: small valid examples the engines mutate from.

Each seed is a complete :func:`fuzz.targets.one_input` input (target byte, parameter bytes, payload).
The recorded SSE streams under ``tests/fixtures/sse`` are added when the checkout has them.
"""

from __future__ import annotations

from pathlib import Path

import orjson

from fuzz.targets import NAMES

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "sse"

_STREAM = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","model":"claude-haiku-4-5",'
    b'"usage":{"input_tokens":12,"cache_read_input_tokens":3,"cache_creation":'
    b'{"ephemeral_5m_input_tokens":4,"ephemeral_1h_input_tokens":0}}}}\n\n'
    b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
    b'"content_block":{"type":"tool_use","id":"toolu_1","name":"search","input":{}}}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"input_json_delta","partial_json":"{}"}}\n\n'
    b"event: ping\ndata: {}\n\n"
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"tool_use"},'
    b'"usage":{"output_tokens":7}}\n\n'
    b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
)

_REQUESTS: tuple[object, ...] = (
    {
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "system": "You are terse. " * 40,
        "tools": [{"name": "search", "input_schema": {"type": "object"}}],
        "metadata": {"user_id": '{"session_id": "0f5e3a4c-1d2b"}'},
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "search"}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "is_error": True}]},
        ],
    },
    {
        "model": "claude-haiku-4-5",
        "system": [
            {"type": "text", "text": "a" * 300, "cache_control": {"type": "ephemeral", "ttl": "1h"}},
            {"type": "text", "text": "b" * 300},
        ],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "x", "cache_control": None}]}],
        "stream": True,
    },
    {"cache_control": {"type": "ephemeral"}, "system": "s", "messages": []},
)

_MESSAGE = {
    "id": "msg_1",
    "type": "message",
    "model": "claude-haiku-4-5",
    "content": [{"type": "tool_use", "id": "toolu_1", "name": "search", "input": {}}],
    "stop_reason": "tool_use",
    "usage": {"input_tokens": 5, "output_tokens": 9, "server_tool_use": {"web_search_requests": 1}},
}

_HEADERS = (
    b"x-api-key:sk-ant-api03-seed\nauthorization:Bearer seed\nx-session-id: s-1\nx-app-name:billing\n"
    b"connection:keep-alive, x-drop\nx-drop:1\nx-sidecar-prompt-cache:force\nhost:evil.example\n"
    b"traceparent:00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
)


_RATELIMITS = (
    b"anthropic-ratelimit-requests-limit:4000\nanthropic-ratelimit-requests-remaining:3999\n"
    b"anthropic-ratelimit-tokens-reset:2026-11-20T10:00:00Z\nanthropic-ratelimit-unified-status:allowed\n"
    b"anthropic-ratelimit-unified-5h-utilization:0.93\nanthropic-ratelimit-unified-7d-reset:1763700000"
)


def _seed(target: str, params: bytes, payload: bytes) -> bytes:
    return bytes([NAMES.index(target)]) + params + payload


def seeds() -> list[bytes]:
    """Every seed, ready for :func:`fuzz.targets.one_input`."""
    streams = [_STREAM]
    if FIXTURES.is_dir():
        streams += [p.read_bytes() for p in sorted(FIXTURES.iterdir()) if p.is_file()]
    out = []
    for stream in streams:
        out += [_seed("sse_decoder", b"\x40\x03", stream), _seed("stream_parser", b"\x80\x05", stream)]
    for request in _REQUESTS:
        body = orjson.dumps(request)
        out += [_seed("request_inspection", b"", body), _seed("cache_planner", b"\x02\x01", body)]
        out.append(_seed("cache_planner", b"\x04\x03", body))
    message = orjson.dumps(_MESSAGE)
    out += [_seed("message_body", b"", message), _seed("headers_and_identity", b"", _HEADERS)]
    out += [_seed("content_decoding", bytes([k]), _STREAM) for k in (0, 1, 2)]
    out += [_seed("prompt_prefix", b"", orjson.dumps(r)) for r in _REQUESTS]
    out.append(_seed("ratelimit_headers", b"", _RATELIMITS))
    return out
