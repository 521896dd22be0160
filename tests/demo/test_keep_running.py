"""``claude-sidecar demo`` prints the console's URL first; on a terminal it keeps serving after its traffic
until Ctrl+C, and on a pipe (CI, the README's command) it still ends (SPEC R-UI-1, R-RUN-2)."""

from __future__ import annotations

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

ROOT = Path(__file__).resolve().parents[2]


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
