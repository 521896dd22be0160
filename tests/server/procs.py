"""``claude-sidecar`` as a real child process, its output in files (readable while it runs)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx


class Proc:
    """One ``python -m sidecar.cli ARGS`` run in ``workdir``, with only the ``SIDECAR_*`` variables given
    (the caller's own are dropped, so a developer's environment cannot change the outcome)."""

    def __init__(self, workdir: Path, *args: str, **env: str) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        base = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_")}
        self.out_path, self.err_path = workdir / "stdout.txt", workdir / "stderr.txt"
        with self.out_path.open("w") as out, self.err_path.open("w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "sidecar.cli", *args],
                env={**base, "PYTHONUNBUFFERED": "1", **env},
                cwd=workdir,
                stdout=out,
                stderr=err,
                text=True,
            )

    @property
    def stdout(self) -> str:
        return self.out_path.read_text()

    @property
    def stderr(self) -> str:
        return self.err_path.read_text()

    def wait_output(self, needle: str, timeout_s: float = 30.0) -> None:
        """Until ``needle`` shows in stdout or stderr; fails if the process ends first."""
        deadline = time.monotonic() + timeout_s
        while needle not in self.stdout and needle not in self.stderr:
            assert self.proc.poll() is None, f"exited {self.proc.returncode}:\n{self.stdout}\n{self.stderr}"
            assert time.monotonic() < deadline, f"{needle!r} not seen:\n{self.stdout}\n{self.stderr}"
            time.sleep(0.05)

    def wait_ready(self, port: int, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            assert self.proc.poll() is None, f"exited {self.proc.returncode}:\n{self.stderr}"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"not ready:\n{self.stderr}"
            time.sleep(0.05)

    def interrupt(self, timeout_s: float = 60.0) -> int:
        """Ctrl+C (SIGINT) and the exit code."""
        self.proc.send_signal(signal.SIGINT)
        return self.wait(timeout_s)

    def wait(self, timeout_s: float = 60.0) -> int:
        try:
            return self.proc.wait(timeout_s)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)

    def json_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stderr.splitlines() if line.startswith("{")]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.wait(30)


def held_port() -> socket.socket:
    """A listening socket on a free 127.0.0.1 port: that port is taken until the socket is closed."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind: a real conflict
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def free_pair() -> int:
    """A free port ``p`` whose neighbour ``p + 1`` is free too (serve's default fleet port)."""
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = int(a.getsockname()[1])
            if port >= 65535:
                continue
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return port
    raise AssertionError("no two neighbouring free ports")
