"""Where entries live: the interface the service calls, and the error every backend raises."""

from __future__ import annotations

from typing import Protocol

from sidecar.respcache.entry import Entry


class StoreError(Exception):
    """The backend failed (full disk, a damaged file, Redis down or slow). The call goes on without the
    cache: the failure is counted (``result="store_error"``) and logged, never surfaced."""


class Backend(Protocol):
    """An entry store. Every method raises :class:`StoreError` and nothing else; none blocks the event
    loop. ``get`` never returns an expired entry."""

    name: str

    async def open(self) -> None: ...

    async def get(self, key: bytes, now: float) -> Entry | None: ...

    async def put(self, key: bytes, entry: Entry) -> None:
        """Store ``entry`` under ``key`` until ``entry.expires_at`` (replacing what was there)."""
        ...

    async def purge(self, app: str | None) -> int:
        """Remove every entry (``app`` None) or those stored by ``app``; the number removed."""
        ...

    async def expire(self, now: float) -> int:
        """Drop expired entries (housekeeping); the number dropped."""
        ...

    def stored_bytes(self) -> float:
        """Stored bytes held, for ``sidecar_response_cache_bytes`` (a shared store: every replica's, as
        last read; never blocks)."""
        ...

    async def close(self) -> None: ...
