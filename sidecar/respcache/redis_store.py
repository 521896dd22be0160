"""Entries in Redis (SPEC R-RC-4), shared by every replica: set when ``SIDECAR_REDIS_URL`` is.

Keys (``prefix`` default ``sidecar:rc:``): ``{p}e:{key hex}`` holds an encoded entry with a Redis TTL
(``PX``: the entry's lifetime, so the server drops it; a hit never extends it); ``{p}a:{app}`` is a sorted
set of the app's entry keys scored by their expiry, for ``purge?app=`` (members past their expiry are
trimmed on each write). Redis's own memory policy bounds the whole (``maxmemory``). Short timeouts and no
retries, as for the budget counters: after a failure the store fails fast for ``cooldown_s``, then the
pool reconnects by itself. Every failure becomes :class:`~sidecar.respcache.backend.StoreError`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from sidecar.respcache.backend import StoreError
from sidecar.respcache.config import MAX_TTL_S
from sidecar.respcache.entry import Entry, EntryError

_SCAN_COUNT = 500
_PURGE_TIMEOUT_S = 30.0


class RedisEntries:
    """Implements :class:`~sidecar.respcache.backend.Backend` on a Redis server."""

    name = "redis"

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = "sidecar:rc:",
        timeout_s: float = 1.0,
        cooldown_s: float = 0.5,
    ) -> None:
        self._client = client
        self._p = prefix
        self._timeout = timeout_s
        self._cooldown = cooldown_s
        self._down_until = 0.0

    @classmethod
    def from_url(cls, url: str, *, timeout_s: float = 1.0, **kwargs: float | str) -> RedisEntries:
        client = aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 0)
        )
        return cls(client, timeout_s=timeout_s, **kwargs)  # type: ignore[arg-type]

    @asynccontextmanager
    async def _guard(self, timeout_s: float | None = None) -> AsyncIterator[None]:
        if time.monotonic() < self._down_until:
            raise StoreError("redis marked down after a recent failure")
        try:
            # Bounds connect and commands together.
            async with asyncio.timeout(timeout_s if timeout_s is not None else self._timeout * 2):
                yield
        except (RedisError, OSError, TimeoutError) as exc:
            self._down_until = time.monotonic() + self._cooldown
            raise StoreError(f"redis: {type(exc).__name__}: {exc}") from exc

    def _entry_key(self, key: bytes) -> str:
        return f"{self._p}e:{key.hex()}"

    async def open(self) -> None:
        return None  # the pool connects on first use

    async def get(self, key: bytes, now: float) -> Entry | None:
        async with self._guard():
            data = await self._client.get(self._entry_key(key))
        if data is None:
            return None
        try:
            entry = Entry.decode(data if isinstance(data, bytes) else data.encode())
        except EntryError:
            return None
        return entry if entry.expires_at > now else None

    async def put(self, key: bytes, entry: Entry) -> None:
        ttl_ms = int((entry.expires_at - entry.created_at) * 1000)
        if ttl_ms <= 0:
            return
        name, index = self._entry_key(key), f"{self._p}a:{entry.app}"
        async with self._guard():
            pipe = self._client.pipeline(transaction=True)
            pipe.set(name, entry.encode(), px=ttl_ms)
            pipe.zremrangebyscore(index, "-inf", entry.created_at)
            pipe.zadd(index, {name: entry.expires_at})
            pipe.expire(index, MAX_TTL_S)  # the index outlives its entries; trimmed as they expire
            await pipe.execute()

    async def purge(self, app: str | None) -> int:
        async with self._guard(_PURGE_TIMEOUT_S):
            if app is not None:
                index = f"{self._p}a:{app}"
                names = await self._client.zrange(index, 0, -1)
                removed = int(await self._client.delete(*names)) if names else 0
                await self._client.delete(index)
                return removed
            removed = 0
            for pattern, counted in ((f"{self._p}e:*", True), (f"{self._p}a:*", False)):
                batch: list[bytes] = []
                async for name in self._client.scan_iter(match=pattern, count=_SCAN_COUNT):
                    batch.append(name)
                    if len(batch) >= _SCAN_COUNT:
                        deleted = int(await self._client.delete(*batch))
                        removed += deleted if counted else 0
                        batch.clear()
                if batch:
                    deleted = int(await self._client.delete(*batch))
                    removed += deleted if counted else 0
            return removed

    async def expire(self, now: float) -> int:
        return 0  # Redis expires entries itself

    def stored_bytes(self) -> float:
        return 0.0  # held by Redis, bounded by its maxmemory policy

    async def close(self) -> None:
        await self._client.aclose()
