"""Entries in Redis (SPEC R-RC-4), shared by every replica: set when ``SIDECAR_REDIS_URL`` is.

Keys (``prefix`` default ``sidecar:rc:``): ``{p}e:{key hex}`` holds an encoded entry with a Redis TTL
(``PX``: the entry's lifetime, so the server drops it; a hit never extends it); ``{p}a:{app}`` is a sorted
set of the app's entry keys scored by their expiry, for ``purge?app=`` (members past their expiry are
trimmed on each write). Redis's own memory policy bounds the whole (``maxmemory``). Short timeouts and no
retries, as for the budget counters: after a failure the store fails fast for ``cooldown_s``, then the
pool reconnects by itself. Every failure becomes :class:`~sidecar.respcache.backend.StoreError`.

Stored bytes (``sidecar_response_cache_bytes``, SPEC R-RC-7) are counted in Redis itself, for every replica
at once: ``{p}bytes`` is the total of the entries' encoded sizes, ``{p}sz`` (hash) each entry's size and
``{p}sx`` (sorted set) its expiry. A write adds its size (less the entry it replaces) in the same script
that stores it; the housekeeping chore of any replica takes expired entries off the total (Redis drops
the entries themselves, and says nothing). An entry Redis evicts early under ``maxmemory`` is still
counted until its expiry passes: the total then comes right by itself. Each replica's gauge shows the
shared total as last read: by its lookups (read along with the entry, no extra round trip), its writes
and its chores — so dashboards take ``max``, not ``sum``, over replicas.
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
_TRIM_BATCH = 1000  # expired entries taken off the total per script call (Lua's unpack stays small)
_TRIM_ROUNDS = 20

# KEYS: entry, app index, sizes, expiries, total. ARGV: data, ttl ms, created_at, expires_at, index ttl.
_PUT = """
local size = string.len(ARGV[1])
local old = tonumber(redis.call('HGET', KEYS[3], KEYS[1])) or 0
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[4], KEYS[1])
redis.call('EXPIRE', KEYS[2], ARGV[5])
redis.call('HSET', KEYS[3], KEYS[1], size)
redis.call('ZADD', KEYS[4], ARGV[4], KEYS[1])
return redis.call('INCRBY', KEYS[5], size - old)
"""
# Take entries off the total. KEYS: sizes, expiries, total. ARGV: "expired" with a time and a limit, or
# "names" with the entries' names (a purge by app).
_FORGET = """
local names
if ARGV[1] == 'expired' then
  names = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[2], 'LIMIT', 0, ARGV[3])
else
  names = {unpack(ARGV, 2)}
end
local freed = 0
for _, name in ipairs(names) do
  freed = freed + (tonumber(redis.call('HGET', KEYS[1], name)) or 0)
end
if #names > 0 then
  redis.call('HDEL', KEYS[1], unpack(names))
  redis.call('ZREM', KEYS[2], unpack(names))
end
local total = redis.call('DECRBY', KEYS[3], freed)
if total < 0 then
  redis.call('SET', KEYS[3], 0)
  total = 0
end
return {total, #names}
"""


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
        self._accounts = (f"{prefix}sz", f"{prefix}sx", f"{prefix}bytes")  # sizes, expiries, total
        self._put = client.register_script(_PUT)
        self._forget = client.register_script(_FORGET)
        self._bytes = 0  # the shared total, as last read

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
            data, total = await self._client.mget(self._entry_key(key), self._accounts[2])
        self._bytes = _count(total)
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
        # The index outlives its entries (MAX_TTL_S); trimmed as they expire.
        args = (entry.encode(), ttl_ms, entry.created_at, entry.expires_at, MAX_TTL_S)
        async with self._guard():
            total = await self._put(keys=[name, index, *self._accounts], args=args)
        self._bytes = _count(total)

    async def purge(self, app: str | None) -> int:
        async with self._guard(_PURGE_TIMEOUT_S):
            if app is not None:
                index = f"{self._p}a:{app}"
                names = await self._client.zrange(index, 0, -1)
                removed = int(await self._client.delete(*names)) if names else 0
                for start in range(0, len(names), _TRIM_BATCH):
                    chunk = names[start : start + _TRIM_BATCH]
                    total, _ = await self._forget(keys=self._accounts, args=["names", *chunk])
                    self._bytes = _count(total)
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
            await self._client.delete(*self._accounts)
            self._bytes = 0
            return removed

    async def expire(self, now: float) -> int:
        """Redis drops expired entries itself; this takes them off the shared byte total."""
        dropped = 0
        async with self._guard(_PURGE_TIMEOUT_S):
            for _ in range(_TRIM_ROUNDS):  # bounded: what is left goes at the next chore
                total, count = await self._forget(keys=self._accounts, args=["expired", now, _TRIM_BATCH])
                self._bytes, dropped = _count(total), dropped + int(count)
                if int(count) < _TRIM_BATCH:
                    break
        return dropped

    def stored_bytes(self) -> float:
        """The bytes of every replica's live entries, as last read (see the module docstring)."""
        return float(self._bytes)

    async def close(self) -> None:
        await self._client.aclose()


def _count(value: object) -> int:
    """A counter as Redis returns it (bytes, str or int; ``None`` before the first write)."""
    if isinstance(value, bytes | str | int):
        try:
            return max(0, int(value))
        except ValueError:
            return 0
    return 0
