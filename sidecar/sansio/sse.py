"""Incremental decoder for ``text/event-stream`` bytes (the WHATWG event-stream format).

Sans-I/O: the caller pumps bytes in with :meth:`SSEDecoder.feed` and gets back the events those bytes
completed; at end of stream it calls :meth:`SSEDecoder.close`. The decoder does no I/O and never raises
on any byte input, however malformed.

Wire rules (the WHATWG ones, read as the Anthropic SDK's decoder reads them):

* lines end at CR, LF or CRLF only (a CRLF split across two chunks is one line end); a UTF-8 BOM at the
  start of the stream is skipped;
* a blank line dispatches the event; lines starting with ``:`` are comments; exactly one space after
  ``field:`` is stripped; ``data`` lines are joined with ``"\\n"``; ``id`` and ``retry`` are ignored;
* an event is emitted when it had an ``event`` or a ``data`` field (like the SDK, an ``event:`` line with
  no ``data:`` still counts); its type is ``"message"`` when no ``event`` field was given;
* at :meth:`~SSEDecoder.close`, a pending event is emitted even without a trailing blank line (recorded
  Anthropic streams end that way; the SDK would lose the final event).

Memory is bounded by ``max_event_bytes``: a line longer than that, or an event whose data grows past it,
is dropped whole (``overflowed`` counts dropped events) and its bytes are skipped, never buffered.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_EVENT_BYTES = 1 << 20
_BOM = b"\xef\xbb\xbf"


RawEvent = tuple[bytes, bytes]  # (event name or b"", data): see SSEDecoder.feed_raw
Chunk = bytes | bytearray | memoryview


@dataclass(frozen=True, slots=True)
class SSEEvent:
    event: str  # "message" when the event had no ``event:`` field
    data: str  # the ``data:`` lines joined with "\n"


class SSEDecoder:
    """Turns a byte stream into :class:`SSEEvent` values; split-invariant and bounded in memory."""

    __slots__ = (
        "_buf",
        "_data",
        "_data_size",
        "_discard_line",
        "_dropped",
        "_event",
        "_max",
        "_pending_cr",
        "_probe",
        "_started",
        "overflowed",
    )

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._max = max(1, max_event_bytes)
        self._buf = bytearray()  # the unfinished line; never longer than ``_max``
        self._discard_line = False  # the unfinished line overflowed: skip bytes up to its end
        self._pending_cr = False  # the last chunk ended in CR, so a leading LF in the next one is its pair
        self._started = False  # past the possible BOM at the start of the stream
        self._probe = b""  # leading bytes that might still turn out to be a BOM
        self._event = b""
        self._data: list[bytes] = []
        self._data_size = 0
        self._dropped = False  # the event being built exceeded the cap and will not be emitted
        self.overflowed = 0

    @property
    def buffered_bytes(self) -> int:
        """Bytes held between calls: the unfinished line and the event being built, each within the cap."""
        return len(self._buf) + self._data_size + len(self._event) + len(self._probe)

    def feed(self, chunk: Chunk) -> list[SSEEvent]:
        """Consume ``chunk``; return the events it completed, in order. Never raises.

        The caller keeps feeding chunks as they arrive and calls :meth:`close` once at end of stream.
        """
        return [_decoded(name, data) for name, data in self.feed_raw(chunk)]

    def close(self) -> list[SSEEvent]:
        """Flush at end of stream: the unfinished line and pending event are emitted (or counted, if dropped).

        Afterwards the decoder is back in its initial state (``overflowed`` keeps counting).
        """
        return [_decoded(name, data) for name, data in self.close_raw()]

    def feed_raw(self, chunk: Chunk) -> list[RawEvent]:
        """Like :meth:`feed`, but events stay undecoded ``(event, data)`` bytes; ``event`` is ``b""`` when
        the event had no ``event:`` field. For hot-path consumers that skip most payloads unread."""
        if type(chunk) is not bytes:
            chunk = bytes(chunk)  # a bytearray or memoryview from the I/O layer
        if not self._started:
            chunk = self._skip_bom(chunk)
        out: list[RawEvent] = []
        if chunk:
            self._feed(chunk, out)
        return out

    def close_raw(self) -> list[RawEvent]:
        """Like :meth:`close`, with events as in :meth:`feed_raw`."""
        out: list[RawEvent] = []
        if self._probe:
            probe, self._probe = self._probe, b""
            self._feed(probe, out)
        if self._discard_line:
            self._discard_line = False
        elif self._buf:
            line = bytes(self._buf)
            self._buf.clear()
            self._lines([line], out)
        self._dispatch(out)
        self._pending_cr = False
        self._started = False
        return out

    def _skip_bom(self, chunk: bytes) -> bytes:
        head = self._probe + chunk
        if len(head) < len(_BOM) and _BOM.startswith(head):
            self._probe = head  # undecided until three bytes have arrived
            return b""
        self._probe = b""
        self._started = True
        return head[len(_BOM) :] if head.startswith(_BOM) else head

    def _feed(self, chunk: bytes, out: list[RawEvent]) -> None:
        if self._pending_cr:
            self._pending_cr = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if b"\r" in chunk:
            # Normalise to LF so one C-level split finds every line end.
            self._pending_cr = chunk[-1:] == b"\r"
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = chunk.split(b"\n")
        tail = lines.pop()
        if lines:
            if self._buf or self._discard_line:
                # A line that overflowed while buffered becomes an (ignored) comment.
                lines[0] = self._finish_line(lines[0])
            self._lines(lines, out)
        if tail and not self._discard_line:
            if len(self._buf) + len(tail) > self._max:
                self._drop_line(self._buf[:1] or tail[:1])
                self._discard_line = True
            else:
                self._buf += tail

    def _finish_line(self, rest: bytes) -> bytes:
        """The line that ``rest`` ends, joined with its buffered start; ``b":"`` when it is skipped."""
        if self._discard_line:
            self._discard_line = False
            return b":"
        if not self._buf:
            return rest
        if len(self._buf) + len(rest) > self._max:
            self._drop_line(self._buf[:1])
            return b":"
        self._buf += rest
        line = bytes(self._buf)
        self._buf.clear()
        return line

    def _drop_line(self, first_byte: bytes | bytearray) -> None:
        self._buf.clear()
        if first_byte != b":":  # an oversized comment is ignored like any comment
            self._overflow()

    def _overflow(self) -> None:
        self._dropped = True
        self._data.clear()
        self._data_size = 0
        self._event = b""

    def _lines(self, lines: list[bytes], out: list[RawEvent]) -> None:
        cap = self._max
        for line in lines:
            if not line:
                self._dispatch(out)
                continue
            if len(line) > cap:
                if line[0] != 0x3A:  # ":" starts a comment, ignored whatever its size
                    self._overflow()
                continue
            if self._dropped:
                continue
            # A comment has an empty name and falls through every branch below.
            name, _, value = line.partition(b":")
            if value[:1] == b" ":
                value = value[1:]
            if name == b"data":
                self._data_size += len(value) + 1
                if self._data_size > cap:
                    self._overflow()
                else:
                    self._data.append(value)
            elif name == b"event":
                self._event = value

    def _dispatch(self, out: list[RawEvent]) -> None:
        if self._dropped:
            self.overflowed += 1
            self._dropped = False
        elif self._data:
            data = self._data
            out.append((self._event, data[0] if len(data) == 1 else b"\n".join(data)))
            data.clear()
            self._data_size = 0
        elif self._event:
            out.append((self._event, b""))
        self._event = b""


def _decoded(name: bytes, data: bytes) -> SSEEvent:
    return SSEEvent(name.decode("utf-8", "replace") if name else "message", data.decode("utf-8", "replace"))
