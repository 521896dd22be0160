"""Measure the sidecar against direct calls, a bare forwarder and LiteLLM, back to back (SPEC §12).

    python bench/run.py               # full run, ~8 minutes on 2 cores (+1 min to install LiteLLM once)
    python bench/run.py --quick       # ~1.5 min, rough numbers
    python bench/run.py --no-litellm  # without the LiteLLM peer (~6 min; --quick ~30 s)
    python bench/run.py --profile     # also py-spy the sidecar under 50 clients (needs py-spy)

Installs LiteLLM's proxy into its own cached venv (``litellm_peer.py``), starts the lean upstream
(core 0), the bare forwarder, the sidecar and LiteLLM (all core 1, measured one at a time), then for
each scenario runs direct → bare → sidecar → litellm with a pinned load generator (core 0). If LiteLLM
cannot be installed, started or measured, the run goes on without it and the report says why. Writes
``latest.md`` and ``latest.json`` to ``--out`` (default ``bench/results``) and prints the Markdown.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import litellm_peer
import profile_summary
import report
import wrk_driver
from phases import BENCH_DIR, Mode, PhaseRunner, Scenario, Target, scenarios
from procs import (
    BENCH_NICE,
    LOADGEN_CORE,
    PROXY_CORE,
    Child,
    Processes,
    can_pin,
    free_port,
    pinned,
    thread_cpu_seconds,
    wait_http_ok,
)

PROXY_TARGETS = ("bare", "sidecar")
# LiteLLM serves ~100 req/s: 200 clients queue ~2 s deep, so its phases are longer than --quick's.
LITELLM_MIN_SECONDS = 5.0
LITELLM_MIN_WARMUP = 1.0
MODES = {
    "full": Mode(
        "full",
        seconds=6.0,
        stream_c1_seconds=10.0,
        warmup=1.0,
        max_requests=5_000_000,
        use_wrk=True,
        rounds=3,
    ),
    "quick": Mode(
        "quick", seconds=1.0, stream_c1_seconds=1.0, warmup=0.2, max_requests=500_000, use_wrk=True
    ),
    "smoke": Mode("smoke", seconds=0.3, stream_c1_seconds=0.3, warmup=0.1, max_requests=40, use_wrk=False),
}


def machine_info() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "pinned": can_pin(),
    }


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def _sidecar_argv(upstream: str, port: int, store_dir: Path, src: Path | None) -> list[str]:
    # The script beside this interpreter, not a version-manager shim, so the pid is the sidecar's own.
    exe = Path(sys.executable).parent / "claude-sidecar"
    head = [str(exe)] if exe.exists() and src is None else [sys.executable, "-m", "sidecar.cli"]
    return [
        *head,
        "serve",
        "--upstream-url",
        upstream,
        "--port",
        str(port),
        "--store",
        f"sqlite:///{store_dir}/events.db",
    ]


def start_servers(procs: Processes, work: Path, src: Path | None) -> dict[str, Target]:
    """Upstream on the load generator's core; the two proxies on the proxy core, each as its own process."""
    py = sys.executable
    upstream = procs.start(
        "upstream",
        pinned(LOADGEN_CORE, [py, str(BENCH_DIR / "fast_upstream.py"), "--port", "0"]),
        stdout_pipe=True,
    )
    up_url = upstream.readline(timeout_s=30)
    bare = procs.start(
        "bare",
        pinned(PROXY_CORE, [py, str(BENCH_DIR / "bare_forwarder.py"), "--upstream-url", up_url]),
        stdout_pipe=True,
    )
    bare_url = bare.readline(timeout_s=30)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_")}
    env["SIDECAR_FLEET_PORT"] = "0"  # any free port: a fixed one clashes with other sidecars on the machine
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
    # cwd: ``python -m`` puts the working directory first on sys.path, ahead of --sidecar-src.
    argv = pinned(PROXY_CORE, _sidecar_argv(up_url, port, work, src))
    sidecar = procs.start("sidecar", argv, env=env, cwd=work)
    sidecar_url = f"http://127.0.0.1:{port}"
    try:
        wait_http_ok(sidecar_url + "/readyz", 60, sidecar.alive)
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}; its log ends with:\n{sidecar.log_tail()}") from None
    return {
        "direct": Target("direct", up_url, upstream.pid),
        "bare": Target("bare", bare_url, bare.pid),
        "sidecar": Target("sidecar", sidecar_url, sidecar.pid),
    }


def install_litellm(work: Path) -> tuple[litellm_peer.Install | None, dict[str, Any]]:
    """The cached LiteLLM venv (installed on first use) and the report's record of the peer."""
    info: dict[str, Any] = {
        "version": litellm_peer.VERSION,
        "route": litellm_peer.ROUTE,
        "min_seconds": LITELLM_MIN_SECONDS,
        "reason": None,
    }
    venv = litellm_peer.venv_dir()
    print(f"LiteLLM {litellm_peer.VERSION}: venv {venv} (installed on first use, ~1 min)", file=sys.stderr)
    try:
        install = litellm_peer.ensure_venv(work)
    except litellm_peer.PeerUnavailable as exc:
        info["reason"] = f"install failed: {exc}"
        return None, info
    info.update(venv=str(install.venv), install_s=install.install_s, venv_mb=install.size_mb)
    return install, info


def start_litellm(
    procs: Processes, work: Path, install: litellm_peer.Install, upstream_url: str, info: dict[str, Any]
) -> tuple[Target, Child] | None:
    """Start LiteLLM on the proxy core and check that it forwards to the upstream; None (and the
    reason in ``info``) when it cannot."""
    child: Child | None = None
    try:
        child, url = litellm_peer.start(procs, work, install.venv, upstream_url)
        info["forwarding"] = litellm_peer.check_forwarding(url, upstream_url)
    except (litellm_peer.PeerUnavailable, OSError, RuntimeError) as exc:
        if child is not None:
            procs.stop(child)
        info["reason"] = str(exc)
        return None
    target = Target(
        "litellm",
        url,
        child.pid,
        path=litellm_peer.ROUTE,
        headers=tuple(litellm_peer.client_headers().items()),
        min_seconds=LITELLM_MIN_SECONDS,
        min_warmup=LITELLM_MIN_WARMUP,
        settle=True,
    )
    return target, child


class Peer:
    """LiteLLM during the run: measured while it works. A failure or its death ends its measurement
    (the reason goes to the report), never the run."""

    def __init__(self, info: dict[str, Any], started: tuple[Target, Child] | None) -> None:
        self.info = info
        self.started = started

    def run(self, runner: PhaseRunner, scenario: Scenario) -> dict[str, Any] | None:
        if self.started is None:
            return None
        target, child = self.started
        try:
            phase = runner.run(scenario, target)
        except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as exc:
            self._drop(f"{scenario.key} failed: {str(exc).splitlines()[0]}")
            return None
        code = child.popen.poll()
        if code is not None:
            how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
            self._drop(f"it ended ({how}) during {scenario.key}; its log: {child.log_path}")
            return None
        return phase

    def _drop(self, reason: str) -> None:
        self.info["reason"], self.started = reason, None
        print(f"  LiteLLM no longer measured: {reason}", file=sys.stderr, flush=True)


def check_alive(servers: list[Child], phase: str) -> None:
    """Stop the run when a server died: every later number would be about connection errors."""
    for child in servers:
        code = child.popen.poll()
        if code is not None:
            how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
            raise RuntimeError(
                f"{child.name} ended ({how}) during {phase}; its log ends with:\n{child.log_tail()}"
            )


def count_events(work: Path) -> int | None:
    """Events the sidecar stored (read after it stopped and flushed), or None if unreadable."""
    try:
        with sqlite3.connect(work / "events.db") as db:
            row = db.execute("SELECT count(*) FROM events").fetchone()
    except sqlite3.Error:
        return None
    return int(row[0])


def run_profile(
    procs: Processes, runner: PhaseRunner, target: Target, work: Path, seconds: float
) -> str | None:
    """py-spy the sidecar under 50 clients, no delay; returns the summary Markdown (raw stacks saved).

    ``--nonblocking``: pausing the process for each sample (and ``--native`` unwinding even more) cuts
    the sidecar's throughput by a third or more, which would distort the very thing being profiled.
    """
    if shutil.which("py-spy") is None:
        return None
    raw = work / "profile-sidecar.txt"  # copied next to the report once the whole run succeeded
    argv = ["py-spy", "record", "--pid", str(target.pid), "--duration", str(max(1, round(seconds)))]
    argv += ["--rate", "250", "--threads", "--nonblocking", "--format", "raw", "--output", str(raw)]
    # The load outlasts py-spy (which takes a moment to attach), so every sample sees the same load.
    load = PhaseRunner(runner.procs, replace(runner.mode, seconds=seconds + 2, warmup=0.0), runner.work_dir)
    before = thread_cpu_seconds(target.pid)
    spy = procs.start("py-spy", pinned(LOADGEN_CORE, argv))
    load.run(Scenario("json_c50", "profile: JSON, 50 clients, no delay", 50, False, 0), target)
    spy.popen.wait(timeout=60)
    after = thread_cpu_seconds(target.pid)
    if spy.popen.returncode != 0 or not raw.exists():
        return None
    prof = profile_summary.parse(raw.read_text())
    cpu = {
        group: round(sum(after.get(t, 0.0) - before.get(t, 0.0) for t in tids), 2)
        for group, tids in prof.thread_ids.items()
    }
    return profile_summary.markdown(prof, cpu)


def sidecar_source(src: Path | None, label: str | None) -> str:
    """Which sidecar code ran: the given label, a source directory, or the installed package's git state."""
    if label:
        return label
    if src is not None:
        return f"source tree {src}"
    root = BENCH_DIR.parent
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "sidecar"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "installed package"
    state = " with uncommitted changes in sidecar/" if dirty.stdout.strip() else ""
    return f"installed package, commit {head.stdout.strip() or '?'}{state}"


@dataclass(frozen=True)
class Options:
    profile: bool
    src: Path | None
    label: str | None
    litellm_skip: str | None  # why LiteLLM is not measured (None: measure it)


def _progress(phase: dict[str, Any]) -> None:
    print(
        f"  {phase['scenario']:14} {phase['target']:8} round {phase['round']} {phase['rps']:>9} req/s",
        file=sys.stderr,
        flush=True,
    )


def run_bench(mode: Mode, work: Path, opts: Options) -> dict[str, Any]:
    loadavg_start = _loadavg()
    skipped: dict[str, Any] = {"reason": opts.litellm_skip}
    install, litellm_info = (None, skipped) if opts.litellm_skip else install_litellm(work)
    if can_pin():
        os.sched_setaffinity(0, {LOADGEN_CORE})  # the bench script's own polling stays off the proxy core
    phases: list[dict[str, Any]] = []
    profile_md: str | None = None
    with Processes(work) as procs:
        targets = start_servers(procs, work, opts.src)
        servers = list(procs.children)  # upstream, bare, sidecar: they must live through every phase
        upstream_url = targets["direct"].base_url
        started = start_litellm(procs, work, install, upstream_url, litellm_info) if install else None
        litellm = Peer(litellm_info, started)
        runner = PhaseRunner(procs, mode, work)
        for name in PROXY_TARGETS:  # the upstream keeps no pool; the proxies' pools fill here
            runner.prime(targets[name])
        litellm.run(runner, Scenario("prime", "prime", 200, False, 0))
        for scenario in scenarios():
            for round_no in range(1, runner.rounds(scenario) + 1):
                for name in ("direct", "bare", "sidecar"):
                    phases.append(runner.run(scenario, targets[name], round_no))
                    check_alive(servers, f"{scenario.key}/{name}")
                    _progress(phases[-1])
            # A peer for comparison, not judged: one round (its phases are long already).
            if (phase := litellm.run(runner, scenario)) is not None:
                phases.append(phase)
                check_alive(servers, f"{scenario.key}/litellm")
                _progress(phase)
        if opts.profile:
            profile_md = run_profile(procs, runner, targets["sidecar"], work, max(3.0, mode.seconds))
        sidecar_child = next(c for c in procs.children if c.name == "sidecar")
        sidecar_exit = procs.stop(sidecar_child, timeout_s=60)
    sent = sum(p["requests"] for p in phases if p["target"] == "sidecar")
    summary = report.summarize(phases)
    machine = {**machine_info(), "loadavg_start": loadavg_start, "loadavg_end": _loadavg()}
    return {
        "machine": machine,
        "mode": mode.name,
        "sidecar_source": sidecar_source(opts.src, opts.label),
        "method": _method(mode),
        "settings": asdict(mode),
        "phases": phases,
        "summary": summary,
        "targets": report.targets(summary),
        "sidecar_check": {
            "requests_measured": sent,
            "events_stored": count_events(work),
            "exit_code": sidecar_exit,
        },
        "litellm": litellm_info,
        "profile_md": profile_md,
    }


def _method(mode: Mode) -> str:
    json_gen = "wrk (1 thread, Lua POST)" if mode.use_wrk else "asyncio/aiohttp client"
    pin = (
        "taskset: proxy on core 1; load generator, upstream and bench on core 0"
        if can_pin()
        else "no pinning"
    )
    if os.geteuid() == 0:
        pin += f"; bench processes at nice {BENCH_NICE}"
    repeated = ", ".join(s.key for s in scenarios() if s.repeat)
    rounds = (
        f"; {mode.rounds} interleaved rounds of {repeated}, added latency computed within each round, "
        "median round reported"
        if mode.rounds > 1
        else ""
    )
    return (
        f"non-streaming load: {json_gen}; streaming load: asyncio/aiohttp client; closed loop; "
        f"2,400-byte request bodies; {pin}; sidecar with SQLite store, metrics and request log on{rounds}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1-second phases (~30 s in all)")
    parser.add_argument("--smoke", action="store_true", help="a few hundred requests, for tests")
    parser.add_argument("--profile", action="store_true", help="py-spy the sidecar under 50 clients")
    parser.add_argument("--no-wrk", action="store_true", help="use the asyncio client for everything")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results")
    parser.add_argument("--sidecar-src", type=Path, help="run the sidecar from this source tree instead")
    parser.add_argument("--label", help="how the report names the sidecar build (e.g. a commit)")
    parser.add_argument("--no-litellm", action="store_true", help="skip the LiteLLM peer (on with --smoke)")
    args = parser.parse_args(argv)
    mode = MODES["smoke" if args.smoke else "quick" if args.quick else "full"]
    if args.no_wrk or not wrk_driver.available():
        mode = Mode(**{**asdict(mode), "use_wrk": False})
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="sidecar-bench-"))
    try:
        src = args.sidecar_src.resolve() if args.sidecar_src else None
        skip = (
            "skipped (--no-litellm)" if args.no_litellm else "skipped in --smoke mode" if args.smoke else None
        )
        doc = run_bench(mode, work, Options(args.profile, src, args.label, skip))
    except BaseException:
        print(f"bench failed; process logs kept in {work}", file=sys.stderr)
        raise
    if (work / "profile-sidecar.txt").exists():
        shutil.copy(work / "profile-sidecar.txt", args.out / "profile-sidecar.txt")
    shutil.rmtree(work, ignore_errors=True)
    text = report.markdown(doc) + (("\n" + doc["profile_md"]) if doc["profile_md"] else "")
    (args.out / "latest.md").write_text(text)
    (args.out / "latest.json").write_text(json.dumps(doc, indent=1, default=str) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
