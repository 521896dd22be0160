"""The key of a stored answer (SPEC R-RC-2, R-RC-7): what makes two requests the same request.

A keyed BLAKE2b digest over, each length-prefixed so that no two field lists run together the same way:
the route (path and query: ``?beta=true`` counts), ``anthropic-version``, the ``anthropic-beta`` values
as a sorted set, the tenant, and the client's body in canonical JSON (keys sorted, no whitespace, the
top-level ``stream`` left out, so a stream and a JSON call share an answer). The body is the client's
own: the key is taken before the sidecar adds cache markers. The tenant is the credential value,
whichever header carries it (``x-api-key: K`` and ``Authorization: Bearer K`` are one tenant; under
``SIDECAR_CLIENT_TOKENS`` that value is the client's token), or nothing when entries are shared on
purpose. The app is not part of the key. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

Headers = Sequence[tuple[bytes, bytes]]
VERSION = b"sidecar-rc-1"  # bump when the key's inputs change: old entries then simply miss
KEY_BYTES = 20
# hashlib lets go of the GIL for inputs from 2,048 bytes: on a busy event loop taking it back costs far
# more than the hash. Fed in smaller slices, the digest never lets go.
_SLICE = 2016


def credential(headers: Headers) -> bytes:
    """The credential value of a request (``b""`` without one): ``x-api-key``, else a Bearer token."""
    for name, value in headers:
        if name == b"x-api-key":
            return value.strip()
    for name, value in headers:
        if name == b"authorization":
            return value[7:].strip() if value[:7].lower() == b"bearer " else value.strip()
    return b""


def beta_set(headers: Headers) -> tuple[bytes, ...]:
    """Every ``anthropic-beta`` value (repeated headers and comma lists alike), as a sorted set."""
    found: set[bytes] = set()
    for name, value in headers:
        if name == b"anthropic-beta":
            found.update(part.strip().lower() for part in value.split(b",") if part.strip())
    return tuple(sorted(found))


def canonical_body(doc: Mapping[str, Any]) -> bytes | None:
    """The body as canonical JSON without ``stream``; ``None`` when it cannot be written back (then
    the request is not cached)."""
    body = {key: value for key, value in doc.items() if key != "stream"}
    try:
        return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        return None


def request_key(
    *, route: bytes, headers: Headers, doc: Mapping[str, Any], shared: bool, tenant: bytes | None = None
) -> bytes | None:
    """The entry key of a request (``KEY_BYTES`` bytes), or ``None`` when its body has no canonical form.

    ``route`` is the raw path with its query string; ``headers`` the client's (ASGI, lower-case names);
    ``tenant`` the caller when the route says who it is otherwise (a cloud route), else
    :func:`credential` of the headers.
    """
    body = canonical_body(doc)
    if body is None:
        return None
    version = b""
    for name, value in headers:
        if name == b"anthropic-version":
            version = value.strip()
            break
    if shared:
        tenant = b""
    elif tenant is None:
        tenant = credential(headers)
    head = b"".join(
        len(part).to_bytes(8, "big") + part for part in (route, version, b",".join(beta_set(headers)), tenant)
    )
    digest = hashlib.blake2b(head + len(body).to_bytes(8, "big"), digest_size=KEY_BYTES, person=VERSION)
    view = memoryview(body)
    for start in range(0, len(body), _SLICE):
        digest.update(view[start : start + _SLICE])
    return digest.digest()
