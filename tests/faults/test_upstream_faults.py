"""Upstream faults (SPEC R-PX-1, R-PX-3, R-PX-5, R-PX-8): refused connections, timeouts, resets, error
statuses, in-band ``error`` events and malformed SSE.

For each, the client sees what it would see without the sidecar (compared with a direct call to the
fake wherever the fake can produce the fault) or a clear Anthropic-shaped error where the sidecar has
to answer itself; every request is accounted for by exactly one event; the sidecar stays healthy.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import anthropic
import httpx
import pytest

from sidecar.server.inprocess import RunningSidecar
from sidecar.testing.fake_upstream import FakeUpstream
from tests.conftest import API_KEY
from tests.faults.support import (
    BODY,
    HEADERS,
    MODEL,
    Exchange,
    anthropic_error,
    assert_healthy,
    body,
    established_to,
    exact_events,
    exchange,
    free_port,
    metric,
    port_of,
    wait_until,
)

MakeSidecar = Callable[..., RunningSidecar]


def test_refused_connection_is_502_for_every_attempt_then_recovers(make_sidecar: MakeSidecar) -> None:
    port = free_port()
    sidecar = make_sidecar(f"http://127.0.0.1:{port}")
    # Without the sidecar the client's own connection is refused.
    with pytest.raises(httpx.ConnectError):
        httpx.post(f"http://127.0.0.1:{port}/v1/messages", headers=HEADERS, content=body(stream=False))
    for stream in (False, True):
        started = time.monotonic()
        resp = httpx.post(
            sidecar.url + "/v1/messages",
            headers={**HEADERS, "x-session-id": f"refused-{stream}"},
            content=body(stream=stream),
            timeout=10,
        )
        assert time.monotonic() - started < 2.0  # a refusal is immediate: no connect-timeout wait
        assert resp.status_code == 502
        assert resp.headers["content-type"].startswith("application/json")  # not an SSE stream
        assert resp.headers["x-should-retry"] == "true"
        assert anthropic_error(resp) == "api_error"
    # The SDK retries a 502 marked retryable: every attempt is an upstream call with its own event.
    client = anthropic.Anthropic(base_url=sidecar.url, api_key=API_KEY, max_retries=1)
    with pytest.raises(anthropic.InternalServerError):
        client.messages.create(
            model=MODEL, max_tokens=8, messages=BODY["messages"], extra_headers={"x-session-id": "sdk"}
        )
    events = exact_events(sidecar, 4)
    assert {(e.status, e.outcome, e.error_type) for e in events} == {(502, "upstream_error", "api_error")}
    by_session = sorted((e.session_id, e.stream, e.retry_count) for e in events)
    assert by_session == [
        ("refused-False", False, 0),
        ("refused-True", True, 0),
        ("sdk", False, 0),
        ("sdk", False, 1),
    ]
    labels = {"model": MODEL, "app": "default", "status_class": "5xx"}
    assert metric(sidecar, "sidecar_requests_total", **labels, stream="false") == 3
    assert metric(sidecar, "sidecar_requests_total", **labels, stream="true") == 1
    # The upstream comes up on that port: the very next call goes through, nothing was cached as dead.
    with FakeUpstream(port=port):
        assert_healthy(sidecar)
    assert len(exact_events(sidecar, 5)) == 5


def test_upstream_timeout_before_headers_and_mid_stream(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    timeout_s = 0.3
    sidecar = make_sidecar(fake.url, upstream_timeout=timeout_s)
    # Before headers (the upstream never answers): a 504 in Anthropic's shape, after about the timeout.
    started = time.monotonic()
    resp = httpx.post(
        sidecar.url + "/v1/messages",
        headers={**HEADERS, "x-fake-scenario": "hang", "x-session-id": "hang"},
        content=body(stream=True),
        timeout=10,
    )
    elapsed = time.monotonic() - started
    assert resp.status_code == 504 and anthropic_error(resp) == "timeout_error"
    assert resp.headers["x-should-retry"] == "true"
    assert timeout_s - 0.05 < elapsed < timeout_s + 1.5
    # Mid-stream (the upstream stalls for 1 s between events): the client gets exactly the bytes a
    # direct client with the same read timeout gets, then the connection ends early.
    headers = {**HEADERS, "x-fake-chunk-delay-ms": "1000", "x-session-id": "stall"}
    direct = exchange(fake.url, headers, body(stream=True), read_timeout_s=timeout_s)
    started = time.monotonic()
    proxied = exchange(sidecar.url, headers, body(stream=True))
    assert time.monotonic() - started < timeout_s + 1.5
    assert direct.error is not None and proxied.error is not None
    assert (proxied.status, proxied.headers, proxied.data) == (direct.status, direct.headers, direct.data)
    assert proxied.data.startswith(b"event: message_start") and b"message_stop" not in proxied.data
    events = exact_events(sidecar, 2)
    hang, stall = sorted(events, key=lambda e: e.session_id)
    assert (hang.status, hang.outcome, hang.error_type) == (504, "upstream_error", "timeout_error")
    assert (stall.status, stall.outcome, stall.error_type) == (200, "upstream_error", "stream_interrupted")
    assert stall.usage.input_tokens > 0  # message_start's usage, seen before the stall, is kept
    assert_healthy(sidecar)


def test_resets_before_and_mid_answer_concurrently(fake: FakeUpstream, sidecar: RunningSidecar) -> None:
    headers = {**HEADERS, "x-fake-scenario": "reset-mid-stream"}
    # Not streamed, the fake drops the connection before any byte: a client on its own sees the
    # connection die; through the sidecar it gets a retryable 502 in Anthropic's shape instead.
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(fake.url + "/v1/messages", headers=headers, content=body(stream=False))
    direct_stream = exchange(fake.url, headers, body(stream=True))
    assert direct_stream.error is not None and b"message_stop" not in direct_stream.data
    fake.reset()
    results: dict[int, Exchange] = {}

    def call(i: int) -> None:
        results[i] = exchange(sidecar.url, {**headers, "x-session-id": f"r{i}"}, body(stream=i % 2 == 1))

    threads = [threading.Thread(target=call, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert sorted(results) == list(range(10))
    for i, got in results.items():
        if i % 2:  # streamed: the same bytes as directly, then the same abrupt end
            assert got.status == direct_stream.status and got.data == direct_stream.data
            assert got.headers == direct_stream.headers and got.error is not None
        else:
            assert got.status == 502 and got.error is None
            assert got.headers["x-should-retry"] == "true"
            assert b'"type":"api_error"' in got.data
    assert len(fake.requests) == 10  # no hidden retry upstream
    events = exact_events(sidecar, 10)
    outcomes = sorted((int(e.session_id[1:]) % 2, e.status, e.outcome, e.error_type) for e in events)
    assert (
        outcomes
        == [(0, 502, "upstream_error", "api_error")] * 5
        + [(1, 200, "upstream_error", "stream_interrupted")] * 5
    )
    # Broken connections are not reused: nothing is left open on the upstream, and calls still work.
    assert wait_until(lambda: established_to(port_of(fake.url)) == 0)
    assert_healthy(sidecar)


@pytest.mark.parametrize("stream", [False, True])
def test_error_statuses_relayed_unchanged_and_recorded(
    fake: FakeUpstream, sidecar: RunningSidecar, stream: bool
) -> None:
    cases = [
        ("error-429", 429, "rate_limit_error"),
        ("error-500", 500, "api_error"),
        ("error-529", 529, "overloaded_error"),
    ]
    for scenario, status, error_type in cases:
        headers = {
            **HEADERS,
            "x-fake-scenario": scenario,
            "x-fake-retry-after-ms": "250",
            "x-session-id": scenario,
        }
        direct = exchange(fake.url, headers, body(stream=stream))
        proxied = exchange(sidecar.url, headers, body(stream=stream))
        assert proxied.same_as(direct), (proxied, direct)
        assert proxied.status == status and proxied.error is None
        assert f'"type":"{error_type}"'.encode() in proxied.data.replace(b": ", b":")
        assert proxied.headers["retry-after-ms"] == "250"  # the client's back-off hint survives
        assert proxied.headers["request-id"].startswith("req_")
        if status == 429:
            assert proxied.headers["retry-after"] == "1"
    events = exact_events(sidecar, len(cases))
    got = sorted((e.status, e.outcome, e.error_type, e.stream, e.request_id is not None) for e in events)
    assert got == [(s, "ok", t, stream, True) for _, s, t in cases]  # relayed in full: outcome ok
    for _, status, _ in cases:
        labels = {"model": MODEL, "status": str(status)}
        assert metric(sidecar, "sidecar_upstream_errors_total", **labels) == 1
    assert_healthy(sidecar)


@pytest.mark.parametrize(
    ("scenario", "outcome", "error_type"),
    [("error-in-stream", "upstream_error", "overloaded_error"), ("malformed-sse", "ok", None)],
)
def test_stream_anomalies_relayed_byte_for_byte(
    fake: FakeUpstream, sidecar: RunningSidecar, scenario: str, outcome: str, error_type: str | None
) -> None:
    headers = {**HEADERS, "x-fake-scenario": scenario, "x-session-id": scenario}
    direct = exchange(fake.url, headers, body(stream=True))
    proxied = exchange(sidecar.url, headers, body(stream=True))
    assert proxied.same_as(direct)
    assert proxied.status == 200 and proxied.error is None
    # The SDK reacts the same way with and without the sidecar.
    reactions: list[tuple[str, str | None, object]] = []
    for url in (fake.url, sidecar.url):
        client = anthropic.Anthropic(base_url=url, api_key=API_KEY, max_retries=0)
        try:
            with client.messages.stream(
                model=MODEL, max_tokens=64, messages=BODY["messages"], extra_headers=headers
            ) as s:
                final = s.get_final_message()
            reactions.append(("message", final.stop_reason, final.usage.output_tokens))
        except anthropic.APIError as exc:
            reactions.append(("error", type(exc).__name__, str(exc)))
    assert reactions[0] == reactions[1]
    events = exact_events(sidecar, 2)
    assert [(e.status, e.outcome, e.error_type) for e in events] == [(200, outcome, error_type)] * 2
    for e in events:
        assert e.usage.input_tokens > 0  # message_start parsed around the anomaly
        if scenario == "malformed-sse":
            assert e.stop_reason == "end_turn" and e.usage.output_tokens > 0 and e.cost_usd
    assert_healthy(sidecar)
