"""The seam to the upstream API: what the proxy handler needs of an upstream client, and nothing more.

The handler and the relay depend on ``Upstream`` alone. ``sidecar.proxy.client.UpstreamClient`` is the
implementation the app wires (the lean keep-alive client in ``h1`` for every Messages call, aiohttp in
``aiohttp_client`` for the rest); a test or a benchmark may pass any other. Whatever the transport, an
implementation raises only the sidecar's ``UpstreamError`` tree for upstream failures (and
``InvalidRequest`` for a request it cannot send as it is), mapped once, in the client, ``from`` the
transport's own exception.
"""

from __future__ import annotations

import urllib.request
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

Headers = Sequence[tuple[bytes, bytes]]
RequestBody = bytes | AsyncIterable[bytes] | None


class UpstreamAnswer(Protocol):
    """An answer whose status and headers are in and whose body is unread."""

    @property
    def status(self) -> int: ...

    @property
    def raw_headers(self) -> Headers:
        """Header pairs as received (names in the upstream's case), relayed without re-encoding."""
        ...

    def iter_chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives. Raises ``UpstreamBroken`` or ``UpstreamTimeout`` if it breaks off."""
        ...

    def close(self) -> None:
        """Done with the answer (read or not); an unfinished one does not keep its connection."""
        ...


class Upstream(Protocol):
    async def send(self, method: str, target: str, headers: Headers, body: RequestBody) -> UpstreamAnswer:
        """Send one request; ``target`` (path and query, byte for byte) is appended to the base URL.

        Returns once the answer's headers are in. Raises ``UpstreamUnavailable`` / ``UpstreamTimeout``
        when no answer came, ``InvalidRequest`` for headers the client cannot send as they are; an
        exception raised by a streamed ``body`` surfaces as ``UpstreamUnavailable``.
        """
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class UpstreamOptions:
    base_url: str
    read_timeout_s: float = 600.0
    connect_timeout_s: float = 5.0
    pool_size: int = 1000
    keepalive_s: float = 4.0  # idle connections are not reused past this (SIDECAR_UPSTREAM_KEEPALIVE_TIMEOUT)


def upstream_proxy(base_url: str) -> str | None:
    """The proxy for the upstream host from the standard environment (``HTTPS_PROXY``, ``NO_PROXY``)."""
    parts = urlsplit(base_url)
    bypass = getattr(urllib.request, "proxy_bypass_environment")  # noqa: B009 - missing from typeshed
    if parts.hostname and bypass(parts.hostname):
        return None
    return urllib.request.getproxies_environment().get(parts.scheme)


__all__ = ["Headers", "RequestBody", "Upstream", "UpstreamAnswer", "UpstreamOptions", "upstream_proxy"]
