"""Streams are relayed chunk by chunk as they arrive, and their usage is recorded once."""

from __future__ import annotations

import json
import time

import httpx

from sidecar.server.inprocess import RunningSidecar
from sidecar.testing.fake_upstream import FakeUpstream
from tests.conftest import API_KEY
from tests.waiting import SLACK_S

HEADERS = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"}
STREAM_BODY = json.dumps(
    {
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "stream": True,
        "messages": [{"role": "user", "content": "Tell me a story"}],
    }
).encode()


def _chunk_times(url: str, headers: dict[str, str]) -> tuple[float, float, float, bytes]:
    """(time to first body byte, time to last byte, start) measured by a client reading as bytes arrive."""
    with httpx.Client(timeout=10) as client:
        start = time.perf_counter()
        first = None
        data = b""
        with client.stream("POST", url + "/v1/messages", headers=headers, content=STREAM_BODY) as resp:
            for chunk in resp.iter_raw():
                if first is None and b"content_block_delta" in data + chunk:
                    first = time.perf_counter()
                data += chunk
        last = time.perf_counter()
    assert first is not None
    return first - start, last - start, start, data


def test_chunks_reach_client_before_upstream_finishes(slow_fake: FakeUpstream, make_sidecar) -> None:  # type: ignore[no-untyped-def]
    sidecar = make_sidecar(slow_fake.url)
    # The slow fake: 0.2 s to first token, then 10 deltas 50 ms apart (≈0.7 s in all).
    d_first, _, _, d_data = _chunk_times(slow_fake.url, HEADERS)
    p_first, p_last, _, p_data = _chunk_times(sidecar.url, HEADERS)
    assert p_data == d_data  # not re-encoded
    # The first delta arrives long before the stream ends, through the sidecar as directly.
    assert p_last - p_first > 0.3
    assert p_first < p_last / 2
    # Time to first delta through the sidecar: after the fake's 0.2 s first-token delay, and close to the
    # direct one within what a loaded machine adds (a buffering proxy fails the two checks above; the
    # overhead figure is the bench's).
    assert 0.2 < p_first < d_first + SLACK_S


def test_stream_usage_recorded_once_with_ttft(slow_fake: FakeUpstream, make_sidecar) -> None:  # type: ignore[no-untyped-def]
    sidecar = make_sidecar(slow_fake.url)
    usage = {
        "input_tokens": 120,
        "output_tokens": 40,
        "cache_read_input_tokens": 3000,
        "cache_creation": {"ephemeral_5m_input_tokens": 200, "ephemeral_1h_input_tokens": 100},
    }
    headers = {**HEADERS, "x-fake-usage": json.dumps(usage), "x-session-id": "s-stream"}
    _chunk_times(sidecar.url, headers)
    events = sidecar.wait_events(1, session_id="s-stream")
    assert len(events) == 1
    e = events[0]
    assert e.stream is True
    assert e.status == 200
    assert e.outcome == "ok"
    assert e.usage.input_tokens == 120
    assert e.usage.output_tokens == 40
    assert e.usage.cache_read_input_tokens == 3000
    assert e.usage.cache_creation_input_tokens == 300
    assert e.usage.write_buckets() == (200, 100)
    # Sonnet 4.5: $3 in, $15 out, $0.30 read, $3.75 5m write, $6 1h write (per million tokens).
    expected = (120 * 3 + 40 * 15 + 3000 * 0.30 + 200 * 3.75 + 100 * 6) / 1e6
    assert e.cost_usd is not None
    assert abs(e.cost_usd - expected) < 1e-9
    assert e.ttft_s is not None and e.ttfb_s is not None
    assert 0.15 < e.ttft_s < e.duration_s  # the fake waits 0.2 s before the first token
    assert e.duration_s > 0.5
    assert e.request_id and e.request_id.startswith("req_")


def test_cache_fields_only_in_message_delta(fake: FakeUpstream, sidecar: RunningSidecar) -> None:
    usage = {
        "input_tokens": 10,
        "output_tokens": 7,
        "cache_read_input_tokens": 500,
        "cache_creation": None,
        "cache_creation_input_tokens": 80,
    }
    headers = {
        **HEADERS,
        "x-fake-usage": json.dumps(usage),
        "x-fake-cache-fields-in-delta": "1",
        "x-session-id": "s-delta",
    }
    with httpx.Client() as client:
        client.post(sidecar.url + "/v1/messages", headers=headers, content=STREAM_BODY).read()
    (e,) = sidecar.wait_events(1, session_id="s-delta")
    assert (e.usage.input_tokens, e.usage.output_tokens) == (10, 7)
    assert e.usage.cache_read_input_tokens == 500
    # No TTL split: all 80 written tokens priced as 5-minute writes.
    expected = (10 * 3 + 7 * 15 + 500 * 0.30 + 80 * 3.75) / 1e6
    assert e.cost_usd is not None and abs(e.cost_usd - expected) < 1e-9
