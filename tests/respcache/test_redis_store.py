"""Entries in a real Redis: shared, expired by Redis, purged by app; a dead server is a StoreError."""

from __future__ import annotations

import time

import pytest
import redis

from sidecar.respcache.backend import StoreError
from sidecar.respcache.entry import SSE, Entry
from sidecar.respcache.redis_store import RedisEntries
from tests.redis_server import RedisServer


def entry(app: str, ttl: float = 60.0) -> Entry:
    now = time.time()
    body = b"event: message_stop\ndata: {}\n\n"
    return Entry(
        SSE, 200, b"text/event-stream", body, app, now, now + ttl, 0.5, None, "end_turn", ("t1",), ("f",)
    )


async def test_entries_round_trip_with_a_redis_ttl_and_purge_by_app(redis_server: RedisServer) -> None:
    store = RedisEntries.from_url(redis_server.url, prefix="t:")
    first = entry("evals", ttl=30)
    await store.put(b"\x01" * 20, first)
    await store.put(b"\x02" * 20, entry("evals"))
    await store.put(b"\x03" * 20, entry("bot"))
    assert await store.get(b"\x01" * 20, time.time()) == first
    assert await store.get(b"\x09" * 20, time.time()) is None
    raw = redis.Redis.from_url(redis_server.url)
    ttl_ms = raw.pttl("t:e:" + "01" * 20)
    assert 25_000 < ttl_ms <= 30_000  # the server expires the entry itself
    assert await store.purge("evals") == 2
    assert await store.get(b"\x02" * 20, time.time()) is None
    assert await store.get(b"\x03" * 20, time.time()) is not None
    assert await store.purge(None) == 1
    assert raw.keys("t:*") == []
    await store.close()


async def test_a_stopped_server_is_a_store_error(redis_server: RedisServer) -> None:
    store = RedisEntries.from_url(redis_server.url, timeout_s=0.2)
    redis_server.stop()
    with pytest.raises(StoreError):
        await store.get(b"k" * 20, time.time())
    with pytest.raises(StoreError):  # then fast, during the cool-down
        await store.put(b"k" * 20, entry("a"))
    await store.close()
