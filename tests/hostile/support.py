"""Helpers for the hostile tests: raw HTTP over a socket, and ``claude-sidecar serve`` as a process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

from tests.net import free_port

API_HEADERS = b"x-api-key: sk-ant-api03-hostile-tests\r\nanthropic-version: 2023-06-01\r\n"


def raw_request(port: int, data: bytes, timeout_s: float = 5.0) -> bytes:
    """Send ``data`` as is and read until the server closes (or goes quiet); a reset ends the read."""
    out = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        try:
            sock.sendall(data)
            while chunk := sock.recv(65536):
                out += chunk
        except (ConnectionResetError, BrokenPipeError, TimeoutError):
            pass
    return out


def status_of(response: bytes) -> int | None:
    """The status code of the first response in ``response``, or None when there is none."""
    line = response.split(b"\r\n", 1)[0]
    parts = line.split(b" ")
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        return None
    return int(parts[1])


def body_of(response: bytes) -> bytes:
    return response.partition(b"\r\n\r\n")[2]


def proc_status_mb(pid: int, key: str) -> float:
    """``VmRSS`` or ``VmHWM`` (peak RSS) of a process, in MB (10^6 bytes)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024 / 1e6
    raise KeyError(key)


def reset_peak_rss(pid: int) -> None:
    """Restart the kernel's peak-RSS counter (``VmHWM``) from the current RSS."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


class ServeProcess:
    """``python -m sidecar.cli serve`` on 127.0.0.1 with its own store; stderr is kept for inspection."""

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.tmp_path = tmp_path
        self.env = {
            **os.environ,
            "SIDECAR_HOST": "127.0.0.1",
            "SIDECAR_PORT": str(self.port),
            "SIDECAR_FLEET_PORT": "0",
            "SIDECAR_STORE": f"sqlite:///{tmp_path}/events.db",
            **env,
        }
        self.log_path = tmp_path / f"serve-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.stderr = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout_s: float = 20.0) -> ServeProcess:
        # A file, not a pipe: debug logging could fill a pipe nobody reads and block the server.
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "sidecar.cli", "serve"],
                env=self.env,
                cwd=self.tmp_path,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited early: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError("serve did not become ready")

    def stop(self) -> int:
        """SIGTERM, wait, and keep stdout + stderr in ``self.stderr``; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.stderr = self.log_path.read_text(errors="replace")
        return self.proc.returncode

    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
