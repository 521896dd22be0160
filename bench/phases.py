"""One measurement (a scenario against a target): the load generator pinned, /proc read around it."""

from __future__ import annotations

import json
import math
import sys
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


@dataclass(frozen=True)
class Scenario:
    key: str
    label: str
    concurrency: int
    stream: bool
    ttfb_ms: int


@dataclass(frozen=True)
class Target:
    name: str  # direct | bare | sidecar
    base_url: str
    pid: int  # the process whose CPU and memory the phase reports


def scenarios() -> list[Scenario]:
    """The SPEC §12 grid; the 200-stream phase runs last (it sets the peak RSS)."""
    return [
        Scenario("json_c1", "JSON, 1 client, no delay", 1, False, 0),
        Scenario("json_c50", "JSON, 50 clients, no delay", 50, False, 0),
        Scenario("json_c200", "JSON, 200 clients, no delay", 200, False, 0),
        Scenario("json_c50_50ms", "JSON, 50 clients, 50 ms upstream", 50, False, 50),
        Scenario("stream_c1", "SSE, 1 client, 50 ms + 10 x 5 ms", 1, True, 50),
        Scenario("stream_c50", "SSE, 50 clients, 50 ms + 10 x 5 ms", 50, True, 50),
        Scenario("stream_c200", "SSE, 200 clients, 50 ms + 10 x 5 ms", 200, True, 50),
    ]


def _snap(pid: int) -> tuple[float, float]:
    """(CPU seconds of ``pid``, busy seconds of the proxy core) at one instant."""
    return cpu_seconds(pid), core_busy_seconds(PROXY_CORE)


class PhaseRunner:
    """Runs one load-generator process against one target and returns its result plus /proc readings."""

    def __init__(self, procs: Processes, mode: Mode, work_dir: Path) -> None:
        self.procs = procs
        self.mode = mode
        self.work_dir = work_dir

    def run(self, scenario: Scenario, target: Target) -> dict[str, object]:
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
        requests = result["requests"]
        assert isinstance(requests, int)
        return {
            "scenario": scenario.key,
            "target": target.name,
            **{k: v for k, v in asdict(scenario).items() if k != "key"},
            "loadgen": "wrk" if use_wrk else "asyncio",
            **result,
            "cpu_s": round(cpu_s, 3),
            "cpu_us_per_req": round(cpu_s / requests * 1e6, 1) if requests else math.nan,
            "rss_kb": mem.get("VmRSS"),
            "peak_rss_kb": mem.get("VmHWM"),
            "peak_rss_is_per_phase": hwm_reset,
            "other_cpu_on_proxy_core_s": round(other, 2),
        }

    def prime(self, target: Target) -> None:
        """Open 200 client connections and fill the proxy's upstream pool before anything is measured."""
        self.run(Scenario("prime", "prime", 200, False, 0), target)

    def _seconds(self, scenario: Scenario) -> float:
        return self.mode.stream_c1_seconds if scenario.key == "stream_c1" else self.mode.seconds

    def _loadgen(
        self, name: str, target: Target, scenario: Scenario
    ) -> tuple[dict[str, object], tuple[float, float]]:
        seconds = self._seconds(scenario)
        argv = [sys.executable, str(BENCH_DIR / "loadgen.py"), "--url", target.base_url + "/v1/messages"]
        argv += ["--concurrency", str(scenario.concurrency), "--duration", str(seconds)]
        argv += ["--warmup", str(self.mode.warmup), "--max-requests", str(self.mode.max_requests)]
        argv += ["--ttfb-ms", str(scenario.ttfb_ms)] + (["--stream"] if scenario.stream else [])
        child = self.procs.start(f"loadgen-{name}", pinned(LOADGEN_CORE, argv), stdout_pipe=True)
        pid = target.pid
        if child.readline(timeout_s=self.mode.warmup + 30) != "measuring":
            raise RuntimeError(f"unexpected output from the load generator; see {child.log_path}")
        before = _snap(pid)
        line = child.readline(timeout_s=seconds + 90)
        after = _snap(pid)
        self.procs.stop(child)
        result: dict[str, object] = json.loads(line)
        return result, (after[0] - before[0], after[1] - before[1])

    def _wrk(
        self, name: str, target: Target, scenario: Scenario
    ) -> tuple[dict[str, object], tuple[float, float]]:
        url = target.base_url + "/v1/messages"
        script = self.work_dir / f"post-{scenario.ttfb_ms}ms.lua"
        if not script.exists():
            script.write_text(wrk_driver.lua_script(scenario.ttfb_ms))
        seconds = max(1, round(self._seconds(scenario)))
        if self.mode.warmup >= 1:  # wrk runs whole seconds; shorter warm-ups are left to prime()
            warm = wrk_driver.command(url, str(script), scenario.concurrency, round(self.mode.warmup))
            self._run_wrk(f"wrk-warmup-{name}", warm, round(self.mode.warmup))
        pid = target.pid
        before = _snap(pid)
        argv = wrk_driver.command(url, str(script), scenario.concurrency, seconds)
        out = self._run_wrk(f"wrk-{name}", argv, seconds)
        after = _snap(pid)
        return wrk_driver.parse(out), (after[0] - before[0], after[1] - before[1])

    def _run_wrk(self, name: str, argv: list[str], seconds: int) -> str:
        child = self.procs.start(name, pinned(LOADGEN_CORE, argv), stdout_pipe=True)
        out, _ = child.popen.communicate(timeout=seconds + 60)
        self.procs.stop(child)
        return out.decode()
