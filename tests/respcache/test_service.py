"""The response cache service on the embedded store: what is kept, what a hit answers, single flight,
refresh, and a failing store that is bypassed and counted."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from pathlib import Path

import orjson

from sidecar.respcache.call import CacheCall
from sidecar.respcache.config import CacheConfig
from sidecar.respcache.service import CacheRequest, Completed, ResponseCache
from sidecar.respcache.sqlite_store import FILE_NAME, SQLiteEntries
from sidecar.sansio.messages import StreamParser
from sidecar.sansio.replay import message_from_sse

FIXTURES = Path(__file__).parent.parent / "fixtures" / "sse"
STREAM = (FIXTURES / "tool_use_response.txt").read_bytes()
REFUSAL = (FIXTURES / "stream-a-refusal.sse").read_bytes()
TRUNCATED = (FIXTURES / "truncated.sse").read_bytes()
DOC = {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": "weather?"}]}
SSE_TYPE = b"text/event-stream; charset=utf-8"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def make(tmp_path: Path, mode: str = "on") -> tuple[ResponseCache, Counter[str]]:
    results: Counter[str] = Counter()
    backend = SQLiteEntries(tmp_path / FILE_NAME, 10_000_000)
    cache = ResponseCache(
        CacheConfig(mode=mode), backend, on_result=lambda app, result: results.update([result])
    )
    await cache.open()
    return cache, results


def request(
    *, stream: bool = True, header: bytes | None = None, ttl: bytes | None = None, now: float = 1e6
) -> CacheRequest:
    headers = [(b"x-api-key", b"sk-a"), (b"anthropic-version", b"2023-06-01")]
    if header is not None:
        headers.append((b"x-sidecar-cache", header))
    if ttl is not None:
        headers.append((b"x-sidecar-cache-ttl", ttl))
    return CacheRequest("evals", b"/v1/messages", headers, DOC, stream, now)


def relay(call: CacheCall, stream: bytes, status: int = 200, now: float = 1e6) -> Completed:
    """What the proxy does on a miss: feed the answer as relayed, then say what the call came to."""
    for cut in range(0, len(stream), 100):
        call.feed(stream[cut : cut + 100])
    parser = StreamParser()
    parser.feed(stream)
    return Completed(status, "ok", parser.close(), SSE_TYPE, 0.0123, "claude-sonnet-4-5", now)


async def test_a_kept_stream_answers_stream_and_json_requests(tmp_path: Path) -> None:
    cache, results = await make(tmp_path)
    call = await cache.begin(request())
    assert call is not None and call.answer is None and call.response_header == (b"x-sidecar-cache", b"miss")
    assert cache.finish(call, relay(call, STREAM)) is None
    call.close()
    await cache.drain(5)
    hit = await cache.begin(request(now=1e6 + 42))
    assert hit is not None and hit.answer is not None
    assert hit.answer.body == STREAM  # replayed byte for byte
    assert (b"x-sidecar-cache", b"hit") in hit.answer.headers
    assert (b"x-sidecar-cache-age", b"42") in hit.answer.headers
    assert hit.answer.summary.tool_use_ids == ["toolu_01NRLabsLyVHZPKxbKvkfSMn"]
    assert hit.answer.summary.usage.output_tokens == 0  # a hit makes no model call
    assert cache.finish(hit, relay(hit, b"")) == 0.0123  # the savings: what the stored call cost
    as_json = await cache.begin(request(stream=False))
    assert as_json is not None and as_json.answer is not None
    assert orjson.loads(as_json.answer.body) == message_from_sse(STREAM)
    assert (b"content-type", b"application/json") in as_json.answer.headers
    assert results == Counter(miss=1, hit=2)
    await cache.close()


async def test_only_complete_successful_answers_are_kept(tmp_path: Path) -> None:
    cache, _ = await make(tmp_path)
    for stream, status in ((REFUSAL, 200), (TRUNCATED, 200), (STREAM, 500)):
        call = await cache.begin(request())
        assert call is not None
        cache.finish(call, relay(call, stream, status))
        call.close()
    await cache.drain(5)
    assert cache.stored_bytes() == 0
    await cache.close()


async def test_a_burst_of_identical_requests_shares_one_call(tmp_path: Path) -> None:
    cache, results = await make(tmp_path)
    leader = await cache.begin(request())
    assert leader is not None and leader.flight is not None
    waiters = [asyncio.ensure_future(cache.begin(request(stream=i % 2 == 0))) for i in range(6)]
    await asyncio.sleep(0.05)
    assert not any(w.done() for w in waiters)  # they wait for the leader's answer
    cache.finish(leader, relay(leader, STREAM))
    leader.close()
    calls = await asyncio.gather(*waiters)
    assert all(c is not None and c.answer is not None for c in calls)
    assert results == Counter(miss=1, hit=6)
    await cache.drain(5)
    assert len(cache.flights) == 0
    await cache.close()


async def test_waiters_make_their_own_calls_when_the_leader_fails(tmp_path: Path) -> None:
    cache, results = await make(tmp_path)
    leader = await cache.begin(request())
    assert leader is not None
    waiters = [asyncio.ensure_future(cache.begin(request())) for _ in range(3)]
    await asyncio.sleep(0.02)
    leader.close()  # the call ended before finish (a refusal, a failure in accounting)
    calls = await asyncio.gather(*waiters)
    assert all(c is not None and c.answer is None and c.flight is None for c in calls)
    assert results == Counter(miss=4) and len(cache.flights) == 0
    await cache.close()


async def test_refresh_replaces_an_entry_but_a_failed_refresh_keeps_it(tmp_path: Path) -> None:
    cache, results = await make(tmp_path, mode="opt-in")
    assert await cache.begin(request()) is None  # opt-in: no header, no cache
    first = await cache.begin(request(header=b"on", ttl=b"100"))
    assert first is not None
    cache.finish(first, relay(first, STREAM))
    await cache.drain(5)
    failed = await cache.begin(request(header=b"refresh"))
    assert failed is not None and failed.answer is None and failed.flight is None
    cache.finish(failed, relay(failed, STREAM, status=529))
    await cache.drain(5)
    kept = await cache.begin(request(header=b"on", now=1e6 + 99))
    assert kept is not None and kept.answer is not None  # the old entry; a hit does not extend it
    gone = await cache.begin(request(header=b"on", now=1e6 + 100))
    assert gone is not None and gone.answer is None  # its lifetime is over
    gone.close()
    assert results["bypass"] == 1
    await cache.close()


async def test_a_broken_store_is_bypassed_and_counted(tmp_path: Path) -> None:
    cache, results = await make(tmp_path)
    kept = await cache.begin(request())
    assert kept is not None
    cache.finish(kept, relay(kept, STREAM))
    await cache.drain(5)
    results.clear()
    other = sqlite3.connect(tmp_path / FILE_NAME)
    other.execute("DROP TABLE entries")
    other.close()
    call = await cache.begin(request())
    assert call is not None and call.answer is None  # the call goes on: a miss
    cache.finish(call, relay(call, STREAM))
    await cache.drain(5)
    assert results == Counter(store_error=2, miss=1)  # the lookup and the write
    await cache.close()


async def test_an_answer_larger_than_an_entry_may_be_is_not_copied(tmp_path: Path) -> None:
    cache, _ = await make(tmp_path)
    cache.max_entry_bytes = 500
    call = await cache.begin(request())
    assert call is not None
    cache.finish(call, relay(call, STREAM))
    await cache.drain(5)
    assert cache.stored_bytes() == 0 and len(cache.flights) == 0
    await cache.close()
