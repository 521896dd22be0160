"""Usage and outcome of a Bedrock ``InvokeModelWithResponseStream`` answer, read from its event stream.

Sans-I/O and tolerant like :class:`sidecar.sansio.messages.StreamParser`, whose event logic it reuses:
each ``chunk`` event carries ``{"bytes": "<base64 of one Anthropic stream event>"}`` (sometimes with a
padding key ``"p"``), and those decoded events are read exactly as first-party SSE events are.

Bedrock adds ``amazon-bedrock-invocationMetrics`` to ``message_stop``; it is kept as a cross-check of the
usage read from ``message_start``/``message_delta`` (and stands in for it when the stream carried none).
An ``exception`` frame (``:exception-type`` = ``throttlingException``, ``modelStreamErrorException``…)
or an ``error`` frame (``:error-code``) is the stream's error: its type becomes ``error_type``. A frame
that fails its checks (CRC, lengths) ends the reading, not the relay: ``error_type`` becomes
``invalid_event_stream`` and the client, which checks the same CRCs, sees the same bytes.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

import orjson

from sidecar.core.usage import Usage
from sidecar.sansio.eventstream import EventStreamDecoder, EventStreamError, Frame
from sidecar.sansio.messages import MessageSummary, StreamParser

INVALID_STREAM = "invalid_event_stream"
METRICS_KEY = "amazon-bedrock-invocationMetrics"
_TYPE_PREFIX = b'{"type":"'
_MAX_ERROR_TYPE = 64  # a label value: AWS exception names are short
_MAX_COUNT = 2**53


@dataclass(frozen=True, slots=True)
class InvocationMetrics:
    """Bedrock's own count of the call (``message_stop``), in Anthropic's buckets."""

    input_tokens: int
    output_tokens: int
    cache_read_input_tokens: int | None
    cache_creation_input_tokens: int | None

    def agrees_with(self, usage: Usage) -> bool:
        """True when every count Bedrock gave equals the stream's usage."""
        pairs = (
            (self.input_tokens, usage.input_tokens),
            (self.output_tokens, usage.output_tokens),
            (self.cache_read_input_tokens, usage.cache_read_input_tokens),
            (self.cache_creation_input_tokens, usage.cache_creation_input_tokens),
        )
        return all(mine is None or mine == theirs for mine, theirs in pairs)

    def as_usage(self) -> Usage:
        return Usage(
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cache_read_input_tokens=self.cache_read_input_tokens or 0,
            cache_creation_input_tokens=self.cache_creation_input_tokens or 0,
        )


def _count(obj: dict[str, object], key: str) -> int | None:
    value = obj.get(key)
    return value if type(value) is int and 0 <= value <= _MAX_COUNT else None


def parse_invocation_metrics(event_json: bytes) -> InvocationMetrics | None:
    """The metrics object of a decoded ``message_stop`` event, or ``None`` when absent or malformed."""
    try:
        obj = orjson.loads(event_json)
    except (ValueError, RecursionError):
        return None
    metrics = obj.get(METRICS_KEY) if isinstance(obj, dict) else None
    if not isinstance(metrics, dict):
        return None
    n_in, n_out = _count(metrics, "inputTokenCount"), _count(metrics, "outputTokenCount")
    if n_in is None or n_out is None:
        return None
    read = _count(metrics, "cacheReadInputTokenCount")
    write = _count(metrics, "cacheWriteInputTokenCount")
    return InvocationMetrics(n_in, n_out, read, write)


def _event_type(data: bytes) -> bytes:
    """The event's ``type`` when the JSON starts with it (the API's compact form), else ``b""`` (the
    event parser then reads the type from the parsed JSON)."""
    if data.startswith(_TYPE_PREFIX):
        end = data.find(b'"', len(_TYPE_PREFIX))
        if end > 0:
            return data[len(_TYPE_PREFIX) : end]
    return b""


def _chunk_event(payload: bytes) -> bytes | None:
    try:
        obj = orjson.loads(payload)
        encoded = obj.get("bytes") if isinstance(obj, dict) else None
        return base64.b64decode(encoded, validate=True) if isinstance(encoded, str) else None
    except (ValueError, RecursionError, binascii.Error):
        return None


def _exception_message(payload: bytes) -> str | None:
    try:
        obj = orjson.loads(payload)
    except (ValueError, RecursionError):
        return None
    message = obj.get("message") if isinstance(obj, dict) else None
    if not isinstance(message, str):
        message = obj.get("Message") if isinstance(obj, dict) else None
    return message if isinstance(message, str) else None


class BedrockStreamParser:
    """Feed the raw bytes of an event-stream answer; read :attr:`summary` at any time.

    Same contract as ``StreamParser``: ``feed`` returns True once, for the chunk that completes the first
    content event; call :meth:`close` once at end of stream. Never raises.
    """

    __slots__ = ("_events", "_frames", "internal_errors", "metrics", "metrics_disagree")

    def __init__(self) -> None:
        self._frames = EventStreamDecoder()
        self._events = StreamParser()
        self.metrics: InvocationMetrics | None = None
        self.metrics_disagree = False  # Bedrock's count differs from the stream's usage
        self.internal_errors = 0

    @property
    def summary(self) -> MessageSummary:
        return self._events.summary

    def feed(self, chunk: bytes | bytearray | memoryview) -> bool:
        try:
            frames = self._frames.feed(chunk)
        except EventStreamError:
            self._set_error(INVALID_STREAM, "the event stream failed its checks")
            return False
        first = False
        for frame in frames:
            try:
                first = self._on_frame(frame) or first
            except Exception:
                self.internal_errors += 1
        return first

    def close(self) -> MessageSummary:
        """End of stream: reconcile with Bedrock's metrics and return the summary. Safe to repeat."""
        self._frames.close()
        summary = self._events.close()
        self.internal_errors += self._events.internal_errors
        self._events.internal_errors = 0
        metrics = self.metrics
        if metrics is not None:
            usage = summary.usage
            if not (usage.input_tokens or usage.output_tokens or usage.total_input):
                summary.usage = metrics.as_usage()  # the stream said nothing about usage: Bedrock's count
            elif not metrics.agrees_with(usage):
                self.metrics_disagree = True
        return summary

    def _on_frame(self, frame: Frame) -> bool:
        kind = frame.text(":message-type")
        if kind == "event":
            if frame.text(":event-type") != "chunk":
                return False
            data = _chunk_event(frame.payload)
            if data is None:
                return False
            name = _event_type(data)
            if name == b"message_stop":
                self.metrics = parse_invocation_metrics(data) or self.metrics
            return self._events.feed_events([(name, data)])
        if kind == "exception":
            self._set_error(frame.text(":exception-type") or "exception", _exception_message(frame.payload))
        elif kind == "error":
            self._set_error(frame.text(":error-code") or "error", frame.text(":error-message"))
        return False

    def _set_error(self, error_type: str, message: str | None) -> None:
        summary = self._events.summary
        if summary.error_type is None:  # the first error ends the stream for the client
            summary.error_type = error_type[:_MAX_ERROR_TYPE]
            summary.error_message = message


__all__ = ["BedrockStreamParser", "InvocationMetrics", "parse_invocation_metrics"]
