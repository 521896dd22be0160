"""Smoke test of ``bench/``: a few hundred requests through the whole pipeline, and its small helpers.

It checks that the bench runs end to end and that the report has the promised structure and numbers.
It asserts nothing about performance: timings on a shared test machine mean nothing.
"""

from __future__ import annotations

import argparse
import http.server
import importlib
import json
import math
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"
SCENARIOS = ["json_c1", "json_c50", "json_c200", "json_c50_50ms", "stream_c1", "stream_c50", "stream_c200"]

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="the bench reads /proc")


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, ModuleType]]:
    """The bench's modules, imported the way ``python bench/run.py`` imports them (flat, by name)."""
    monkeypatch.syspath_prepend(str(BENCH_DIR))
    yield {name: importlib.import_module(name) for name in ("workload", "wrk_driver", "profile_summary")}


def test_request_body_is_a_2400_byte_messages_request(bench: dict[str, ModuleType]) -> None:
    for stream in (False, True):
        raw = bench["workload"].request_body(stream)
        doc = json.loads(raw)
        assert len(raw) == 2400
        assert doc["model"] == "claude-sonnet-4-5" and doc["max_tokens"] == 1024
        assert doc.get("stream", False) is stream


def test_percentile_is_nearest_rank(bench: dict[str, ModuleType]) -> None:
    pct = bench["workload"].percentile
    values = [float(v) for v in range(1, 201)]  # 1..200
    assert pct(values, 50) == 100.0  # rank ceil(0.5 * 200) = 100
    assert pct(values, 99) == 198.0  # rank ceil(0.99 * 200) = 198
    assert pct(values, 100) == 200.0
    assert pct([7.0], 99) == 7.0
    assert math.isnan(pct([], 50))


def test_wrk_result_line_is_converted_to_ms(bench: dict[str, ModuleType]) -> None:
    line = 'WRKJSON {"requests":5000,"duration_us":2000000,"errors":3,"p50":410.0,"p90":800.0,'
    line += '"p99":1500.0,"max":9000.0,"mean":450.5}'
    result = bench["wrk_driver"].parse("Running 2s test\n" + line + "\n")
    assert result["rps"] == 2500.0  # 5000 requests / 2 s
    assert result["errors"] == 3
    assert result["latency_ms"] == {"p50": 0.41, "p90": 0.8, "p99": 1.5, "max": 9.0, "mean": 0.451}


def test_profile_summary_separates_waits_threads_and_packages(bench: dict[str, ModuleType]) -> None:
    raw = "\n".join(
        [
            "thread (10): MainThread;run (sidecar/server.py:9);send (sidecar/proxy/upstream.py:99) 6",
            "thread (10): MainThread;run (sidecar/server.py:9);_request (aiohttp/client.py:700) 3",
            "thread (11): uvloop_0;_bootstrap (threading.py:1);_worker (concurrent/futures/thread.py:81) 8",
            "thread (12): uvloop_1;_worker (concurrent/futures/thread.py:81);netrc.__init__ (netrc.py:74) 1",
        ]
    )
    prof = bench["profile_summary"].parse(raw)
    executor = "default executor (run_in_executor / to_thread)"
    assert prof.samples == 18
    assert prof.running == 10  # the 8 samples parked in _worker are not running
    assert prof.by_thread == {"MainThread": 9, executor: 9}
    assert prof.thread_ids[executor] == {11, 12}
    assert prof.self_by_package == {"sidecar": 6, "aiohttp": 3, "netrc": 1}
    assert prof.inclusive_by_func["run (sidecar/server.py)"] == 9


def test_quick_bench_run_writes_a_report_with_numbers(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH_DIR / "run.py"), "--smoke", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc: dict[str, Any] = json.loads((tmp_path / "latest.json").read_text())
    phases = doc["phases"]
    assert [(p["scenario"], p["target"]) for p in phases] == [
        (s, t) for s in SCENARIOS for t in ("direct", "bare", "sidecar")
    ]
    for p in phases:
        assert p["requests"] > 0 and p["errors"] == 0, p
        assert p["latency_ms"]["p50"] > 0 and p["latency_ms"]["p99"] >= p["latency_ms"]["p50"], p
        assert p["cpu_us_per_req"] >= 0 and p["peak_rss_kb"] > 0, p
        assert (p["ttfb_ms"] is not None) == p["stream"], p
    for proxy in ("bare", "sidecar"):
        headline = doc["summary"]["headline"][proxy]
        assert headline["max_rps"] > 0 and headline["peak_rss_mb"] > 0
        assert all(not math.isnan(v) for v in doc["summary"]["added_ms"]["json_c1"][proxy].values())
    check = doc["sidecar_check"]
    # One event per call: every measured request (plus warm-up ones) is in the sidecar's store.
    assert check["events_stored"] >= check["requests_measured"] > 0
    assert check["exit_code"] == 0
    text = (tmp_path / "latest.md").read_text()
    for heading in ("## Headline", "## Added latency", "## Streaming time to first byte", "## Every phase"):
        assert heading in text
    assert proc.stdout.strip() == text.strip()  # the report is also printed
    # Tests never pip-install: the smoke mode leaves LiteLLM out and says so.
    assert doc["litellm"] == {"reason": "skipped in --smoke mode"}
    assert "- LiteLLM: not measured — skipped in --smoke mode" in text.splitlines()


def _phase(scenario: str, target: str, p50: float, p99: float, rps: float, stream: bool) -> dict[str, Any]:
    latency = {"p50": p50, "p90": p50, "p99": p99, "max": p99, "mean": p50}
    return {
        "scenario": scenario,
        "target": target,
        "label": scenario.replace("_", " "),
        "stream": stream,
        "loadgen": "asyncio" if stream else "wrk",
        "requests": 100,
        "errors": 3 if target == "litellm" and scenario == "json_c200" else 0,
        "duration_s": 1.0,
        "rps": rps,
        "latency_ms": latency,
        "ttfb_ms": latency if stream else None,
        "cpu_us_per_req": 1e6 / rps,
        "peak_rss_kb": 400 * 1024 if target == "litellm" else 50 * 1024,
        "other_cpu_on_proxy_core_s": 0.0,
    }


def _doc(report: ModuleType, targets: tuple[str, ...], litellm: dict[str, Any]) -> dict[str, Any]:
    cost = {"direct": (1.0, 2.0, 50_000.0), "bare": (1.5, 3.0, 4000.0), "sidecar": (1.75, 3.5, 2500.0)}
    cost["litellm"] = (11.0, 14.0, 100.0)
    phases = [_phase(s, t, *cost[t], stream=s.startswith("stream")) for s in SCENARIOS for t in targets]
    summary = report.summarize(phases)
    machine = {"date": "d", "nproc": 2, "cpu_model": "cpu", "python": "3.11", "platform": "linux"}
    machine |= {"loadavg_start": "0", "loadavg_end": "0"}
    return {
        "machine": machine,
        "mode": "quick",
        "method": "m",
        "sidecar_source": "s",
        "phases": phases,
        "summary": summary,
        "targets": report.targets(summary),
        "sidecar_check": {"requests_measured": 700, "events_stored": 700, "exit_code": 0},
        "litellm": litellm,
    }


def test_report_shows_litellm_as_a_peer_not_judged(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH_DIR))
    report = importlib.import_module("report")
    info = {"version": "1.2.3", "route": "/anthropic/v1/messages", "min_seconds": 5.0, "reason": None}
    info |= {"venv": "/cache/litellm-1.2.3", "install_s": 41.0, "venv_mb": 736.0}
    doc = _doc(report, ("direct", "bare", "sidecar", "litellm"), info)
    headline = doc["summary"]["headline"]["litellm"]
    assert headline["max_rps"] == 100.0 and headline["peak_rss_mb"] == 400.0
    assert doc["summary"]["added_ms"]["json_c1"]["litellm"] == {"p50": 10.0, "p99": 12.0}
    assert all("litellm" not in t["target"].lower() for t in doc["targets"])  # targets judge the sidecar
    text = report.markdown(doc)
    assert "| litellm | 100 | 10.00 / 12.00 ms |" in text
    assert "| scenario | direct p50 / p99 | bare added p50 / p99 | sidecar added p50 / p99 " in text
    assert "| litellm added p50 / p99 |" in text
    assert "| json c1 | 1.00 / 2.00 | +0.50 / +1.00 | +0.75 / +1.50 | +10.00 / +12.00 |" in text
    assert "| json_c200 | litellm | 1 | wrk | 100 | 3 |" in text
    bullet = next(line for line in text.splitlines() if line.startswith("- LiteLLM:"))
    assert "proxy 1.2.3" in bullet and "installed in 41 s" in bullet
    assert "3 errors in 700 measured requests (json_c200)" in bullet


def test_report_says_why_litellm_was_not_measured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH_DIR))
    report = importlib.import_module("report")
    doc = _doc(report, ("direct", "bare", "sidecar"), {"reason": "install failed: no network"})
    assert set(doc["summary"]["headline"]) == {"bare", "sidecar"}
    text = report.markdown(doc)
    assert "- LiteLLM: not measured — install failed: no network" in text.splitlines()
    assert "litellm added" not in text
    del doc["litellm"]  # reports of older runs have no record of the peer
    assert "LiteLLM" not in report.markdown(doc)


def test_load_generators_send_a_peer_its_own_key(bench: dict[str, ModuleType]) -> None:
    script = bench["wrk_driver"].lua_script(50, {"X-Api-Key": "sk-peer"})
    assert 'wrk.headers["x-api-key"] = "sk-peer"' in script
    assert "sk-ant-bench" not in script  # replaced, not sent twice
    assert 'wrk.headers["x-bench-ttfb-ms"] = "50"' in script
    loadgen = importlib.import_module("loadgen")
    assert loadgen._header("X-Api-Key: sk-peer") == ("x-api-key", "sk-peer")
    with pytest.raises(argparse.ArgumentTypeError):
        loadgen._header("no-colon")


def test_litellm_venv_is_reused_once_complete(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.syspath_prepend(str(BENCH_DIR))
    peer = importlib.import_module("litellm_peer")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    venv = peer.venv_dir("9.9.9")
    assert venv == tmp_path / "cache" / "claude-sidecar-bench" / "litellm-9.9.9"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "litellm").write_bytes(b"x" * 3 * 2**20)
    (venv / ".bench-complete").write_text("done\n")
    install = peer.ensure_venv(tmp_path, "9.9.9")  # would fail (no such release) if it installed
    assert install.venv == venv and install.install_s is None and install.size_mb == 3.0
    assert not (tmp_path / "litellm-install.log").exists()


@pytest.fixture
def upstream_url() -> Iterator[str]:
    """The bench's fast upstream on a free port."""
    proc = subprocess.Popen(
        [sys.executable, str(BENCH_DIR / "fast_upstream.py"), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        proc.terminate()
        proc.wait(10)


def test_litellm_forwarding_check_accepts_only_the_upstreams_answers(
    monkeypatch: pytest.MonkeyPatch, upstream_url: str
) -> None:
    monkeypatch.syspath_prepend(str(BENCH_DIR))
    peer = importlib.import_module("litellm_peer")
    # The bench upstream answers any path, so it stands in for a LiteLLM that forwards faithfully.
    seen = peer.check_forwarding(upstream_url, upstream_url)
    assert seen["json"]["status"] == 200 and seen["sse"]["status"] == 200
    assert seen["json"]["ms"] >= peer.CHECK_DELAY_MS  # the upstream honoured the forwarded delay header

    class Impostor(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["content-length"]))
            body = json.dumps({"id": "msg_from_somewhere_else", "type": "message"}).encode()
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Impostor)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(peer.PeerUnavailable, match="not the bench upstream's"):
            peer.check_forwarding(f"http://127.0.0.1:{server.server_port}", upstream_url)
    finally:
        server.shutdown()
        server.server_close()


def test_litellm_runs_offline_with_a_master_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.syspath_prepend(str(BENCH_DIR))
    peer = importlib.import_module("litellm_peer")
    env = peer.offline_env(tmp_path / "venv", "http://127.0.0.1:1234", tmp_path)
    assert env["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
    assert env["LITELLM_MASTER_KEY"] == peer.client_headers()["x-api-key"]
    assert env["ANTHROPIC_API_BASE"] == "http://127.0.0.1:1234"
    assert not any(k.endswith("_PROXY") or k.startswith("DATABASE") for k in env)


def test_a_failing_or_dead_litellm_ends_only_its_own_measurement(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.syspath_prepend(str(BENCH_DIR))
    run = importlib.import_module("run")
    phases = importlib.import_module("phases")
    procs = importlib.import_module("procs")
    scenario = phases.scenarios()[0]

    class Runner:
        def __init__(self, fail: bool) -> None:
            self.fail, self.calls = fail, 0

        def run(self, scenario: Any, target: Any) -> dict[str, Any]:
            self.calls += 1
            if self.fail:
                raise RuntimeError("loadgen-json_c1-litellm timed out before printing a line\nsecond line")
            return {"scenario": scenario.key, "target": target.name}

    with procs.Processes(tmp_path) as children:
        child = children.start("litellm", ["sleep", "60"])
        target = phases.Target("litellm", "http://127.0.0.1:9", child.pid, path="/anthropic/v1/messages")
        info: dict[str, Any] = {"reason": None}
        peer = run.Peer(info, (target, child))
        assert peer.run(Runner(fail=False), scenario) == {"scenario": "json_c1", "target": "litellm"}
        child.popen.kill()
        child.popen.wait(5)
        assert peer.run(Runner(fail=False), scenario) is None  # its phase is not kept
        assert info["reason"].startswith("it ended (signal SIGKILL) during json_c1")
        later = Runner(fail=False)
        assert peer.run(later, scenario) is None and later.calls == 0  # not measured any more

        info2: dict[str, Any] = {"reason": None}
        peer2 = run.Peer(info2, (target, children.start("litellm2", ["sleep", "60"])))
        assert peer2.run(Runner(fail=True), scenario) is None
        assert info2["reason"] == "json_c1 failed: loadgen-json_c1-litellm timed out before printing a line"


def test_wrk_script_staggers_first_requests_only_with_a_delayed_upstream(
    bench: dict[str, ModuleType],
) -> None:
    lua = bench["wrk_driver"].lua_script
    assert "delay" not in lua(0, None, 50)  # no-delay phases: wrk's plain closed loop
    assert "delay" not in lua(50)  # no connection count, nothing to stagger
    script = lua(50, None, 8)
    assert "if started < 8 then" in script and "math.random(0, 50 - 1)" in script


def test_wrk_connections_start_spread_over_one_upstream_delay(
    bench: dict[str, ModuleType], tmp_path: Path
) -> None:
    """Run real wrk against a tiny server and look at when each connection's first request arrives."""
    import shutil
    import time

    from tests.conftest import require_service

    require_service(shutil.which("wrk") is not None, "wrk (apt-get install wrk)")
    first_seen: dict[int, float] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            first_seen.setdefault(self.client_address[1], time.monotonic())
            self.rfile.read(int(self.headers["content-length"]))
            self.send_response(200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: Any) -> None:
            return None

    class Server(http.server.ThreadingHTTPServer):
        request_queue_size = 64  # the default backlog of 5 would delay some of the 8 connects

    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        spreads = {}
        for ttfb in (0, 200):
            first_seen.clear()
            script = tmp_path / f"s{ttfb}.lua"
            script.write_text(bench["wrk_driver"].lua_script(ttfb, None, 8))
            url = f"http://127.0.0.1:{server.server_address[1]}/v1/messages"
            run = subprocess.run(
                bench["wrk_driver"].command(url, str(script), 8, 1),
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert bench["wrk_driver"].parse(run.stdout)["requests"] > 8
            assert len(first_seen) == 8
            spreads[ttfb] = max(first_seen.values()) - min(first_seen.values())
    finally:
        server.shutdown()
    assert spreads[0] < 0.15  # all at once, give or take a loaded 2-core machine's scheduling (0.059 s seen)
    assert spreads[200] > 0.05  # 8 draws in [0, 200) ms: all within 50 ms has odds of ~1 in 1,000


def test_handler_cost_drives_the_real_handler_and_records_every_call() -> None:
    run = subprocess.run(
        [sys.executable, str(BENCH_DIR / "handler_cost.py"), "--calls", "300"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["calls"] == 300
    assert result["events_stored"] == 300  # every driven call went through accounting into SQLite
    assert 0 < result["wall_us_per_call"] < 100_000 and result["cpu_us_per_call"] > 0


def test_handler_cost_agent_conversation_is_a_valid_growing_messages_request(
    bench: dict[str, ModuleType], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(BENCH_DIR))
    agent_body = importlib.import_module("handler_cost").agent_body
    from sidecar.testing.fake_cache import prompt_blocks

    small, large = json.loads(agent_body(2)), json.loads(agent_body(40))
    assert len(large["messages"]) == len(small["messages"]) + 2 * 38
    assert large["system"][0]["cache_control"] == {"type": "ephemeral"}
    blocks = [b for m in large["messages"] if isinstance(m["content"], list) for b in m["content"]]
    uses = [b["id"] for b in blocks if b["type"] == "tool_use"]
    results = [b["tool_use_id"] for b in blocks if b["type"] == "tool_result"]
    assert uses == results and len(results) == 40  # every tool_use answered by its tool_result
    prompt_blocks(large)  # the API-faithful validator accepts it (raises otherwise)


def test_repeated_scenarios_report_the_median_round_paired_within_each_round(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(BENCH_DIR))
    report = importlib.import_module("report")
    # p99 by round: direct drifts from round to round; each round's added latency is taken within it.
    p99 = {"direct": (51.0, 52.0, 51.5), "bare": (54.0, 60.0, 59.0), "sidecar": (55.0, 56.0, 53.5)}
    phases = []
    for r in range(3):
        for t in ("direct", "bare", "sidecar"):
            phase = _phase("json_c50_50ms", t, 50.0 + r, p99[t][r], 1000.0 + r, stream=False)
            phases.append(phase | {"round": r + 1})
    # bare: 3, 8, 7.5 → median 7.5; sidecar: 4, 4, 2 → median 4 (pooled p99s would give 59 - 52 = 7 and
    # 56 - 52 = 4, and pairing sidecar round 3 with direct round 1 would give 2.5)
    assert report.added_by_round(phases, "json_c50_50ms", "bare", "latency_ms", "p99") == [3.0, 8.0, 7.5]
    assert report.added_by_round(phases, "json_c50_50ms", "sidecar", "latency_ms", "p99") == [4.0, 4.0, 2.0]
    assert report.added(phases, "json_c50_50ms", "bare", "latency_ms", "p99") == 7.5
    assert report.added(phases, "json_c50_50ms", "sidecar", "latency_ms", "p99") == 4.0
    assert report.added(phases, "json_c50_50ms", "sidecar", "latency_ms", "p50") == 0.0  # same p50s
    assert report._value(phases, "json_c50_50ms", "sidecar", "rps") == 1001.0  # the median round's rate
    lines = report._rounds_md(phases)
    assert "| json_c50_50ms | bare | +0.00, +0.00, +0.00 | +3.00, +8.00, +7.50 |" in lines
    assert "| json_c50_50ms | sidecar | +0.00, +0.00, +0.00 | +4.00, +4.00, +2.00 |" in lines
    assert report._rounds_md([p for p in phases if p["round"] == 1]) == []  # one round: no section


def test_profile_summary_counts_the_recorder_yielding_the_core_as_parked(
    bench: dict[str, ModuleType],
) -> None:
    raw = "\n".join(
        [
            "thread (20): sidecar-recorder;_run (sidecar/telemetry/recorder.py:1);"
            "yield_cpu (sidecar/infra/sched.py:9) 30",
            "thread (20): sidecar-recorder;_run (sidecar/telemetry/recorder.py:1);"
            "write (sidecar/store/sqlite.py:5) 4",
            "thread (10): MainThread;run (sidecar/server.py:9);send (sidecar/proxy/h1.py:99) 6",
        ]
    )
    prof = bench["profile_summary"].parse(raw)
    assert prof.samples == 40 and prof.running == 10  # runnable in sched_yield is not using the core
    assert prof.blocked_by_thread == {"sidecar-recorder": 30}
    assert "yield_cpu (sidecar/infra/sched.py)" not in prof.self_by_func


def test_response_cache_bench_key_hashing_and_report(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH_DIR))
    bench = importlib.import_module("response_cache")
    key = bench.key_hashing(200)
    assert key["body_bytes"] == 2400 and key["iterations"] == 200 and key["cpu_us_per_key"] > 0
    latency = {"p50_ms": 0.3, "p90_ms": 0.5, "p99_ms": 1.0}
    text = bench._markdown(
        {
            "date": "d",
            "machine": "m",
            "quick": True,
            "load_start": "0",
            "load_end": "0",
            "key_hashing": key,
            "handler_cpu": [
                {"mode": m, "calls": 10, "cpu_us_per_call": c, "wall_us_per_call": c}
                for m, c in (("off", 100.0), ("miss", 130.0), ("hit", 90.0))
            ],
            "hit_latency": {
                "requests": 10,
                "hit": {**latency, "sidecar_cpu_us_per_hit": 50.0},
                "forwarded": latency,
                "pinned": False,
            },
        }
    )
    assert "A miss costs +30.0 µs of CPU over the cache off" in text
    assert "| hit | 0.3 ms | 0.5 ms | 1.0 ms |" in text
