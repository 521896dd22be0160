"""Entries in a real Redis: shared, expired by Redis, purged by app; a dead server is a StoreError."""

from __future__ import annotations

import dataclasses
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


async def test_stored_bytes_are_every_replicas_entries_until_they_expire(redis_server: RedisServer) -> None:
    one = RedisEntries.from_url(redis_server.url, prefix="b:")
    two = RedisEntries.from_url(redis_server.url, prefix="b:")  # another replica, the same Redis
    short, long_, other = entry("evals", ttl=30), entry("evals", ttl=600), entry("bot", ttl=600)
    sizes = [len(e.encode()) for e in (short, long_, other)]
    await one.put(b"\x01" * 20, short)
    await one.put(b"\x02" * 20, long_)
    assert one.stored_bytes() == sizes[0] + sizes[1]
    assert two.stored_bytes() == 0  # nothing read yet
    await two.put(b"\x03" * 20, other)
    assert two.stored_bytes() == sum(sizes)  # the shared total, not this replica's share
    assert await one.get(b"\x09" * 20, time.time()) is None
    assert one.stored_bytes() == sum(sizes)  # read along with a lookup, even a miss
    # Replacing an entry counts the difference, not both.
    bigger = dataclasses.replace(long_, body=long_.body * 3)
    await two.put(b"\x02" * 20, bigger)
    total = sizes[0] + len(bigger.encode()) + sizes[2]
    assert two.stored_bytes() == total
    raw = redis.Redis.from_url(redis_server.url)
    assert total == sum(raw.strlen(name) for name in raw.keys("b:e:*"))
    # Redis drops the 30 s entry by itself; a chore (any replica's) takes it off the total.
    assert await one.expire(time.time() + 10) == 0
    assert await one.expire(time.time() + 31) == 1
    assert one.stored_bytes() == total - sizes[0]
    assert await two.purge("evals") == 2  # the expired entry is still in Redis here: it has 30 s left
    assert two.stored_bytes() == sizes[2]
    assert await one.purge(None) == 1
    assert one.stored_bytes() == 0 and raw.keys("b:*") == []
    await one.put(b"\x04" * 20, other)
    assert one.stored_bytes() == sizes[2]  # counted afresh after a purge
    await one.close()
    await two.close()
