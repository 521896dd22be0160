"""Where people find the console: ``serve`` logs its URL at start; ``demo`` prints it first, and on a pipe
(CI, the README's command) still ends once its traffic is done (SPEC R-UI-1, R-RUN-2)."""

from __future__ import annotations

import logging
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from sidecar.server.inprocess import RunningSidecar
from sidecar.settings import Settings
from sidecar.testing.fake_upstream import FakeUpstream

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("own_admin_port", [False, True])
def test_serve_logs_the_console_url(
    fake: FakeUpstream, tmp_path: Path, caplog: pytest.LogCaptureFixture, own_admin_port: bool
) -> None:
    caplog.set_level(logging.INFO, logger="sidecar.server")
    settings = Settings(
        upstream_url=fake.url,
        store=f"sqlite:///{tmp_path}/e.db",
        port=0,
        admin_port=0 if own_admin_port else None,
    )
    with RunningSidecar(settings) as sidecar:
        (url,) = [r.fields["url"] for r in caplog.records if r.getMessage().startswith("console at")]
        assert url == f"{sidecar.admin_url}/ui/"
        assert httpx.get(url).status_code == 200


def test_demo_prints_the_console_first_and_ends_on_a_pipe(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "sidecar.cli", "demo", "--port", "0", "--duration", "1"],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    first = done.stdout.splitlines()[0]
    assert first.startswith("console:") and first.rstrip().endswith("/ui/")
    assert "still serving" not in done.stdout


def test_demo_on_a_terminal_keeps_serving_until_ctrl_c(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sidecar.cli", "demo", "--port", "0", "--duration", "1"],
        cwd=tmp_path,
        env=env,
        stdin=follower,
        stdout=follower,
        stderr=subprocess.DEVNULL,
    )
    os.close(follower)
    seen = b""
    try:
        deadline = time.monotonic() + 120
        while b"Ctrl+C to stop" not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 1.0)
            if ready:
                seen += os.read(leader, 65536)
        text = seen.decode()
        assert "Ctrl+C to stop" in text, text[-2000:]
        url = re.search(r"console at (\S+/ui/)", text)
        assert url is not None
        assert httpx.get(url.group(1)).status_code == 200  # still serving after the traffic
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
        os.close(leader)
