"""One pooled upstream client per cloud origin (Bedrock's runtime host, each Vertex location's host).

A provider names the origin of each call (``CloudRoute.origin``, never taken from a client's header);
the client for it is made and opened on its first call and kept for the process, up to ``limit``
origins (a Vertex region is a host: the set is small, but it comes from clients, so it is bounded).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from sidecar.errors import InvalidRequest
from sidecar.proxy.upstream import Upstream

MAX_ORIGINS = 64


class OriginClient(Upstream, Protocol):
    """An upstream client for one origin that must be opened before its first ``send``."""

    async def open(self) -> None: ...


class Origins:
    """``get(origin)`` gives the open client for that origin; ``close`` closes them all."""

    def __init__(self, make: Callable[[str], OriginClient], limit: int = MAX_ORIGINS) -> None:
        self._make = make
        self._limit = limit
        self._clients: dict[str, OriginClient] = {}
        self._opening: dict[str, asyncio.Future[OriginClient]] = {}

    async def get(self, origin: str) -> OriginClient:
        client = self._clients.get(origin)
        if client is not None:
            return client
        opening = self._opening.get(origin)
        if opening is None:
            if len(self._clients) + len(self._opening) >= self._limit:
                raise InvalidRequest(f"Too many distinct upstream hosts (limit {self._limit}).")
            opening = asyncio.ensure_future(self._open(origin))
            self._opening[origin] = opening
        return await asyncio.shield(opening)

    async def _open(self, origin: str) -> OriginClient:
        try:
            client = self._make(origin)
            await client.open()
            self._clients[origin] = client
            return client
        finally:
            self._opening.pop(origin, None)

    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.close()


__all__ = ["MAX_ORIGINS", "OriginClient", "Origins"]
