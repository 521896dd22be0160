"""Usage and outcome of one ``/v1/messages`` response, read from its SSE bytes or its JSON body.

Sans-I/O and tolerant: nothing here raises on any input. Malformed JSON, wrong types and insane numbers
(bool, float, string, negative, above 2**53) are ignored field by field.

Streaming usage follows the SDK's ``accumulate_event``: usage starts from ``message_start.message.usage``;
every ``message_delta.usage`` is *cumulative*, so each field it carries (non-null) replaces the running
value, ``output_tokens`` included; it is never added. Fields a delta omits keep their earlier value (the
``cache_creation`` TTL split thus stays from ``message_start`` unless a delta repeats it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from sidecar.core.usage import Usage
from sidecar.sansio.sse import DEFAULT_MAX_EVENT_BYTES, Chunk, RawEvent, SSEDecoder

# ``error_type`` for an in-band ``error`` event whose payload names no type: the HTTP status was 200,
# so without this the failure would be invisible.
UNKNOWN_ERROR_TYPE = "unknown_error"

_MAX_COUNT = 2**53  # beyond this a JSON number is not an exact token count
_MAX_TOOL_USES = 1024  # keeps a hostile stream from growing the lists without bound
# b"" is an event without an ``event:`` field.
_PARSED_EVENTS = frozenset({b"message_start", b"message_delta", b"content_block_start", b"error", b""})


@dataclass(slots=True)
class MessageSummary:
    """What one response said about itself. ``tool_use_ids`` and ``tool_uses`` are parallel lists."""

    message_id: str | None = None
    model: str | None = None  # the model the response reports
    usage: Usage = field(default_factory=Usage)  # frozen: replaced, never mutated
    stop_reason: str | None = None
    tool_use_ids: list[str] = field(default_factory=list)
    tool_uses: list[str] = field(default_factory=list)  # custom ``tool_use`` block names, in block order
    error_type: str | None = None  # from an in-band ``error`` event or an error JSON body
    error_message: str | None = None
    complete: bool = False  # saw ``message_stop`` (stream) / parsed a whole Message (JSON)
    events: int = 0  # SSE events decoded, pings included
    # The API's own cache diagnosis (``diagnostics.cache_miss_reason.type``): ``pending`` when the
    # object came with a null reason; None when no diagnosis came (not asked for, or no divergence).
    api_cache_miss_reason: str | None = None


def _pick(value: object, default: int) -> int:
    # ``type() is int`` rejects bool (an int subclass) as well as floats and strings.
    if type(value) is int and 0 <= value <= _MAX_COUNT:
        return value
    return default


def _pick_label(value: object, default: str | None) -> str | None:
    return value if isinstance(value, str) else default


_MAX_REASON = 48
PENDING = "pending"


def cache_miss_reason(diagnostics: object) -> str | None:
    """``diagnostics.cache_miss_reason.type`` of a response: the type (a short ``snake_case`` word, else
    ``other``), ``pending`` for a null reason, None when there is no diagnostics object."""
    if not isinstance(diagnostics, dict) or "cache_miss_reason" not in diagnostics:
        return None
    reason = diagnostics["cache_miss_reason"]
    if reason is None:
        return PENDING
    kind = reason.get("type") if isinstance(reason, dict) else None
    if isinstance(kind, str) and 0 < len(kind) <= _MAX_REASON and kind.replace("_", "").isalpha():
        return kind.lower()
    return "other"


def usage_from_mapping(obj: object, base: Usage | None = None) -> Usage:
    """``base`` (default: all zero) overlaid with every valid field of an API ``usage`` object.

    A field that is absent, null or invalid keeps ``base``'s value; a non-dict ``obj`` returns ``base``.
    ``cache_creation`` fills the TTL split; ``server_tool_use`` the web search/fetch request counts.
    """
    cur = Usage() if base is None else base
    if not isinstance(obj, dict):
        return cur
    split = obj.get("cache_creation")
    if not isinstance(split, dict):
        split = {}
    tools = obj.get("server_tool_use")
    if not isinstance(tools, dict):
        tools = {}
    split_5m = _pick(split.get("ephemeral_5m_input_tokens"), -1)
    split_1h = _pick(split.get("ephemeral_1h_input_tokens"), -1)
    # Built directly rather than with dataclasses.replace, which costs several times more per call.
    return Usage(
        input_tokens=_pick(obj.get("input_tokens"), cur.input_tokens),
        output_tokens=_pick(obj.get("output_tokens"), cur.output_tokens),
        cache_read_input_tokens=_pick(obj.get("cache_read_input_tokens"), cur.cache_read_input_tokens),
        cache_creation_input_tokens=_pick(
            obj.get("cache_creation_input_tokens"), cur.cache_creation_input_tokens
        ),
        cache_creation_5m=cur.cache_creation_5m if split_5m < 0 else split_5m,
        cache_creation_1h=cur.cache_creation_1h if split_1h < 0 else split_1h,
        web_search_requests=_pick(tools.get("web_search_requests"), cur.web_search_requests),
        web_fetch_requests=_pick(tools.get("web_fetch_requests"), cur.web_fetch_requests),
        service_tier=_pick_label(obj.get("service_tier"), cur.service_tier),
        inference_geo=_pick_label(obj.get("inference_geo"), cur.inference_geo),
        speed=_pick_label(obj.get("speed"), cur.speed),
    )


def _loads(data: bytes) -> dict[str, object] | None:
    try:
        obj = orjson.loads(data)
    except (ValueError, RecursionError):
        try:  # invalid UTF-8 is read as U+FFFD, as an SSE decoder would
            obj = orjson.loads(data.decode("utf-8", "replace"))
        except (ValueError, RecursionError):
            return None
    return obj if isinstance(obj, dict) else None


def _error_fields(obj: dict[str, object]) -> tuple[str | None, str | None]:
    err = obj.get("error")
    if not isinstance(err, dict):
        return None, None
    kind, message = err.get("type"), err.get("message")
    return (kind if isinstance(kind, str) else None, message if isinstance(message, str) else None)


def _apply_message(summary: MessageSummary, message: dict[str, object]) -> None:
    message_id, model = message.get("id"), message.get("model")
    if isinstance(message_id, str):
        summary.message_id = message_id
    if isinstance(model, str):
        summary.model = model
    summary.usage = usage_from_mapping(message.get("usage"), summary.usage)
    _note_diagnostics(summary, message)


def _note_diagnostics(summary: MessageSummary, obj: dict[str, object]) -> None:
    # A later, conclusive answer replaces "pending"; nothing replaces a conclusive one.
    if "diagnostics" in obj and summary.api_cache_miss_reason in (None, PENDING):
        found = cache_miss_reason(obj["diagnostics"])
        if found is not None:
            summary.api_cache_miss_reason = found


def _note_tool_use(summary: MessageSummary, block: object) -> None:
    if not isinstance(block, dict) or block.get("type") != "tool_use":
        return
    tool_id, name = block.get("id"), block.get("name")
    if isinstance(tool_id, str) and isinstance(name, str) and len(summary.tool_uses) < _MAX_TOOL_USES:
        summary.tool_use_ids.append(tool_id)
        summary.tool_uses.append(name)


def parse_error_body(body: bytes) -> tuple[str | None, str | None]:
    """``(error.type, error.message)`` of an Anthropic error JSON body; ``None`` for what is missing."""
    obj = _loads(body)
    return (None, None) if obj is None else _error_fields(obj)


def parse_message_body(body: bytes) -> MessageSummary:
    """Summarise a non-streaming response body: a ``Message``, an error object, or anything else.

    ``complete`` is set only for a JSON object of ``type`` ``"message"``; an error body fills
    ``error_type``/``error_message``; unparseable input yields an empty summary.
    """
    summary = MessageSummary()
    obj = _loads(body)
    if obj is None:
        return summary
    kind = obj.get("type")
    if kind == "error" or (kind != "message" and "error" in obj):
        summary.error_type, summary.error_message = _error_fields(obj)
        return summary
    _apply_message(summary, obj)
    reason = obj.get("stop_reason")
    if isinstance(reason, str):
        summary.stop_reason = reason
    content = obj.get("content")
    if isinstance(content, list):
        for block in content:
            _note_tool_use(summary, block)
    summary.complete = kind == "message"
    return summary


class StreamParser:
    """Feed raw SSE bytes of a ``/v1/messages`` stream; read :attr:`summary` at any time.

    The summary is live: after a disconnect it holds the best-known (partial) usage. Call :meth:`close`
    once at end of stream so a final event without a trailing blank line still counts. JSON is parsed
    only for the events that carry usage, ids or errors; text deltas and pings are only counted.
    """

    __slots__ = ("_decoder", "_saw_content", "_saw_start", "_summary", "internal_errors")

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._decoder = SSEDecoder(max_event_bytes)
        self._summary = MessageSummary()
        self._saw_content = False
        self._saw_start = False
        # Should stay 0: counts defects caught by the last-resort guard that keeps the byte path alive.
        self.internal_errors = 0

    @property
    def summary(self) -> MessageSummary:
        return self._summary

    @property
    def overflowed(self) -> int:
        """Events dropped for exceeding the decoder's size cap."""
        return self._decoder.overflowed

    def feed(self, chunk: Chunk) -> bool:
        """Consume a chunk. True exactly once per stream: for the chunk that completes the first content
        event (``content_block_start`` or ``content_block_delta``), the time-to-first-token mark."""
        try:
            events = self._decoder.feed_raw(chunk)
        except Exception:
            self.internal_errors += 1
            return False
        return self._handle(events)

    def feed_events(self, events: list[RawEvent]) -> bool:
        """Consume events already taken out of their framing (Bedrock's event-stream chunks): ``(type,
        data JSON)`` pairs, ``b""`` as the type when unknown. Returns as :meth:`feed` does."""
        return self._handle(events)

    def close(self) -> MessageSummary:
        """Flush the decoder at end of stream and return the summary. Safe to call more than once."""
        try:
            events = self._decoder.close_raw()
        except Exception:
            self.internal_errors += 1
            events = []
        self._handle(events)
        return self._summary

    def _handle(self, events: list[RawEvent]) -> bool:
        first = False
        for name, data in events:
            self._summary.events += 1
            try:
                first = self._on_event(name, data) or first
            except Exception:
                self.internal_errors += 1
        return first

    def _on_event(self, name: bytes, data: bytes) -> bool:
        if name == b"content_block_delta":
            return self._on_content()
        if name == b"ping":
            return False
        if name == b"message_stop":
            self._summary.complete = True
            return False
        if name not in _PARSED_EVENTS:
            return False  # unknown event types are ignored, as the API asks
        obj = _loads(data)
        if not name:
            # No ``event:`` field: the payload's own ``type`` names the event.
            kind = obj.get("type") if obj is not None else None
            return isinstance(kind, str) and kind != "" and self._on_event(kind.encode(), data)
        if name == b"content_block_start":
            if obj is not None:
                _note_tool_use(self._summary, obj.get("content_block"))
            return self._on_content()
        if name == b"error":
            self._on_error(obj)
        elif obj is not None:
            if name == b"message_delta":
                self._on_delta(obj)
            elif not self._saw_start:  # message_start; like the SDK, only the first one counts
                message = obj.get("message")
                if isinstance(message, dict):
                    self._saw_start = True
                    _apply_message(self._summary, message)
        return False

    def _on_content(self) -> bool:
        if self._saw_content:
            return False
        self._saw_content = True
        return True

    def _on_delta(self, obj: dict[str, object]) -> None:
        delta = obj.get("delta")
        if isinstance(delta, dict) and "stop_reason" in delta:
            reason = delta["stop_reason"]
            self._summary.stop_reason = reason if isinstance(reason, str) else None
        self._summary.usage = usage_from_mapping(obj.get("usage"), self._summary.usage)
        # The diagnosis may come with the final delta, at its top level or inside ``delta``.
        _note_diagnostics(self._summary, obj)
        if isinstance(delta, dict):
            _note_diagnostics(self._summary, delta)

    def _on_error(self, obj: dict[str, object] | None) -> None:
        if self._summary.error_type is not None:
            return  # the first error ends the stream for the SDK; later ones are noise
        kind, message = _error_fields(obj) if obj is not None else (None, None)
        self._summary.error_type = kind or UNKNOWN_ERROR_TYPE
        self._summary.error_message = message
