"""50 MB bodies and megabyte header lines through a real ``serve`` process, with its memory measured.

The sidecar runs as its own process so that its peak RSS (``VmHWM``, restarted before each call) is
its own: the test process holds the fake upstream and the 50 MB bodies.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from sidecar.server.protocol import MAX_HEAD_BYTES
from sidecar.testing.fake_upstream import FakeUpstream
from tests.hostile.support import (
    API_HEADERS,
    ServeProcess,
    body_of,
    proc_status_mb,
    raw_request,
    reset_peak_rss,
    status_of,
)
from tests.waiting import wait_until

T = TypeVar("T")
MB = 1_000_000
BODY_SIZE = 50 * MB
HEADERS = {"x-api-key": "sk-ant-api03-big-inputs", "anthropic-version": "2023-06-01"}


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture(scope="module")
def served(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    tmp: Path = tmp_path_factory.mktemp("big-inputs")
    env = {"SIDECAR_UPSTREAM_URL": upstream.url, "SIDECAR_MAX_BODY_MESSAGES": str(60 * MB)}
    with ServeProcess(tmp, env) as proc:
        yield proc
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]


def growth_during(proc: ServeProcess, call: Callable[[], T]) -> tuple[T, float]:
    """``call()``'s result and how far the sidecar's peak RSS rose above its RSS before the call (MB)."""
    reset_peak_rss(proc.pid)
    before = proc_status_mb(proc.pid, "VmRSS")
    result = call()
    return result, proc_status_mb(proc.pid, "VmHWM") - before


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_fifty_megabyte_non_json_body_is_forwarded_intact(
    served: ServeProcess, upstream: FakeUpstream
) -> None:
    body = os.urandom(BODY_SIZE // 2) * 2

    def call() -> httpx.Response:
        return httpx.post(served.url + "/v1/messages", content=body, headers=HEADERS, timeout=60)

    resp, growth = growth_during(served, call)
    assert resp.status_code == 400  # the upstream's answer to a body that is not JSON, relayed
    assert resp.json()["error"]["type"] == "invalid_request_error"
    assert sha256(upstream.requests[-1].body) == sha256(body)
    # Read whole (chunks, then one join): twice the body, plus slack for buffers.
    assert growth < 2 * BODY_SIZE / MB + 30, f"peak RSS rose {growth:.0f} MB for a {BODY_SIZE // MB} MB body"


def test_fifty_megabyte_json_body_is_forwarded_intact_and_recorded(
    served: ServeProcess, upstream: FakeUpstream
) -> None:
    doc = {
        "model": "claude-haiku-4-5",
        "max_tokens": 5,
        "system": "Short system prompt.",
        "messages": [{"role": "user", "content": "w" * BODY_SIZE}],
    }
    body = json.dumps(doc).encode()

    def call() -> httpx.Response:
        headers = {**HEADERS, "x-session-id": "fifty-mb", "content-type": "application/json"}
        return httpx.post(served.url + "/v1/messages", content=body, headers=headers, timeout=60)

    resp, growth = growth_during(served, call)
    assert resp.status_code == 200, resp.text[:300]
    assert sha256(upstream.requests[-1].body) == sha256(body)
    # The body, plus orjson's parse of it (about twice its size while it runs), plus slack.
    assert growth < 4 * BODY_SIZE / MB + 30, f"peak RSS rose {growth:.0f} MB for a {BODY_SIZE // MB} MB body"

    def recorded() -> httpx.Response | None:  # the call is recorded just after its last byte
        got = httpx.get(served.url + "/sidecar/v1/sessions/fifty-mb")
        return got if got.status_code == 200 else None

    session = wait_until(recorded, interval=0.05)
    assert session is not None
    calls = session.json()["calls"]
    assert [(c["model"], c["status"]) for c in calls] == [("claude-haiku-4-5", 200)]


def test_endless_header_line_is_refused_before_it_is_buffered(served: ServeProcess) -> None:
    head = b"GET /v1/models HTTP/1.1\r\nHost: x\r\n" + API_HEADERS + b"x-big: "

    def call() -> bytes:
        return raw_request(served.port, head + b"h" * (64 * MB) + b"\r\n\r\n", timeout_s=20)

    response, growth = growth_during(served, call)
    # The 431 is written before the close; a client still sending may see a reset instead.
    assert response == b"" or status_of(response) == 431, response[:200]
    assert growth < 10, f"peak RSS rose {growth:.0f} MB while refusing one header line"
    assert httpx.get(served.url + "/v1/models", headers=HEADERS).status_code == 200


def test_megabyte_header_lines_get_clean_answers(served: ServeProcess, upstream: FakeUpstream) -> None:
    big = b"v" * MB
    assert len(big) < MAX_HEAD_BYTES  # under the sidecar's own limit: forwarded, the upstream decides
    cases = {
        b"GET /v1/models HTTP/1.1\r\nx-big: " + big + b"\r\n": {400},  # the fake's 8 KB line limit
        b"GET /v1/models?q=" + big + b" HTTP/1.1\r\n": {400},
        b"GET /v1/models HTTP/1.1\r\nx-sidecar-note: " + big + b"\r\n": {200},  # consumed, not forwarded
        b"GET /v1/models HTTP/1.1\r\n" + b"x-many: 1\r\n" * 50_000: {200, 400},
    }
    for head, expected in cases.items():
        response = raw_request(
            served.port, head + b"Host: x\r\n" + API_HEADERS + b"connection: close\r\n\r\n"
        )
        assert status_of(response) in expected, response[:300]
        if status_of(response) == 400:
            assert body_of(response)  # an error body, not a dropped connection
    assert httpx.get(served.url + "/v1/models", headers=HEADERS).status_code == 200
    assert httpx.get(served.url + "/healthz").status_code == 200
