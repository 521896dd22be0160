"""Child processes for the bench: start pinned, wait until they serve, read /proc counters, always stop.

Every child gets ``PR_SET_PDEATHSIG`` (SIGTERM), so it ends even if the bench itself is killed, and
``Processes`` stops the ones it started when its ``with`` block exits, error or not.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

LOADGEN_CORE = 0  # the load generator, the upstream and the bench script itself
PROXY_CORE = 1  # the proxy under test (bare forwarder or sidecar), alone on its core


def can_pin() -> bool:
    """True when ``taskset`` exists and there are at least two cores to split."""
    return shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2


BENCH_NICE = -10  # as root: other jobs on a shared machine yield the cores to the bench's processes


def pinned(core: int, argv: Sequence[str]) -> list[str]:
    """``argv`` prefixed with ``taskset -c core`` when pinning is possible, and raised in priority when
    running as root (taskset and nice exec, so the pid stays the program's own). All bench processes
    get the same priority, so only processes outside the bench are pushed back."""
    head = ["taskset", "-c", str(core)] if can_pin() else []
    if os.geteuid() == 0 and shutil.which("nice") is not None:
        head += ["nice", "-n", str(BENCH_NICE)]
    return [*head, *argv]


def _die_with_parent_hook() -> Callable[[], None]:
    """A pre-exec hook setting PR_SET_PDEATHSIG, so no child outlives a killed bench (libc resolved here)."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def hook() -> None:
        prctl(1, signal.SIGTERM)

    return hook


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all threads) from /proc/PID/stat, in seconds."""
    return cpu_seconds_of(Path(f"/proc/{pid}/stat"))


def core_busy_seconds(core: int) -> float:
    """Non-idle time of one core (user, nice, system, irq, softirq, steal) from /proc/stat, in seconds."""
    prefix = f"cpu{core} "
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(prefix):
            f = [int(x) for x in line.split()[1:9]]
            return (f[0] + f[1] + f[2] + f[5] + f[6] + f[7]) / os.sysconf("SC_CLK_TCK")
    return 0.0


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """utime + stime per thread (tid → seconds) from /proc/PID/task/*/stat."""
    out: dict[int, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError):
            out[int(task.name)] = cpu_seconds_of(task / "stat")
    return out


def cpu_seconds_of(stat_path: Path) -> float:
    stat = stat_path.read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_kb(pid: int) -> dict[str, int]:
    """VmHWM (peak RSS) and VmRSS in kB from /proc/PID/status."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            out[key] = int(rest.split()[0])
    return out


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (``clear_refs`` 5); False when the kernel refuses."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def wait_http_ok(url: str, timeout_s: float, alive: Callable[[], bool]) -> None:
    """Poll ``url`` until it answers 200; raise if ``alive()`` turns false or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"process serving {url} exited during start-up")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as resp:
            if resp.status == 200:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not become ready in {timeout_s:.0f} s")


@dataclass
class Child:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    _pending: bytes = b""

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, chars: int = 2000) -> str:
        """The end of the child's stderr log (for error messages)."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def readline(self, timeout_s: float) -> str:
        """The next stdout line (stripped); raises, naming the log file, on EOF or timeout."""
        assert self.popen.stdout is not None
        fd = self.popen.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._pending:
            left = deadline - time.monotonic()
            ready = select.select([fd], [], [], max(0.0, left))[0] if left > 0 else []
            data = os.read(fd, 65536) if ready else b""
            if not data:
                why = "timed out" if not ready else "exited"
                raise RuntimeError(f"{self.name} {why} before printing a line; see {self.log_path}")
            self._pending += data
        line, _, self._pending = self._pending.partition(b"\n")
        return line.decode().strip()


class Processes:
    """Starts children and stops all of them (SIGTERM, then SIGKILL) when the block exits."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.children: list[Child] = []
        self._logs: list[IO[bytes]] = []
        self._hook = _die_with_parent_hook()

    def start(
        self,
        name: str,
        argv: Sequence[str],
        stdout_pipe: bool = False,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Child:
        log_path = self.log_dir / f"{name}.log"
        log = log_path.open("wb")
        self._logs.append(log)
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout_pipe else log,
            stderr=log,
            env=env,
            cwd=cwd,
            preexec_fn=self._hook,
        )
        child = Child(name, popen, log_path)
        self.children.append(child)
        return child

    def stop(self, child: Child, timeout_s: float = 10.0) -> int | None:
        if child.alive():
            child.popen.send_signal(signal.SIGTERM)
            try:
                child.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                child.popen.kill()
                child.popen.wait(5)
        if child.popen.stdout is not None:
            child.popen.stdout.close()
        return child.popen.returncode

    def __enter__(self) -> Processes:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for child in reversed(self.children):
            with contextlib.suppress(Exception):
                self.stop(child)
        for log in self._logs:
            log.close()
