"""Incremental decoder for AWS event-stream frames (``application/vnd.amazon.eventstream``).

Sans-I/O: feed bytes as they arrive with :meth:`EventStreamDecoder.feed`, get back the frames they
completed. Every frame is checked before it is returned: both CRC32s (prelude, then the whole message
continuing from the prelude's), the length fields and the caps botocore applies (headers 128 KiB, payload
24 MiB). A bad frame makes the stream unreadable from there on: :class:`EventStreamError` is raised once,
and the decoder then swallows the rest (``failed`` stays set) — the caller relays bytes regardless.

Frame layout (big-endian)::

    total_length u32 | headers_length u32 | prelude_crc u32 | headers | payload | message_crc u32

A header is ``name_len u8, name, type u8, value``; types 0/1 true/false (no value), 2 i8, 3 i16, 4 i32,
5 i64, 6 bytes and 7 string (u16 length first), 8 timestamp (i64 ms), 9 uuid (16 bytes).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from zlib import crc32

PRELUDE_BYTES = 12
MAX_HEADERS_BYTES = 128 * 1024
MAX_PAYLOAD_BYTES = 24 * 1024 * 1024
_MIN_FRAME = PRELUDE_BYTES + 4
_PRELUDE = struct.Struct(">III")
_U32 = struct.Struct(">I")
# Fixed-size integer header types: (size, struct format).
_INTS = {2: (1, ">b"), 3: (2, ">h"), 4: (4, ">i"), 5: (8, ">q"), 8: (8, ">q")}

HeaderValue = bool | int | bytes | str


class EventStreamError(ValueError):
    """The bytes are not a valid event stream (bad CRC, length or header)."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded message: its headers (timestamps as int milliseconds, uuids as 16 bytes) and payload."""

    headers: dict[str, HeaderValue]
    payload: bytes

    def text(self, name: str) -> str | None:
        value = self.headers.get(name)
        return value if isinstance(value, str) else None


def _parse_headers(data: bytes) -> dict[str, HeaderValue]:
    headers: dict[str, HeaderValue] = {}
    pos, end = 0, len(data)
    try:
        while pos < end:
            size = data[pos]
            raw_name = data[pos + 1 : pos + 1 + size]
            if len(raw_name) != size:
                raise EventStreamError("header name runs past the headers")
            name = raw_name.decode("utf-8")
            pos += 1 + size
            kind = data[pos]
            pos += 1
            value: HeaderValue
            if kind in (0, 1):
                value = kind == 0
            elif kind in _INTS:
                width, fmt = _INTS[kind]
                if pos + width > end:
                    raise EventStreamError("header value runs past the headers")
                (value,) = struct.unpack_from(fmt, data, pos)
                pos += width
            elif kind in (6, 7):
                (length,) = struct.unpack_from(">H", data, pos)
                raw = data[pos + 2 : pos + 2 + length]
                if len(raw) != length:
                    raise EventStreamError("header value runs past the headers")
                value = raw.decode("utf-8") if kind == 7 else raw
                pos += 2 + length
            elif kind == 9:
                value = data[pos : pos + 16]
                if len(value) != 16:
                    raise EventStreamError("header value runs past the headers")
                pos += 16
            else:
                raise EventStreamError(f"unknown header type {kind}")
            headers[name] = value
    except (IndexError, struct.error, UnicodeDecodeError) as exc:
        raise EventStreamError(f"malformed headers: {exc}") from None
    return headers


class EventStreamDecoder:
    """Turns a byte stream into :class:`Frame` values; split-invariant, one frame buffered at most."""

    __slots__ = ("_buf", "_pos", "failed", "frames")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0  # start of the first unconsumed byte in ``_buf``
        self.failed = False  # a bad frame was seen: nothing after it is decoded
        self.frames = 0

    @property
    def buffered_bytes(self) -> int:
        """Bytes of an unfinished frame held between calls."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        """Consume ``data``; return the frames it completed, in order.

        Raises :class:`EventStreamError` for the first bad frame; afterwards every call returns ``[]``.
        """
        if self.failed:
            return []
        self._buf += data
        out: list[Frame] = []
        try:
            while True:
                frame = self._next()
                if frame is None:
                    break
                out.append(frame)
        except EventStreamError:
            self.failed = True
            self._buf.clear()
            self._pos = 0
            raise
        if self._pos:
            del self._buf[: self._pos]  # one compaction per call, not per frame
            self._pos = 0
        return out

    def close(self) -> int:
        """End of stream: the number of bytes of an unfinished frame that never completed (0 when clean)."""
        left = 0 if self.failed else len(self._buf) - self._pos
        self._buf.clear()
        self._pos = 0
        return left

    def _next(self) -> Frame | None:
        buf, pos = self._buf, self._pos
        if len(buf) - pos < PRELUDE_BYTES:
            return None
        total, headers_len, prelude_crc = _PRELUDE.unpack_from(buf, pos)
        if crc32(bytes(buf[pos : pos + 8])) != prelude_crc:
            raise EventStreamError("prelude checksum mismatch")
        if headers_len > MAX_HEADERS_BYTES:
            raise EventStreamError(f"headers of {headers_len} bytes exceed {MAX_HEADERS_BYTES}")
        payload_len = total - headers_len - _MIN_FRAME
        if total < _MIN_FRAME or payload_len < 0:
            raise EventStreamError(f"frame length {total} is shorter than its parts")
        if payload_len > MAX_PAYLOAD_BYTES:
            raise EventStreamError(f"payload of {payload_len} bytes exceeds {MAX_PAYLOAD_BYTES}")
        if len(buf) - pos < total:
            return None
        view = memoryview(buf)
        try:
            body_end = pos + total - 4
            (message_crc,) = _U32.unpack_from(buf, body_end)
            if crc32(view[pos + 8 : body_end], prelude_crc) != message_crc:
                raise EventStreamError("message checksum mismatch")
            head_end = pos + PRELUDE_BYTES + headers_len
            headers = _parse_headers(bytes(view[pos + PRELUDE_BYTES : head_end]))
            payload = bytes(view[head_end:body_end])
        finally:
            view.release()  # a live export would forbid resizing the buffer
        self._pos = pos + total
        self.frames += 1
        return Frame(headers, payload)


__all__ = ["EventStreamDecoder", "EventStreamError", "Frame", "HeaderValue"]
