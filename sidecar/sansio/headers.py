"""Header filtering between client, sidecar and upstream. Raw bytes in, raw bytes out.

Header values are kept as bytes end to end: clients may send values that are not ASCII, and a
proxy must not reject or re-encode what it does not own.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

# RFC 9110 §7.6.1 hop-by-hop headers, plus those the sidecar must recompute for its own hop.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
_REQUEST_DROP = HOP_BY_HOP | {b"host", b"content-length", b"expect"}
# content-length, date and server are relayed as the upstream sent them (uvicorn adds none of its own).
_RESPONSE_DROP = HOP_BY_HOP
SIDECAR_PREFIX = b"x-sidecar-"

Headers = Sequence[tuple[bytes, bytes]]


def _connection_tokens(headers: Headers) -> frozenset[bytes]:
    """Headers named in ``Connection`` are hop-by-hop for this hop too (RFC 9110 §7.6.1)."""
    tokens: set[bytes] = set()
    for name, value in headers:
        if len(name) == 10 and name.lower() == b"connection":
            tokens.update(t.strip().lower() for t in value.split(b","))
    return frozenset(tokens)


def request_headers_for_upstream(headers: Headers) -> list[tuple[bytes, bytes]]:
    """Client headers to send upstream: hop-by-hop and ``x-sidecar-*`` controls removed, order kept."""
    extra = _connection_tokens(headers)
    out = []
    for name, value in headers:
        low = name.lower()
        if low in _REQUEST_DROP or low in extra or low.startswith(SIDECAR_PREFIX):
            continue
        out.append((low, value))
    return out


def response_headers_for_client(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Upstream headers to relay: hop-by-hop removed, everything else as sent, order kept."""
    items = list(headers)
    extra = _connection_tokens(items)
    return [(n, v) for n, v in items if (low := n.lower()) not in _RESPONSE_DROP and low not in extra]


def get(headers: Headers, name: bytes) -> bytes | None:
    """First value of ``name`` in ASGI request headers, whose names are lower-case by the ASGI spec."""
    for n, v in headers:
        if n == name:
            return v
    return None


def get_ci(headers: Headers, name: bytes) -> bytes | None:
    """First value of ``name`` (lower-case) in headers of any case (the upstream's raw headers)."""
    size = len(name)
    for n, v in headers:
        if len(n) == size and n.lower() == name:
            return v
    return None


def sidecar_controls(headers: Headers) -> dict[str, str]:
    """``x-sidecar-*`` request headers as ``{suffix: value}`` (lower-case suffix)."""
    out: dict[str, str] = {}
    for name, value in headers:
        low = name.lower()
        if low.startswith(SIDECAR_PREFIX):
            out[low[len(SIDECAR_PREFIX) :].decode("latin-1")] = value.decode("latin-1").strip()
    return out
