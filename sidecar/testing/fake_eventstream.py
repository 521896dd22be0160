"""An AWS event-stream encoder (``application/vnd.amazon.eventstream``) for the fake Bedrock.

botocore only decodes this format, so the fake writes its own frames: prelude (total length, headers
length, CRC32 of those 8 bytes), headers, payload, then the CRC32 of everything before it. Tests prove
the frames with botocore's own ``EventStreamBuffer`` and with the SDK clients that read them.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Mapping, Sequence
from typing import Any
from zlib import crc32

# (type code, value) of a typed header; plain str values are written as strings (type 7).
TypedValue = tuple[int, bool | int | bytes | str]
_INT_FORMATS = {2: ">b", 3: ">h", 4: ">i", 5: ">q", 8: ">q"}
PADDING = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0"


def encode_header(name: str, value: str | TypedValue) -> bytes:
    raw_name = name.encode()
    out = bytes([len(raw_name)]) + raw_name
    kind, v = (7, value) if isinstance(value, str) else value
    if kind in (0, 1):
        return out + bytes([kind])
    if kind in _INT_FORMATS:
        assert isinstance(v, int)
        return out + bytes([kind]) + struct.pack(_INT_FORMATS[kind], v)
    if kind in (6, 7):
        data = v.encode() if isinstance(v, str) else v
        assert isinstance(data, bytes)
        return out + bytes([kind]) + struct.pack(">H", len(data)) + data
    if kind == 9:
        assert isinstance(v, bytes) and len(v) == 16
        return out + bytes([kind]) + v
    raise ValueError(f"unknown header type {kind}")


def encode_frame(headers: Mapping[str, str | TypedValue] | Sequence[tuple[str, str | TypedValue]],
                 payload: bytes) -> bytes:  # fmt: skip
    """One event-stream message, CRCs included."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    head = b"".join(encode_header(name, value) for name, value in pairs)
    total = 12 + len(head) + len(payload) + 4
    prelude = struct.pack(">II", total, len(head))
    prelude += struct.pack(">I", crc32(prelude))
    message = prelude + head + payload
    return message + struct.pack(">I", crc32(message))


def chunk_frame(event: Mapping[str, Any], padding: int = 0) -> bytes:
    """A Bedrock ``chunk`` event carrying one Anthropic stream event (base64 JSON), as Bedrock frames it;
    ``padding`` adds the ``"p"`` key Bedrock uses to blur payload lengths."""
    data = json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
    payload: dict[str, str] = {"bytes": base64.b64encode(data).decode()}
    if padding:
        payload["p"] = PADDING[: max(1, padding % len(PADDING))]
    headers = (
        (":event-type", "chunk"),
        (":content-type", "application/json"),
        (":message-type", "event"),
    )
    return encode_frame(headers, json.dumps(payload, separators=(",", ":")).encode())


def exception_frame(exception_type: str, message: str) -> bytes:
    """An ``exception`` message (``throttlingException``, ``modelStreamErrorException``…)."""
    headers = (
        (":exception-type", exception_type),
        (":content-type", "application/json"),
        (":message-type", "exception"),
    )
    return encode_frame(headers, json.dumps({"message": message}).encode())


__all__ = ["chunk_frame", "encode_frame", "encode_header", "exception_frame"]
