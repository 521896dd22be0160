"""SIGHUP on a real ``serve``: checks and notifiers from the edited YAML take effect, all or nothing."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.net import free_port
from tests.server.procs import Proc


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    bodies: list[dict[str, Any]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", bodies
    server.shutdown()
    server.server_close()


def _checks(port: int) -> dict[str, dict[str, Any]]:
    view = httpx.get(f"http://127.0.0.1:{port}/sidecar/v1/alerts", timeout=5).json()
    return {c["check"]: c for c in view["checks"]}


def _until(predicate: Any, what: str, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_sighup_reloads_checks_and_notifiers(
    tmp_path: Path, webhook: tuple[str, list[dict[str, Any]]]
) -> None:
    url, bodies = webhook
    config = tmp_path / "sidecar.yaml"
    config.write_text("checks:\n  - {name: old-job, period: 1h}\n")
    port = free_port()
    proc = Proc(
        tmp_path / "run",
        "serve",
        "--config",
        str(config),
        "--log-format",
        "json",
        SIDECAR_PORT=str(port),
        SIDECAR_FLEET_PORT="0",
        SIDECAR_UPSTREAM_URL="http://127.0.0.1:1",
    )
    try:
        proc.wait_ready(port)
        assert set(_checks(port)) == {"old-job"}
        # An invalid file: nothing changes, the previous configuration stays.
        config.write_text(
            "checks:\n  - {name: nightly, period: 1h, grace: 0s}\n"
            "budgets: {defaults: {session_max_usd: -1}}\n"
        )
        proc.proc.send_signal(signal.SIGHUP)
        proc.wait_output("reload failed")
        assert set(_checks(port)) == {"old-job"}
        config.write_text(
            "checks:\n  - {name: nightly, period: 1h, grace: 0s}\n"
            f"notify:\n  webhooks: [{{url: '{url}', format: json}}]\n"
        )
        proc.proc.send_signal(signal.SIGHUP)
        _until(lambda: set(_checks(port)) == {"nightly"}, "the new check never appeared")
        assert _checks(port)["nightly"]["period_s"] == 3600.0 and not _checks(port)["nightly"]["dynamic"]
        failed = httpx.post(f"http://127.0.0.1:{port}/sidecar/v1/checkins/nightly/fail", timeout=5)
        assert failed.status_code == 200
        _until(lambda: [b.get("check") for b in bodies] == ["nightly"], "the new notifier heard nothing")
        assert bodies[0]["event"] == "firing"
    finally:
        proc.stop()
    assert proc.proc.returncode == 0
    messages = [line["message"] for line in proc.json_lines()]
    assert "checks and notifiers reloaded" in messages and "configuration reloaded" in messages
