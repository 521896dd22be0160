"""Two sidecars sharing one real Redis: an answer stored by one is a hit on the other; with Redis down the
calls still succeed, the failures counted."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import redis

from sidecar.server.inprocess import RunningSidecar
from sidecar.settings import Settings
from sidecar.testing.fake_upstream import FakeUpstream
from tests.redis_server import RedisServer
from tests.respcache.test_proxy import BODY, metric, post, upstream_calls
from tests.waiting import wait_until


def test_an_entry_stored_by_one_replica_is_a_hit_on_another(
    fake: FakeUpstream, redis_server: RedisServer, tmp_path: Path
) -> None:
    replicas = [
        RunningSidecar(
            Settings(
                upstream_url=fake.url,
                store=f"sqlite:///{tmp_path}/{name}/events.db",
                port=0,
                redis_url=redis_server.url,
                response_cache="on",
            )
        ).start()
        for name in ("a", "b")
    ]
    try:
        first = post(replicas[0], {**BODY, "stream": True})
        assert first.headers["x-sidecar-cache"] == "miss"
        raw = redis.Redis.from_url(redis_server.url)
        deadline = time.monotonic() + 10
        while not raw.keys("sidecar:rc:e:*") and time.monotonic() < deadline:
            time.sleep(0.01)  # the entry is written just after the answer
        (name,) = raw.keys("sidecar:rc:e:*")
        assert 3_500_000 < raw.pttl(name) <= 3_600_000  # Redis expires it after the TTL
        second = post(replicas[1], {**BODY, "stream": True})
        assert second.headers["x-sidecar-cache"] == "hit"
        assert second.content == first.content  # the stored stream, byte for byte
        assert upstream_calls(fake) == 1
        # The bytes gauge: what Redis holds for every replica, on each of them.
        stored = raw.strlen(name)
        assert stored > len(first.content)  # the stream and its entry header
        gauges = lambda: [metric(r, "sidecar_response_cache_bytes") for r in replicas]  # noqa: E731
        assert wait_until(lambda: gauges() == [stored, stored]), gauges()
        assert not (tmp_path / "a" / "response-cache.db").exists()  # Redis mode: no embedded file
        purged = httpx.post(replicas[1].url + "/sidecar/v1/response-cache/purge").json()
        assert purged == {"purged": 1}
        assert metric(replicas[1], "sidecar_response_cache_bytes") == 0
        assert post(replicas[0], BODY).headers["x-sidecar-cache"] == "miss"
    finally:
        for replica in replicas:
            replica.stop()


def test_redis_down_is_bypassed_and_counted(
    fake: FakeUpstream, redis_server: RedisServer, make_sidecar: Callable[..., RunningSidecar]
) -> None:
    sidecar = make_sidecar(fake.url, redis_url=redis_server.url, response_cache="on")
    redis_server.stop()
    answers = [post(sidecar) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200]  # budgets fail open, the cache is bypassed
    assert all(a.headers["x-sidecar-cache"] == "miss" for a in answers)
    errors = metric(sidecar, "sidecar_response_cache_requests_total", app="default", result="store_error")
    assert errors is not None and errors >= 2
    assert upstream_calls(fake) == 2
