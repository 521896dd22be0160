"""SIGTERM with 100 streams in flight (SPEC R-PX-7), on ``claude-sidecar serve`` as a real process:
new connections are refused at once, every in-flight stream runs to ``message_stop``, every call is in
the store afterwards, and the process exits 0."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from sidecar.store.sqlite import SQLiteStore
from sidecar.testing.fake_upstream import FakeConfig, FakeUpstream
from tests.faults.support import HEADERS, body, free_port

STREAMS = 100
# About 2 s per stream: 0.1 s to the first event, then 18 more events 0.1 s apart.
SLOW = FakeConfig(first_token_delay_s=0.1, chunk_delay_s=0.1, deltas=14)


def _serve(tmp_path: Path, upstream: str, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "SIDECAR_UPSTREAM_URL": upstream,
        "SIDECAR_PORT": str(port),
        "SIDECAR_FLEET_PORT": "0",
        "SIDECAR_STORE": f"sqlite:///{tmp_path}/events.db",
    }
    # Logs go to files: 100 request lines would fill a pipe nobody reads during the test.
    with open(tmp_path / "stdout.log", "wb") as out, open(tmp_path / "stderr.log", "wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "sidecar.cli", "serve"], env=env, cwd=tmp_path, stdout=out, stderr=err
        )


async def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    async with httpx.AsyncClient(timeout=1) as client:
        for _ in range(300):
            assert proc.poll() is None, log.read_text()[-2000:]
            try:
                if (await client.get(url + "/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError("sidecar did not become ready")


async def _stream(
    client: httpx.AsyncClient, url: str, i: int, started: asyncio.Event
) -> tuple[int, bytes, float]:
    headers = {**HEADERS, "x-session-id": f"drain-{i}"}
    async with client.stream("POST", url + "/v1/messages", headers=headers, content=body(stream=True)) as r:
        data = b""
        async for chunk in r.aiter_raw():
            data += chunk
            started.set()  # the first event has arrived: this stream is in flight
    return r.status_code, data, time.monotonic()


async def _refused_at(port: int, timeout_s: float) -> float:
    """When a new connection to ``port`` is first refused (polling)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except ConnectionRefusedError:
            return time.monotonic()
        writer.close()
        await asyncio.sleep(0.01)
    raise AssertionError("new connections were still accepted after SIGTERM")


async def _drain_scenario(url: str, port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    await _wait_ready(url, proc, log)
    limits = httpx.Limits(max_connections=STREAMS * 2, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        started = [asyncio.Event() for _ in range(STREAMS)]
        tasks = [asyncio.ensure_future(_stream(client, url, i, started[i])) for i in range(STREAMS)]
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in started)), 15)
        assert not any(t.done() for t in tasks)
        proc.send_signal(signal.SIGTERM)
        refused = await _refused_at(port, timeout_s=5)
        results = await asyncio.wait_for(asyncio.gather(*tasks), 30)
    assert len(results) == STREAMS
    for status, data, _ in results:
        assert status == 200
        assert data.rstrip().endswith(b'data: {"type":"message_stop"}'), data[-200:]
    # The listener closed while every stream was still running.
    assert refused < min(done for _, _, done in results)


def test_sigterm_with_100_streams_in_flight(tmp_path: Path) -> None:
    with FakeUpstream(SLOW) as fake:
        port = free_port()
        proc = _serve(tmp_path, fake.url, port)
        try:
            asyncio.run(
                asyncio.wait_for(
                    _drain_scenario(f"http://127.0.0.1:{port}", port, proc, tmp_path / "stderr.log"), 45
                )
            )
            code = proc.wait(15)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
        assert len(fake.requests) == STREAMS
    assert code == 0, (tmp_path / "stderr.log").read_text()[-2000:]
    store = SQLiteStore.from_url(f"sqlite:///{tmp_path}/events.db")
    store.open()
    try:
        events = store.events()
    finally:
        store.close()
    assert len(events) == STREAMS
    assert sorted(e.session_id for e in events) == sorted(f"drain-{i}" for i in range(STREAMS))
    assert {(e.status, e.outcome, e.stop_reason) for e in events} == {(200, "ok", "end_turn")}
    assert all(e.usage.output_tokens > 0 and e.cost_usd for e in events)
