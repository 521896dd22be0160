"""Shared tools of the fault suite: raw exchanges to compare direct and proxied calls, exact event
accounting, health checks, metric reads and a view of the fake upstream's open connections."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from sidecar.core.events import CallEvent
from sidecar.sansio.headers import HOP_BY_HOP
from sidecar.server.inprocess import RunningSidecar
from tests.conftest import API_KEY
from tests.metrics_util import sample
from tests.net import free_port as free_port  # shared with the tests of this package
from tests.waiting import wait_until as wait_until  # shared with the tests of this package

MODEL = "claude-sonnet-4-5"
HEADERS = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"}
BODY: dict[str, Any] = {"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": "Hi"}]}

# Headers that legitimately differ between two calls made a moment apart: hop-by-hop ones, the clock
# (``date``) and the rate-limit state (``-remaining`` moves with every call; ``-reset`` is a wall-clock
# timestamp to the second, so two calls straddling a second boundary differ).
_VOLATILE = {h.decode() for h in HOP_BY_HOP} | {"date"}


def body(*, stream: bool, **extra: Any) -> bytes:
    return json.dumps({**BODY, "stream": stream, **extra}).encode()


def comparable_headers(headers: httpx.Headers) -> dict[str, str]:
    return {
        k: v
        for k, v in headers.items()
        if k not in _VOLATILE
        and not (k.startswith("anthropic-ratelimit-") and k.endswith(("-remaining", "-reset")))
    }


@dataclass
class Exchange:
    """What a client saw: status and headers (``None`` when none arrived), the body bytes received
    before the connection ended, and the exception that ended it early (its class name), if any."""

    status: int | None
    headers: dict[str, str]
    data: bytes
    error: str | None

    def same_as(self, other: Exchange) -> bool:
        return (self.status, self.headers, self.data, self.error) == (
            other.status,
            other.headers,
            other.data,
            other.error,
        )


def exchange(
    base_url: str, headers: dict[str, str], content: bytes, *, read_timeout_s: float = 10.0
) -> Exchange:
    """POST ``/v1/messages`` and read the raw body until it ends, normally or not."""
    status: int | None = None
    got: dict[str, str] = {}
    data = b""
    timeout = httpx.Timeout(10.0, read=read_timeout_s)
    try:
        with (
            httpx.Client(timeout=timeout) as client,
            client.stream("POST", base_url + "/v1/messages", headers=headers, content=content) as resp,
        ):
            status, got = resp.status_code, comparable_headers(resp.headers)
            for chunk in resp.iter_raw():
                data += chunk
    except httpx.HTTPError as exc:
        return Exchange(status, got, data, type(exc).__name__)
    return Exchange(status, got, data, None)


def anthropic_error(resp: httpx.Response) -> str:
    """The ``error.type`` of a sidecar-made error, after checking Anthropic's error shape."""
    doc = resp.json()
    assert doc["type"] == "error", doc
    assert doc["request_id"] == resp.headers["request-id"]
    assert isinstance(doc["error"]["message"], str) and doc["error"]["message"]
    error_type: str = doc["error"]["type"]
    return error_type


def exact_events(sidecar: RunningSidecar, count: int, *, settle_s: float = 0.2) -> list[CallEvent]:
    """Every stored event, after checking there are exactly ``count`` (none missing, none extra)."""
    events = sidecar.wait_events(count)
    assert len(events) == count, [(e.path, e.status, e.outcome) for e in events]
    # Then look for one too many: nothing signals "no more events", so give a stray one time to land.
    time.sleep(settle_s)
    events = sidecar.wait_events(count)
    assert len(events) == count, [(e.path, e.status, e.outcome) for e in events]
    return events


def assert_healthy(sidecar: RunningSidecar, session: str = "health-check") -> None:
    """``/healthz`` answers 200, and a normal call goes through and is recorded as ``ok``."""
    assert httpx.get(sidecar.admin_url + "/healthz", timeout=5).status_code == 200
    headers = {**HEADERS, "x-session-id": session}
    resp = httpx.post(sidecar.url + "/v1/messages", headers=headers, content=body(stream=False), timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.json()["type"] == "message"
    events = sidecar.wait_events(1, session_id=session)
    assert [(e.status, e.outcome) for e in events] == [(200, "ok")]


def metric(sidecar: RunningSidecar, name: str, **labels: str) -> float:
    text = httpx.get(sidecar.admin_url + "/metrics", timeout=5).text
    value = sample(text, name, **labels)
    return 0.0 if value is None else value


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def established_to(port: int) -> int:
    """TCP connections the server on 127.0.0.1:``port`` still holds open (Linux ``/proc/net/tcp``).

    A connection leaves ESTABLISHED on the server side as soon as the peer closes it, so this is what
    the upstream itself sees: a request the sidecar cancelled no longer counts.
    """
    count = 0
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local, state = fields[1], fields[3]
            if int(local.rsplit(":", 1)[1], 16) == port and state == "01":
                count += 1
    return count


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def captured_logs(name: str) -> Iterator[list[logging.LogRecord]]:
    """Records logged on logger ``name`` (attached to it directly: the ``sidecar`` hierarchy may not
    propagate to the root logger once logging has been configured)."""
    logger = logging.getLogger(name)
    handler = _ListHandler()
    logger.addHandler(handler)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)
