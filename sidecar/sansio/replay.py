"""A stored ``/v1/messages`` answer in the other form (SPEC R-RC-3): a JSON ``Message`` rendered as an
event stream, and a recorded event stream accumulated into the JSON ``Message``.

Pure and total: nothing here raises on any input; what cannot be read is ``None``.

:func:`render_sse` writes the events the API would have sent for the message, so that the official SDKs'
``accumulate_event`` (every version in use: 0.x and 2.x) rebuilds an equal ``Message``:
``message_start`` carries the message without content, stop reason or stop sequence and with its final
usage (older SDKs copy only ``output_tokens`` from ``message_delta``); each block starts empty and gets
its text, thinking, signature or tool input as one delta (apps printing ``text_stream`` see the text);
blocks with nothing to stream (server tool results, redacted thinking, server tool calls, whose input
older SDKs do not accumulate) start whole; ``message_delta`` carries the stop fields and the usage again.

:class:`MessageAccumulator` does what the SDK does with a stream, on the stored bytes: the result is the
JSON body a non-streaming call would have returned, or ``None`` when the stream is not a complete
answer (no ``message_start`` or ``message_stop``, an in-band ``error``, tool input that is not JSON).
"""

from __future__ import annotations

from typing import Any

import orjson

from sidecar.sansio.sse import Chunk, RawEvent, SSEDecoder

# Top-level message fields a ``message_delta`` sets (the SDK assigns ``stop_*``; ``container`` only when
# not null); ``stop_reason`` and ``stop_sequence`` are null in ``message_start``, ``stop_details`` too.
_STOP_FIELDS = ("stop_reason", "stop_sequence", "stop_details")
_DELTA_EXTRA = ("container", "context_management")
_KNOWN = frozenset(
    {
        b"message_start",
        b"content_block_start",
        b"content_block_delta",
        b"content_block_stop",
        b"message_delta",
        b"message_stop",
        b"error",
    }
)
_MAX_STORED_BYTES = 256 << 20  # the decoder's per-event cap for a stored stream: a whole answer fits


def _event(name: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def _delta(index: int, delta: dict[str, Any]) -> bytes:
    return _event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})


def _block_events(index: int, block: Any) -> list[bytes]:
    kind = block.get("type") if isinstance(block, dict) else None
    start: Any = block
    deltas: list[bytes] = []
    if kind == "text" and isinstance(block.get("text"), str):
        start = {**block, "text": ""}
        if block["text"]:
            deltas.append(_delta(index, {"type": "text_delta", "text": block["text"]}))
    elif kind == "thinking" and isinstance(block.get("thinking"), str):
        start = {**block, "thinking": ""}
        if block["thinking"]:
            deltas.append(_delta(index, {"type": "thinking_delta", "thinking": block["thinking"]}))
        if isinstance(block.get("signature"), str):
            start["signature"] = ""
            deltas.append(_delta(index, {"type": "signature_delta", "signature": block["signature"]}))
    elif kind == "tool_use" and isinstance(block.get("input"), dict):
        start = {**block, "input": {}}
        partial = orjson.dumps(block["input"]).decode() if block["input"] else ""
        deltas.append(_delta(index, {"type": "input_json_delta", "partial_json": partial}))
    return [
        _event(
            "content_block_start", {"type": "content_block_start", "index": index, "content_block": start}
        ),
        *deltas,
        _event("content_block_stop", {"type": "content_block_stop", "index": index}),
    ]


def render_sse(message: dict[str, Any]) -> bytes:
    """The event stream of a JSON ``Message`` (a dict as parsed from a 200 answer), ending in
    ``message_stop``; the SDKs accumulate it into an equal ``Message``."""
    start = {key: value for key, value in message.items() if key != "content"}
    start["content"] = []
    for key in _STOP_FIELDS:
        if key in start:
            start[key] = None
    content = message.get("content")
    blocks = content if isinstance(content, list) else []
    usage = message.get("usage") if isinstance(message.get("usage"), dict) else {}
    delta = {key: message.get(key) for key in _STOP_FIELDS if key in message or key != "stop_details"}
    delta.update({key: message[key] for key in _DELTA_EXTRA if key in message})
    parts = [_event("message_start", {"type": "message_start", "message": start})]
    for index, block in enumerate(blocks):
        parts += _block_events(index, block)
    parts.append(_event("message_delta", {"type": "message_delta", "delta": delta, "usage": usage}))
    parts.append(_event("message_stop", {"type": "message_stop"}))
    return b"".join(parts)


def _loads(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except (ValueError, RecursionError):
        return None


class MessageAccumulator:
    """Feed a recorded ``/v1/messages`` event stream; :meth:`close` returns the ``Message`` it amounts to.

    Split-invariant (the SSE decoder is), so chunks may be fed as they were relayed. After a defect in the
    stream (see the module docstring) the rest is skipped and :meth:`close` returns ``None``.
    """

    __slots__ = ("_broken", "_decoder", "_json", "_message", "_stopped")

    def __init__(self) -> None:
        self._decoder = SSEDecoder(_MAX_STORED_BYTES)
        self._message: dict[str, Any] | None = None
        self._json: dict[int, list[str]] = {}  # tool input JSON by block index, until the block stops
        self._broken = False
        self._stopped = False

    def feed(self, chunk: Chunk) -> None:
        self._handle(self._decoder.feed_raw(chunk))

    def close(self) -> dict[str, Any] | None:
        """The accumulated message, or ``None`` for anything but a complete answer."""
        self._handle(self._decoder.close_raw())
        if self._broken or not self._stopped or self._message is None or self._decoder.overflowed:
            return None
        try:
            for index in list(self._json):
                self._finish_input(index)
        except (IndexError, TypeError):
            return None
        return None if self._broken else self._message

    def _handle(self, events: list[RawEvent]) -> None:
        for name, data in events:
            if self._broken:
                return
            try:
                self._on_event(name, data)
            except (KeyError, IndexError, TypeError, AttributeError, ValueError):
                self._broken = True

    def _on_event(self, name: bytes, data: bytes) -> None:
        if name and name not in _KNOWN:
            return  # pings and event types this reader does not know, as the API asks
        if name == b"message_stop":
            self._stopped = True
            return
        obj = _loads(data)
        if not isinstance(obj, dict):
            self._broken = True
            return
        kind = name or str(obj.get("type", "")).encode()
        message = self._message
        if kind == b"message_start" and message is None:
            start = obj["message"]
            if not isinstance(start, dict):
                raise TypeError("message_start without a message")
            self._message = {**start, "content": list(start.get("content") or [])}
        elif kind == b"error":
            self._broken = True
        elif kind == b"message_stop":
            self._stopped = True
        elif message is None:
            return  # the SDK refuses content before message_start; nothing to accumulate into
        elif kind == b"content_block_start":
            message["content"].append(dict(obj["content_block"]))
        elif kind == b"content_block_delta":
            self._on_delta(message["content"][int(obj["index"])], int(obj["index"]), obj["delta"])
        elif kind == b"content_block_stop":
            self._finish_input(int(obj["index"]))
        elif kind == b"message_delta":
            _apply_message_delta(message, obj)

    def _on_delta(self, block: dict[str, Any], index: int, delta: dict[str, Any]) -> None:
        kind = delta.get("type")
        if kind == "text_delta":
            block["text"] = str(block.get("text", "")) + delta["text"]
        elif kind == "input_json_delta":
            self._json.setdefault(index, []).append(delta["partial_json"])
        elif kind == "thinking_delta":
            block["thinking"] = str(block.get("thinking", "")) + delta["thinking"]
        elif kind == "signature_delta":
            block["signature"] = delta["signature"]
        elif kind == "citations_delta":
            block["citations"] = [*(block.get("citations") or []), delta["citation"]]

    def _finish_input(self, index: int) -> None:
        parts = self._json.pop(index, None)
        if not parts or self._message is None:
            return
        text = "".join(parts)
        if not text:
            return
        value = _loads(text.encode())
        if value is None and text.strip() != "null":
            self._broken = True
            return
        self._message["content"][index]["input"] = value


def _apply_message_delta(message: dict[str, Any], obj: dict[str, Any]) -> None:
    """Stop fields and cumulative usage: each field given replaces the running value (never added)."""
    delta = obj.get("delta")
    if isinstance(delta, dict):
        for key, value in delta.items():
            if key != "type" and (value is not None or key in _STOP_FIELDS):
                message[key] = value
    usage = obj.get("usage")
    if isinstance(usage, dict):
        current = message.get("usage")
        merged = dict(current) if isinstance(current, dict) else {}
        merged.update({key: value for key, value in usage.items() if value is not None})
        message["usage"] = merged


def message_from_sse(data: bytes) -> dict[str, Any] | None:
    """The JSON ``Message`` a complete recorded stream amounts to (see :class:`MessageAccumulator`)."""
    acc = MessageAccumulator()
    acc.feed(data)
    return acc.close()
