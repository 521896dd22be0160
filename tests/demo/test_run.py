"""``claude-sidecar demo`` as a real process: its own free ports, Ctrl+C without a traceback, a temporary
directory that goes away, and ``--duration`` that bounds the whole run."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.server.procs import Proc, held_port


def _demo(tmp_path: Path, *args: str) -> Proc:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    return Proc(tmp_path / "run", "demo", *args, TMPDIR=str(tmp))


def _clean_exit(proc: Proc, code: int) -> None:
    assert code in (0, 130, -2), proc.stderr  # -2: ended by SIGINT itself, what a shell shows as 130
    assert "Traceback" not in proc.stderr and "KeyboardInterrupt" not in proc.stderr, proc.stderr


@contextmanager
def port_8788_taken() -> Iterator[None]:
    """Hold 127.0.0.1:8788, unless something else already does (then it is taken all the same)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", 8788))
        sock.listen()
    except OSError:
        pass
    try:
        yield
    finally:
        sock.close()


def test_ctrl_c_during_traffic_exits_cleanly_and_removes_the_temporary_directory(tmp_path: Path) -> None:
    proc = _demo(tmp_path, "--duration", "60")
    proc.wait_output("driving synthetic agent sessions")
    store = re.search(r"events store:\s+(\S+)", proc.stdout)
    assert store is not None and Path(store.group(1)).parent.is_dir()
    _clean_exit(proc, proc.interrupt())
    assert not Path(store.group(1)).parent.exists()
    assert list((tmp_path / "tmp").iterdir()) == []


def test_ctrl_c_during_start_up_exits_cleanly(tmp_path: Path) -> None:
    proc = _demo(tmp_path, "--duration", "60")
    time.sleep(0.3)  # imports and start-up are under way
    _clean_exit(proc, proc.interrupt())
    assert list((tmp_path / "tmp").iterdir()) == []


def test_duration_bounds_the_whole_demo_and_8788_taken_is_no_problem(tmp_path: Path) -> None:
    with port_8788_taken():
        proc = _demo(tmp_path, "--duration", "1")
        proc.wait_output("driving synthetic agent sessions")
        started = time.monotonic()
        proc.wait_output("agent sessions done")
        elapsed = time.monotonic() - started
        code = proc.wait(60)
    assert code == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    proxy = re.search(r"sidecar proxy:\s+http://127\.0\.0\.1:(\d+)", proc.stdout)
    assert proxy is not None and proxy.group(1) != "8788"  # a free port instead of a traceback
    # A 1 s demo used to run ~10 s (the fleet's freeze had an 8 s floor); generous for a loaded machine.
    assert elapsed < 6.0, elapsed
    assert "Top sessions by cost" in proc.stdout
    # The eval loop pays once: later rounds are answered from the response cache.
    assert "eval loop: 3 rounds of 4 prompts, 12 calls: 4 went to the model, 8 were answered" in proc.stdout
    assert "response cache: 8 calls answered without a model call" in proc.stdout
    # The session with the time in its system prompt: the sidecar's diagnosis beside the API's.
    assert "(digit run, timestamp-like)" in proc.stdout and "the API says: system_changed" in proc.stdout
    assert "Cache misses by reason" in proc.stdout
    assert "demo data removed" in proc.stdout and list((tmp_path / "tmp").iterdir()) == []


def test_a_taken_explicit_port_is_one_line(tmp_path: Path) -> None:
    with held_port() as taken:
        port = int(taken.getsockname()[1])
        proc = _demo(tmp_path, "--port", str(port), "--duration", "1")
        code = proc.wait(60)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert code != 0 and len(lines) == 1, proc.stderr
    assert "--port" in lines[0] and f"127.0.0.1:{port}" in lines[0] and "in use" in lines[0]


def test_data_dir_is_kept(tmp_path: Path) -> None:
    data = tmp_path / "kept"
    proc = _demo(tmp_path, "--duration", "1", "--data-dir", str(data))
    assert proc.wait(60) == 0, proc.stderr
    assert (data / "events.db").is_file() and f"demo data kept in {data}" in proc.stdout
