"""Dependency faults (SPEC R-PX-3, R-CC-3, R-TM-3, R-ST-1): the event store locked by another process,
Redis killed or frozen under budgets, and an OTLP collector that is down or never answers.

Calls never fail because of these (except Redis in fail mode ``closed``, which answers a quick
retryable 503 on purpose); each failure is counted and logged; every call is still accounted for.
"""

from __future__ import annotations

import logging
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

import sidecar.infra.sqlite as sqlite_setup
from sidecar.server.inprocess import RunningSidecar
from sidecar.settings import Settings
from sidecar.testing.fake_upstream import FakeUpstream
from tests.faults.support import (
    HEADERS,
    MODEL,
    anthropic_error,
    assert_healthy,
    body,
    captured_logs,
    exact_events,
    free_port,
    metric,
    wait_until,
)
from tests.redis_server import RedisServer

MakeSidecar = Callable[..., RunningSidecar]

# Another process holding SQLite's write lock (a backup, a `sqlite3` shell left inside a transaction).
_LOCK_HOLDER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()
"""


def _post(url: str, session: str, stream: bool, **extra: str) -> httpx.Response:
    headers = {**HEADERS, "x-session-id": session, **extra}
    return httpx.post(url + "/v1/messages", headers=headers, content=body(stream=stream), timeout=10)


def test_store_locked_by_another_process(
    fake: FakeUpstream, make_sidecar: MakeSidecar, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The store waits out a lock for 5 s before failing; 0.1 s keeps the test short (same failure).
    monkeypatch.setattr(sqlite_setup, "BUSY_TIMEOUT_MS", 100)
    sidecar = make_sidecar(fake.url)
    holder = subprocess.Popen(
        [sys.executable, "-c", _LOCK_HOLDER, str(sidecar.sidecar.store.path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with captured_logs("sidecar.telemetry.recorder") as logs:
            n = 6
            for i in range(n):
                started = time.monotonic()
                resp = _post(sidecar.url, f"locked-{i}", stream=i % 2 == 1)
                assert resp.status_code == 200
                assert (b"event: message_stop" in resp.content) is (i % 2 == 1)
                assert time.monotonic() - started < 1.0  # calls never wait on the store
            assert wait_until(
                lambda: metric(sidecar, "sidecar_events_total", sink="sqlite", outcome="error") == n
            )
            assert metric(sidecar, "sidecar_sink_errors_total", sink="sqlite") >= 1
            assert httpx.get(sidecar.url + "/healthz").status_code == 200
            # The other sinks saw every call.
            assert metric(sidecar, "sidecar_events_total", sink="metrics", outcome="ok") == n
            for stream in ("true", "false"):
                labels = {"model": MODEL, "app": "default", "status_class": "2xx", "stream": stream}
                assert metric(sidecar, "sidecar_requests_total", **labels) == n / 2
            assert sidecar.wait_events(1, timeout_s=0.2) == []  # the store really has none of them
            failures = [r for r in logs if r.getMessage().startswith("sink write failed")]
            assert failures and all(getattr(r, "fields", {}).get("sink") == "sqlite" for r in failures)
            cause = failures[0].exc_info[1] if failures[0].exc_info else None
            assert "database is locked" in str(cause)
            holder.stdin.close()  # type: ignore[union-attr]  # the other process lets go
            holder.wait(5)
            assert_healthy(sidecar)  # stored again
            assert any(r.getMessage() == "sink recovered" for r in logs)
    finally:
        holder.kill()
        holder.wait(5)
    assert metric(sidecar, "sidecar_events_total", sink="sqlite", outcome="ok") == 1
    assert metric(sidecar, "sidecar_events_total", sink="metrics", outcome="ok") == n + 1


def _break(server: RedisServer, fault: str) -> None:
    if fault == "killed":
        server.stop()  # SIGKILL
    else:
        assert server.proc is not None
        server.proc.send_signal(signal.SIGSTOP)  # up and connected, but never answers


def _repair(server: RedisServer, fault: str) -> None:
    if fault == "killed":
        server.start()  # same port, empty data
    else:
        assert server.proc is not None
        server.proc.send_signal(signal.SIGCONT)


@pytest.mark.parametrize("fault", ["killed", "frozen"])
@pytest.mark.parametrize("mode", ["open", "closed"])
def test_redis_down_under_budgets(
    fake: FakeUpstream, make_sidecar: MakeSidecar, redis_server: RedisServer, mode: str, fault: str
) -> None:
    budgets = {"defaults": {"session_max_usd": 1.0}, "redis_fail_mode": mode}
    sidecar = make_sidecar(fake.url, redis_url=redis_server.url, policies={"budgets": budgets})
    assert _post(sidecar.url, "before", stream=False).status_code == 200  # counters up and in use
    _break(redis_server, fault)
    n = 4
    for i in range(n):
        started = time.monotonic()
        resp = _post(sidecar.url, f"down-{i}", stream=i % 2 == 1)
        # Bounded by the counters' own timeout (2 x 0.25 s), never by the dead server.
        assert time.monotonic() - started < 1.5
        if mode == "open":
            assert resp.status_code == 200
        else:
            assert resp.status_code == 503 and anthropic_error(resp) == "api_error"
            assert resp.headers["x-should-retry"] == "true"
    kind = "redis_unavailable" if mode == "open" else "redis_refused"
    assert metric(sidecar, "sidecar_budget_backend_errors_total", outcome=kind) == n
    assert httpx.get(sidecar.url + "/healthz").status_code == 200
    _repair(redis_server, fault)
    # Back: after the short back-off calls are counted again (closed mode refuses until then).
    after: list[int] = []

    def call_again() -> bool:
        after.append(_post(sidecar.url, "after", stream=False).status_code)
        return after[-1] == 200

    assert wait_until(call_again, interval=0.1)
    events = exact_events(sidecar, 1 + n + len(after))
    down = sorted((e for e in events if e.session_id.startswith("down-")), key=lambda e: e.session_id)
    expected = (200, "ok", None) if mode == "open" else (503, "refused", "api_error")
    assert [(e.status, e.outcome, e.error_type) for e in down] == [expected] * n
    assert [e.stream for e in down] == [False, True] * (n // 2)
    reached = [r for r in fake.requests if (r.header("x-session-id") or "").startswith("down-")]
    assert len(reached) == (n if mode == "open" else 0)  # fail closed: refused before the upstream
    assert sorted(e.status for e in events if e.session_id == "after") == sorted(after)


@pytest.fixture(params=["closed-port", "silent"])
def dead_collector(request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of an OTLP collector that refuses connections, or accepts them and never answers."""
    if request.param == "closed-port":
        yield f"http://127.0.0.1:{free_port()}/v1/traces"
        return
    with socket.create_server(("127.0.0.1", 0), backlog=64) as sock:  # connects; never read
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1/traces"


def _export_failed(record: logging.LogRecord) -> bool:
    return record.name.startswith("opentelemetry.exporter") and record.levelno >= logging.ERROR


def _timed(client: httpx.Client, url: str, i: int) -> float:
    started = time.perf_counter()
    resp = client.post(url + "/v1/messages", headers=HEADERS, content=body(stream=i % 2 == 1))
    resp.raise_for_status()
    return time.perf_counter() - started


def test_unreachable_otlp_collector_changes_nothing_for_calls(
    fake: FakeUpstream, tmp_path: Path, dead_collector: str
) -> None:
    exporter = OTLPSpanExporter(endpoint=dead_collector, timeout=1)
    baseline = RunningSidecar(Settings(upstream_url=fake.url, store=f"sqlite:///{tmp_path}/a.db", port=0))
    traced = RunningSidecar(
        Settings(upstream_url=fake.url, store=f"sqlite:///{tmp_path}/b.db", port=0), span_exporter=exporter
    )
    with baseline.start(), traced.start():
        plain: list[float] = []
        with_traces: list[float] = []
        with (
            captured_logs("opentelemetry") as logs,
            httpx.Client(timeout=10) as c1,
            httpx.Client(timeout=10) as c2,
        ):
            deadline = time.monotonic() + 10
            # Keep calling (interleaved, so both see the same machine) until an export has failed.
            while len(plain) < 20 or not any(_export_failed(r) for r in logs):
                assert time.monotonic() < deadline, "no export failure was logged"
                plain.append(_timed(c1, baseline.url, len(plain)))
                with_traces.append(_timed(c2, traced.url, len(with_traces)))
                time.sleep(0.02)
        n = len(with_traces)
        assert statistics.median(with_traces) < statistics.median(plain) + 0.03
        assert max(with_traces) < 0.9  # the exporter's 1 s timeout never shows up on a call (loaded CI)
        events = exact_events(traced, n)
        assert {(e.status, e.outcome) for e in events} == {(200, "ok")}
        assert all(e.trace_id and e.span_id for e in events)
        assert metric(traced, "sidecar_events_total", sink="tracing", outcome="ok") == n
        assert_healthy(traced)
        started = time.monotonic()
        traced.stop()  # the final export also fails: shutdown stays bounded
        assert time.monotonic() - started < 5
