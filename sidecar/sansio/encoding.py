"""Incremental decoding of ``content-encoding`` for the parser's copy of a response.

The client always receives the upstream bytes untouched; only the sidecar's private copy is decoded.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

Decoder = Callable[[bytes], bytes]


def _identity(data: bytes) -> bytes:
    return data


def make_decoder(content_encoding: bytes | None) -> Decoder | None:
    """A feed function for the encoding, or None when the sidecar cannot decode it (nothing parsed)."""
    enc = (content_encoding or b"").strip().lower()
    if enc in (b"", b"identity"):
        return _identity
    if enc in (b"gzip", b"x-gzip", b"deflate"):
        wbits = zlib.MAX_WBITS | 32 if enc != b"deflate" else zlib.MAX_WBITS
        obj = zlib.decompressobj(wbits)

        def feed(data: bytes) -> bytes:
            try:
                return obj.decompress(data, 1 << 20)
            except zlib.error:
                return b""

        return feed
    return None
