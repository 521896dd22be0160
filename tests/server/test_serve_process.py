"""``claude-sidecar serve`` as a real process: clear start-up errors, and a graceful SIGTERM drain."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from sidecar.store.sqlite import SQLiteStore
from sidecar.testing.fake_upstream import FakeConfig, FakeUpstream
from tests.conftest import API_KEY
from tests.net import free_port


def _serve(tmp_path: Path, upstream: str, port: int, **env: str) -> subprocess.Popen[str]:
    full_env = {
        **os.environ,
        "SIDECAR_UPSTREAM_URL": upstream,
        "SIDECAR_PORT": str(port),
        "SIDECAR_FLEET_PORT": "0",  # not the default port + 1, which something else may hold
        "SIDECAR_STORE": f"sqlite:///{tmp_path}/events.db",
        **env,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "sidecar.cli", "serve"],
        env=full_env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_ready(port: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError("sidecar did not become ready")


def test_invalid_config_fails_at_start_with_one_line(tmp_path: Path) -> None:
    proc = _serve(tmp_path, "http://127.0.0.1:1", free_port(), SIDECAR_PROMPT_CACHE="sometimes")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1
    assert "SIDECAR_PROMPT_CACHE" in lines[0]


def test_admin_beyond_loopback_needs_a_token(tmp_path: Path) -> None:
    proc = _serve(tmp_path, "http://127.0.0.1:1", free_port(), SIDECAR_HOST="0.0.0.0")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "SIDECAR_ADMIN_TOKEN" in err


def test_sigterm_drains_in_flight_stream_flushes_and_exits_0(tmp_path: Path) -> None:
    config = FakeConfig(first_token_delay_s=0.1, chunk_delay_s=0.1, deltas=15)  # ≈1.7 s stream
    with FakeUpstream(config) as fake:
        port = free_port()
        proc = _serve(tmp_path, fake.url, port)
        try:
            _wait_ready(port, proc)
            result: dict[str, object] = {}
            in_flight = threading.Event()

            def stream() -> None:
                body = {
                    "model": "claude-sonnet-4-5",
                    "max_tokens": 50,
                    "stream": True,
                    "messages": [{"role": "user", "content": "long story"}],
                }
                headers = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01", "x-session-id": "drain"}
                with httpx.stream(
                    "POST", f"http://127.0.0.1:{port}/v1/messages", json=body, headers=headers, timeout=20
                ) as resp:
                    chunks = []
                    for chunk in resp.iter_raw():
                        chunks.append(chunk)
                        in_flight.set()  # the first event arrived: about 1.6 s of stream to go
                    result["data"] = b"".join(chunks)

            client = threading.Thread(target=stream)
            client.start()
            assert in_flight.wait(10)
            proc.send_signal(signal.SIGTERM)
            client.join(20)
            code = proc.wait(20)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert code == 0
    data = result["data"]
    assert isinstance(data, bytes) and b"message_stop" in data  # the stream finished despite SIGTERM
    store = SQLiteStore.from_url(f"sqlite:///{tmp_path}/events.db")
    store.open()
    events = store.events(session_id="drain")
    store.close()
    assert len(events) == 1 and events[0].outcome == "ok" and events[0].usage.output_tokens > 0
    log_lines = [json.loads(line) for line in proc.stderr.read().splitlines() if line.startswith("{")]  # type: ignore[union-attr]
    assert any(line.get("event_id") == events[0].event_id for line in log_lines)
    assert not any(API_KEY in json.dumps(line) for line in log_lines)
