"""Smoke test of ``bench/``: a few hundred requests through the whole pipeline, and its small helpers.

It checks that the bench runs end to end and that the report has the promised structure and numbers.
It asserts nothing about performance: timings on a shared test machine mean nothing.
"""

from __future__ import annotations

import importlib
import json
import math
import subprocess
import sys
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
