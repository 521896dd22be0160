"""Reads py-spy ``record --threads --format raw`` output and ranks where the time went.

py-spy's own idle detection is unreliable in this VM (threads parked on a lock show up as active), so
samples are classified here: a sample whose innermost frame is a wait — a Python-level one (an idle
executor worker, ``Condition.wait``, ``Queue.get``, the recorder yielding the core…) or, with
``--native``, a libc one (``epoll_*``, ``pthread_cond_*``, or an unsymbolised libc address, which in
these stacks is the futex behind a lock or the GIL) — counts as *blocked*; the rest are *running*. For
running samples, self time goes to the innermost Python frame (time in C called from Python counts for
the calling frame; ``Runner.run`` is uvloop's C loop: I/O callbacks, scheduling, and polling), and files
are grouped by top-level package so the sidecar's own code stands apart::

    python bench/profile_summary.py bench/results/profile-sidecar.txt
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")
_THREAD = re.compile(r"^thread \((?P<tid>0x[0-9a-f]+|\d+)\): (?P<name>.*)$")
_WAITS = frozenset(
    {
        "epoll_wait",
        "epoll_pwait",
        "pthread_cond_wait",
        "pthread_cond_timedwait",
        "futex",
        "sem_wait",
        "sem_timedwait",
        "sem_clockwait",
        "select",
        "poll",
        "__GI___poll",
        "nanosleep",
        "clock_nanosleep",
    }
)


_PY_WAITS = frozenset(
    {
        "_worker (concurrent/futures/thread.py)",
        "Condition.wait (threading.py)",
        "Event.wait (threading.py)",
        "Queue.get (queue.py)",
        "BaseSelector.select (selectors.py)",
        "EpollSelector.select (selectors.py)",
        # The recorder handing the core to the event loop (sched_yield): runnable, not running, while
        # the loop is busy; its CPU is in the thread table's /proc column.
        "yield_cpu (sidecar/infra/sched.py)",
    }
)


@dataclass
class Profile:
    samples: int = 0
    by_thread: Counter[str] = field(default_factory=Counter)
    blocked_by_thread: Counter[str] = field(default_factory=Counter)
    self_by_func: Counter[str] = field(default_factory=Counter)
    self_by_package: Counter[str] = field(default_factory=Counter)
    inclusive_by_func: Counter[str] = field(default_factory=Counter)
    main_thread_self: Counter[str] = field(default_factory=Counter)
    thread_ids: dict[str, set[int]] = field(default_factory=dict)

    @property
    def running(self) -> int:
        return self.samples - sum(self.blocked_by_thread.values())


def thread_group(name: str) -> str:
    """Executor workers are numbered (``uvloop_3``, ``ThreadPoolExecutor-0_1``); pool them."""
    if re.match(r"^(uvloop_\d+|ThreadPoolExecutor-\d+_\d+|asyncio_\d+)$", name):
        return "default executor (run_in_executor / to_thread)"
    return name


def frame_parts(frame: str) -> tuple[str, str, bool]:
    """(``function (file)`` without line, top-level package, is-a-Python-frame) for one frame."""
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip(), "native", False
    file = match["file"]
    if not (file.endswith(".py") or file.startswith("<")):
        return f"{match['func']} ({file})", "native", False
    package = file.split("/", 1)[0].removesuffix(".py") if "/" in file else file.removesuffix(".py")
    return f"{match['func']} ({file})", package, True


def is_wait(leaf: str) -> bool:
    """True for a frame that parks its thread: a libc wait, or a known Python-level wait."""
    name = leaf.split(" (", 1)[0]
    return name.startswith("0x") or name in _WAITS or frame_parts(leaf)[0] in _PY_WAITS


def _add(prof: Profile, frames: list[str], count: int) -> None:
    thread = "process"
    if frames and (m := _THREAD.match(frames[0])):
        thread = thread_group(m["name"])
        tid = int(m["tid"], 16) if m["tid"].startswith("0x") else int(m["tid"])
        prof.thread_ids.setdefault(thread, set()).add(tid)
        frames = frames[1:]
    prof.samples += count
    prof.by_thread[thread] += count
    if not frames or is_wait(frames[-1]):
        prof.blocked_by_thread[thread] += count
        return
    parts = [frame_parts(f) for f in frames]
    python = [(key, pkg) for key, pkg, is_py in parts if is_py]
    leaf, package = python[-1] if python else (parts[-1][0], "native")
    prof.self_by_func[leaf] += count
    prof.self_by_package[package] += count
    if thread in ("MainThread", "process"):
        prof.main_thread_self[leaf] += count
    for key in {key for key, _ in python}:
        prof.inclusive_by_func[key] += count


def parse(text: str) -> Profile:
    """Aggregate py-spy raw lines ``[thread;]frame;...;leaf COUNT``."""
    prof = Profile()
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if stack and count_text.isdigit():
            _add(prof, stack.split(";"), int(count_text))
    return prof


def _pct(n: float, total: float) -> str:
    return f"{100.0 * n / total:.1f} %" if total else "n/a"


def _table(header: str, rows: list[tuple[str, int]], total: int, code: bool = False) -> list[str]:
    out = ["", f"| {header} | share of running samples |", "|---|---|"]
    return out + [f"| {f'`{k}`' if code else k} | {_pct(n, total)} |" for k, n in rows]


def markdown(prof: Profile, thread_cpu: dict[str, float] | None = None, top: int = 20) -> str:
    """Threads (samples and, when given, measured CPU seconds), then running time by package/function."""
    run = prof.running
    out = [
        "## py-spy profile of the sidecar (50 clients, no delay)",
        "",
        f"{prof.samples:,} samples, {run:,} running, the rest parked (idle executor workers, waits).",
        "",
        "| thread | samples | blocked | CPU s (from /proc) |",
        "|---|---|---|---|",
    ]
    for thread, n in prof.by_thread.most_common():
        cpu = f"{thread_cpu[thread]:.2f}" if thread_cpu and thread in thread_cpu else "n/a"
        out.append(f"| {thread} | {n:,} | {_pct(prof.blocked_by_thread[thread], n)} | {cpu} |")
    out += _table("package (self time)", prof.self_by_package.most_common(12), run)
    out += _table("function (self time, all threads)", prof.self_by_func.most_common(top), run, code=True)
    out += _table("event-loop thread function (self time)", prof.main_thread_self.most_common(top), run, True)
    own_self = [(k, n) for k, n in prof.self_by_func.most_common() if "(sidecar/" in k]
    out += _table("sidecar function (self time)", own_self[:top], run, code=True)
    entry = ("(sidecar/cli.py)", "(sidecar/server/listeners.py)")  # start-up frames under everything
    own = [
        (k, n) for k, n in prof.inclusive_by_func.most_common() if "(sidecar/" in k and not k.endswith(entry)
    ]
    out += _table("sidecar function (inclusive time)", own[:top], run, code=True)
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python bench/profile_summary.py RAW_PROFILE.txt", file=sys.stderr)
        return 2
    print(markdown(parse(Path(argv[0]).read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
