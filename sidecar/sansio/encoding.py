"""Incremental decoding of ``content-encoding`` for the parser's copy of a response.

The client always receives the upstream bytes untouched; only the sidecar's private copy is decoded.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

Decoder = Callable[[bytes], bytes]

_STEP = 1 << 20  # output asked of zlib per call
# A decompression bomb stops here: past it the copy is abandoned (the client still gets every byte).
MAX_OUTPUT_PER_FEED = 16 << 20


def _identity(data: bytes) -> bytes:
    return data


def _zlib_feed(wbits: int) -> Decoder:
    obj = zlib.decompressobj(wbits)
    gave_up = False

    def feed(data: bytes) -> bytes:
        nonlocal gave_up
        if gave_up:
            return b""
        try:
            piece = obj.decompress(data, _STEP)
            if not obj.unconsumed_tail and len(piece) < _STEP:
                return piece  # the common case: one call, no copy
            parts, total = [piece], len(piece)
            # Keep inflating what one chunk holds: dropping the tail would corrupt every later byte.
            while (obj.unconsumed_tail or len(piece) == _STEP) and total < MAX_OUTPUT_PER_FEED:
                piece = obj.decompress(obj.unconsumed_tail, _STEP)
                if not piece:
                    break
                parts.append(piece)
                total += len(piece)
            if obj.unconsumed_tail:
                gave_up = True  # over the cap: later output could not be aligned with this one
            return b"".join(parts)
        except zlib.error:
            gave_up = True
            return b""

    return feed


def make_decoder(content_encoding: bytes | None) -> Decoder | None:
    """A feed function for the encoding, or None when the sidecar cannot decode it (nothing parsed).

    Each call returns the bytes its input completes, at most :data:`MAX_OUTPUT_PER_FEED` (past that, or
    after corrupt input, the decoder returns ``b""`` for good). Never raises.
    """
    enc = (content_encoding or b"").strip().lower()
    if enc in (b"", b"identity"):
        return _identity
    if enc in (b"gzip", b"x-gzip", b"deflate"):
        return _zlib_feed(zlib.MAX_WBITS | 32 if enc != b"deflate" else zlib.MAX_WBITS)
    return None
