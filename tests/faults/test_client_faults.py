"""Client faults (SPEC R-PX-5, R-AC-1): the client goes away before the first byte, mid-stream, after
the last byte, or while still uploading its request.

A client that leaves cancels its upstream call promptly (the fake upstream sees its connection close,
checked in the kernel's socket table), the call is recorded once with outcome ``client_disconnected``
and the usage seen so far, and the sidecar stays healthy.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable

import httpx
import pytest

from sidecar.server.inprocess import RunningSidecar
from sidecar.testing.fake_upstream import FakeUpstream
from tests.faults.support import (
    HEADERS,
    Exchange,
    assert_healthy,
    body,
    established_to,
    exact_events,
    exchange,
    port_of,
    wait_until,
)
from tests.waiting import SLACK_S

MakeSidecar = Callable[..., RunningSidecar]
# The client's read timeout in the "gives up" cases: long enough that even a loaded machine has the
# upstream call open while the client still waits (0.5 s was not).
GIVE_UP_S = 2.0


def _in_background(fn: Callable[[], Exchange]) -> tuple[threading.Thread, list[Exchange]]:
    out: list[Exchange] = []
    thread = threading.Thread(target=lambda: out.append(fn()))
    thread.start()
    return thread, out


@pytest.mark.parametrize(
    ("fault", "stream", "status"),
    [
        ({"x-fake-scenario": "hang"}, False, 0),  # no response headers at all
        ({"x-fake-first-token-delay-ms": "5000"}, True, 200),  # headers, then silence
    ],
    ids=["before-headers", "before-first-event"],
)
def test_client_giving_up_early_cancels_the_upstream_call(
    fake: FakeUpstream, make_sidecar: MakeSidecar, fault: dict[str, str], stream: bool, status: int
) -> None:
    sidecar = make_sidecar(fake.url)
    upstream_port = port_of(fake.url)
    headers = {**HEADERS, **fault, "x-session-id": "gave-up"}
    direct = exchange(fake.url, headers, body(stream=stream), read_timeout_s=GIVE_UP_S)
    assert wait_until(lambda: established_to(upstream_port) == 0)
    thread, out = _in_background(
        lambda: exchange(sidecar.url, headers, body(stream=stream), read_timeout_s=GIVE_UP_S)
    )
    # While the client waits, the sidecar's upstream call is open (this is what must end promptly).
    assert wait_until(lambda: established_to(upstream_port) == 1, timeout=GIVE_UP_S)
    thread.join(10)
    gone_at = time.monotonic()
    assert wait_until(lambda: established_to(upstream_port) == 0)
    # Promptly: well before the fake would have answered (5 s after the call started / never).
    assert time.monotonic() - gone_at < SLACK_S
    (proxied,) = out
    assert proxied.same_as(direct)  # both: the client's own read timeout, after the same bytes
    assert proxied.error == "ReadTimeout" and proxied.status == (status or None)
    (event,) = exact_events(sidecar, 1)
    assert (event.status, event.outcome, event.stream) == (status, "client_disconnected", stream)
    if status == 0:  # before headers, the call lasted until the client gave up (the sidecar's clock
        # starts when it has read the request and stops when it sees the client go: either may lag)
        assert GIVE_UP_S - SLACK_S < event.duration_s < GIVE_UP_S + SLACK_S
    assert len(fake.requests) == 2  # the direct call and the proxied one: nothing retried upstream
    assert_healthy(sidecar)


def _leave_after(url: str, deltas: int, session: str) -> float:
    """Stream a call, close the connection once ``deltas`` text deltas arrived; when it left."""
    headers = {**HEADERS, "x-fake-chunk-delay-ms": "200", "x-fake-deltas": "20", "x-session-id": session}
    seen = b""
    with (
        httpx.Client(timeout=10) as client,
        client.stream("POST", url + "/v1/messages", headers=headers, content=body(stream=True)) as resp,
    ):
        assert resp.status_code == 200
        for chunk in resp.iter_raw():
            seen += chunk
            if seen.count(b"event: content_block_delta") >= deltas:
                break
    return time.monotonic()


def test_clients_leaving_mid_stream_cancel_their_upstream_calls(
    fake: FakeUpstream, sidecar: RunningSidecar
) -> None:
    left: dict[int, float] = {}

    def client(i: int) -> None:
        left[i] = _leave_after(sidecar.url, i, f"mid-{i}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(1, 6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert sorted(left) == [1, 2, 3, 4, 5]
    last_left = max(left.values())
    # The last client left with 15 of 20 deltas to go (>= 3 s at 200 ms each): the sidecar closes
    # every upstream connection long before the fake would have finished.
    assert wait_until(lambda: established_to(port_of(fake.url)) == 0)
    assert time.monotonic() - last_left < SLACK_S
    events = exact_events(sidecar, 5)
    assert {(e.status, e.outcome, e.stream) for e in events} == {(200, "client_disconnected", True)}
    for e in events:
        assert e.usage.input_tokens > 0  # partial usage from message_start is kept
        assert e.stop_reason is None  # the final message_delta never came
        assert e.cost_usd is not None and e.cost_usd > 0
    assert_healthy(sidecar)


def _raw_call(port: int, content: bytes, session: str) -> bytes:
    """An HTTP/1.1 call on a raw socket, read up to the response's last byte, then reset (no FIN)."""
    head = (
        "POST /v1/messages HTTP/1.1\r\nhost: 127.0.0.1\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in HEADERS.items())
        + f"x-session-id: {session}\r\ncontent-length: {len(content)}\r\n\r\n"
    )
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    data = b""
    try:
        sock.sendall(head.encode() + content)
        while not _complete(data):
            chunk = sock.recv(65536)
            assert chunk, "connection closed before the response was complete"
            data += chunk
    finally:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    return data


def _complete(data: bytes) -> bool:
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.lower().split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return len(rest) >= int(line.split(b":")[1])
    return rest.endswith(b"0\r\n\r\n")  # chunked: the terminating chunk is the last byte


@pytest.mark.parametrize("stream", [False, True])
def test_client_resetting_after_the_last_byte_is_a_normal_call(sidecar: RunningSidecar, stream: bool) -> None:
    data = _raw_call(sidecar.port, body(stream=stream), "after-last")
    assert data.startswith(b"HTTP/1.1 200")
    assert (b"event: message_stop" in data) is stream
    (event,) = exact_events(sidecar, 1)
    assert (event.status, event.outcome, event.stop_reason) == (200, "ok", "end_turn")
    assert event.usage.output_tokens > 0 and event.cost_usd is not None
    assert_healthy(sidecar)


def test_client_leaving_mid_upload_reaches_nothing_upstream(
    fake: FakeUpstream, sidecar: RunningSidecar
) -> None:
    content = body(stream=False)
    head = (
        "POST /v1/messages HTTP/1.1\r\nhost: 127.0.0.1\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in HEADERS.items())
        + f"content-length: {len(content) + 100}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", sidecar.port), timeout=5) as sock:
        sock.sendall(head.encode() + content)  # 100 bytes short of what was announced
        time.sleep(0.1)  # the client stalls a while, then leaves
    time.sleep(0.2)  # nothing signals "nothing happened": give a wrong forward time to show
    # Half a request is never forwarded, and is no upstream call: no event (R-AC-1).
    assert fake.requests == []
    assert sidecar.wait_events(1, timeout_s=0.3) == []
    assert_healthy(sidecar)
    assert len(exact_events(sidecar, 1)) == 1


def test_client_leaving_a_streamed_upload_is_recorded_as_client_disconnected(
    fake: FakeUpstream, sidecar: RunningSidecar
) -> None:
    head = (
        "POST /v1/files HTTP/1.1\r\nhost: 127.0.0.1\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in HEADERS.items() if k != "content-type")
        + "content-type: application/octet-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", sidecar.port), timeout=5) as sock:
        sock.sendall(head.encode() + b"5\r\nhello\r\n")
        # The upload is under way upstream; then the client goes away mid-body.
        assert wait_until(lambda: established_to(port_of(fake.url)) == 1)
    (event,) = exact_events(sidecar, 1)
    assert_healthy(sidecar)
    assert (event.status, event.outcome) == (0, "client_disconnected")


def test_disconnected_stream_duration_runs_until_the_client_left(sidecar: RunningSidecar) -> None:
    started = time.monotonic()
    left = _leave_after(sidecar.url, 2, "duration")
    (event,) = exact_events(sidecar, 1)
    assert event.outcome == "client_disconnected"
    # At least the fake's own pacing up to the second delta (content_block_start and two deltas, 200 ms
    # before each), at most the client's whole stay plus a loaded machine's slack: far from the
    # 4.8 s the whole stream would take (24 events after message_start).
    assert 3 * 0.2 - 0.01 < event.duration_s < (left - started) + SLACK_S


def test_client_giving_up_on_an_upload_cancels_the_upstream_call(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    sidecar = make_sidecar(fake.url, drain_timeout=1.0)
    headers = {k: v for k, v in HEADERS.items() if k != "content-type"}
    headers.update({"x-fake-scenario": "hang", "x-session-id": "upload"})
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            sidecar.url + "/v1/files",
            headers=headers,
            files={"file": ("notes.txt", b"hello")},
            timeout=httpx.Timeout(5, read=GIVE_UP_S),
        )
    gone_at = time.monotonic()
    assert [r.path for r in fake.requests] == ["/v1/files"]  # the upload did reach the upstream
    assert wait_until(lambda: established_to(port_of(fake.url)) == 0)
    assert time.monotonic() - gone_at < SLACK_S  # promptly: the fake never answers
    (event,) = exact_events(sidecar, 1)
    assert (event.path, event.outcome) == ("/v1/files", "client_disconnected")
