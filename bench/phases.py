"""One measurement (a scenario against a target): the load generator pinned, /proc read around it."""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import wrk_driver
from procs import (
    LOADGEN_CORE,
    PROXY_CORE,
    Processes,
    core_busy_seconds,
    cpu_seconds,
    memory_kb,
    pinned,
    reset_peak_rss,
)

BENCH_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Mode:
    """How long each phase runs. ``use_wrk`` picks wrk for the non-streaming phases."""

    name: str
    seconds: float
    stream_c1_seconds: float  # one client at ~100 ms per stream needs longer for a usable p99
    warmup: float
    max_requests: int
    use_wrk: bool
    rounds: int = 1  # rounds of the scenarios judged against the bare forwarder's latency


@dataclass(frozen=True)
class Scenario:
    key: str
    label: str
    concurrency: int
    stream: bool
    ttfb_ms: int
    # Judged against the bare forwarder's latency in the same run: measured in interleaved rounds
    # (direct → bare → sidecar, again and again), each round's added latency computed within the round,
    # and the median round reported. One phase's p99 is too noisy a yardstick: bare's own p99 with the
    # 50 ms upstream moved between +3 and +8 ms from one 6-second phase to the next.
    repeat: bool = False


@dataclass(frozen=True)
class Target:
    """Where a phase sends its load. A slow peer (LiteLLM) gets longer phases, so that a queue of 200
    clients at ~100 req/s reaches a steady state, and is left to go idle after each phase."""

    name: str  # direct | bare | sidecar | litellm
    base_url: str
    pid: int  # the process whose CPU and memory the phase reports
    path: str = "/v1/messages"
    headers: tuple[tuple[str, str], ...] = ()  # overrides of the workload's headers (e.g. another key)
    min_seconds: float = 0.0  # lower bound of every phase's measured window
    min_warmup: float = 0.0
    settle: bool = False  # wait for the process to go idle after a warm-up and after each phase

    @property
    def url(self) -> str:
        return self.base_url + self.path


def scenarios() -> list[Scenario]:
    """The SPEC §12 grid; the 200-stream phase runs last (it sets the peak RSS)."""
    return [
        Scenario("json_c1", "JSON, 1 client, no delay", 1, False, 0, repeat=True),
        Scenario("json_c50", "JSON, 50 clients, no delay", 50, False, 0),
        Scenario("json_c200", "JSON, 200 clients, no delay", 200, False, 0),
        Scenario("json_c50_50ms", "JSON, 50 clients, 50 ms upstream", 50, False, 50, repeat=True),
        Scenario("stream_c1", "SSE, 1 client, 50 ms + 10 x 5 ms", 1, True, 50, repeat=True),
        Scenario("stream_c50", "SSE, 50 clients, 50 ms + 10 x 5 ms", 50, True, 50, repeat=True),
        Scenario("stream_c200", "SSE, 200 clients, 50 ms + 10 x 5 ms", 200, True, 50),
    ]


def _snap(pid: int) -> tuple[float, float]:
    """(CPU seconds of ``pid``, busy seconds of the proxy core) at one instant."""
    return cpu_seconds(pid), core_busy_seconds(PROXY_CORE)


def settle(pid: int, timeout_s: float = 20.0, step_s: float = 0.25, busy_share: float = 0.05) -> float:
    """Wait until ``pid`` uses less than ``busy_share`` of a core over ``step_s``; returns the wait.

    A proxy that is still working off abandoned requests (wrk closes its connections mid-request at
    the end of a run) would otherwise spend that CPU inside the next phase's window."""
    started = time.monotonic()
    before = cpu_seconds(pid)
    while time.monotonic() - started < timeout_s:
        time.sleep(step_s)
        now = cpu_seconds(pid)
        if now - before < busy_share * step_s:
            break
        before = now
    return round(time.monotonic() - started, 2)


class PhaseRunner:
    """Runs one load-generator process against one target and returns its result plus /proc readings."""

    def __init__(self, procs: Processes, mode: Mode, work_dir: Path) -> None:
        self.procs = procs
        self.mode = mode
        self.work_dir = work_dir

    def rounds(self, scenario: Scenario) -> int:
        return self.mode.rounds if scenario.repeat else 1

    def run(self, scenario: Scenario, target: Target, round_no: int = 1) -> dict[str, object]:
        hwm_reset = reset_peak_rss(target.pid)
        use_wrk = self.mode.use_wrk and not scenario.stream
        name = f"{scenario.key}-{target.name}"
        if use_wrk:
            result, (cpu_s, core_s) = self._wrk(name, target, scenario)
        else:
            result, (cpu_s, core_s) = self._loadgen(name, target, scenario)
        # Anything else that ran on the proxy core meanwhile (other jobs on the machine) skews the phase.
        other = max(0.0, core_s - (cpu_s if target.name != "direct" else 0.0))
        mem = memory_kb(target.pid)
        settled = settle(target.pid) if target.settle else 0.0
        requests = result["requests"]
        assert isinstance(requests, int)
        return {
            "scenario": scenario.key,
            "target": target.name,
            "round": round_no,
            **{k: v for k, v in asdict(scenario).items() if k not in ("key", "repeat")},
            "loadgen": "wrk" if use_wrk else "asyncio",
            **result,
            "cpu_s": round(cpu_s, 3),
            "cpu_us_per_req": round(cpu_s / requests * 1e6, 1) if requests else math.nan,
            "rss_kb": mem.get("VmRSS"),
            "peak_rss_kb": mem.get("VmHWM"),
            "peak_rss_is_per_phase": hwm_reset,
            "other_cpu_on_proxy_core_s": round(other, 2),
            "settle_s": settled,
        }

    def prime(self, target: Target) -> None:
        """Open 200 client connections and fill the proxy's upstream pool before anything is measured."""
        self.run(Scenario("prime", "prime", 200, False, 0), target)

    def _seconds(self, scenario: Scenario, target: Target) -> float:
        base = self.mode.stream_c1_seconds if scenario.key == "stream_c1" else self.mode.seconds
        return max(base, target.min_seconds)

    def _warmup(self, target: Target) -> float:
        return max(self.mode.warmup, target.min_warmup)

    def _loadgen(
        self, name: str, target: Target, scenario: Scenario
    ) -> tuple[dict[str, object], tuple[float, float]]:
        seconds, warmup = self._seconds(scenario, target), self._warmup(target)
        argv = [sys.executable, str(BENCH_DIR / "loadgen.py"), "--url", target.url]
        argv += ["--concurrency", str(scenario.concurrency), "--duration", str(seconds)]
        argv += ["--warmup", str(warmup), "--max-requests", str(self.mode.max_requests)]
        argv += ["--ttfb-ms", str(scenario.ttfb_ms)] + (["--stream"] if scenario.stream else [])
        for key, value in target.headers:
            argv += ["--header", f"{key}:{value}"]
        child = self.procs.start(f"loadgen-{name}", pinned(LOADGEN_CORE, argv), stdout_pipe=True)
        pid = target.pid
        try:  # stopped even when it hangs: a stray load generator would skew every later phase
            if child.readline(timeout_s=warmup + 30) != "measuring":
                raise RuntimeError(f"unexpected output from the load generator; see {child.log_path}")
            before = _snap(pid)
            line = child.readline(timeout_s=seconds + 90)  # in-flight requests time out after 30 s
            after = _snap(pid)
        finally:
            self.procs.stop(child)
        result: dict[str, object] = json.loads(line)
        return result, (after[0] - before[0], after[1] - before[1])

    def _wrk(
        self, name: str, target: Target, scenario: Scenario
    ) -> tuple[dict[str, object], tuple[float, float]]:
        url = target.url
        script = self.work_dir / f"post-{target.name}-{scenario.ttfb_ms}ms-c{scenario.concurrency}.lua"
        if not script.exists():
            script.write_text(
                wrk_driver.lua_script(scenario.ttfb_ms, dict(target.headers), scenario.concurrency)
            )
        seconds = max(1, round(self._seconds(scenario, target)))
        warmup = round(self._warmup(target))
        if warmup >= 1:  # wrk runs whole seconds; shorter warm-ups are left to prime()
            warm = wrk_driver.command(url, str(script), scenario.concurrency, warmup)
            self._run_wrk(f"wrk-warmup-{name}", warm, warmup)
            if target.settle:
                settle(target.pid)
        pid = target.pid
        before = _snap(pid)
        argv = wrk_driver.command(url, str(script), scenario.concurrency, seconds)
        out = self._run_wrk(f"wrk-{name}", argv, seconds)
        after = _snap(pid)
        return wrk_driver.parse(out), (after[0] - before[0], after[1] - before[1])

    def _run_wrk(self, name: str, argv: list[str], seconds: int) -> str:
        child = self.procs.start(name, pinned(LOADGEN_CORE, argv), stdout_pipe=True)
        try:  # wrk's own --timeout (30 s) ends stuck requests well before this one
            out, _ = child.popen.communicate(timeout=seconds + 60)
        finally:
            self.procs.stop(child)
        return out.decode()
