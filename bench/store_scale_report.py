"""``store_scale.py``'s ``serve`` run (the product's start-up, budgets on) and its Markdown report."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def serve_ready(path: Path | None, timeout_s: float = 300.0) -> dict[str, float | None]:
    """Start ``claude-sidecar serve`` on ``path`` (``None``: an empty store) with budgets on, so start-up
    restores the counters; seconds until ``/readyz`` answers, and the process's RSS then."""
    label = "serve_empty" if path is None else "serve_filled"
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        store = path or Path(tmp) / "empty.db"
        env = {
            **os.environ,
            "PYTHONPATH": str(HERE.parent),
            "SIDECAR_STORE": f"sqlite:///{store}",
            "SIDECAR_PORT": str(port),
            "SIDECAR_UPSTREAM_URL": "http://127.0.0.1:9",
            "SIDECAR_SESSION_MAX_USD": "100",
            "SIDECAR_APP_MAX_USD_PER_DAY": "100000",
        }
        code = "import sys; from sidecar.cli import main; sys.exit(main(sys.argv[1:]))"
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-c", code, "serve"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        ready: float | None = None
        rss: float | None = None
        try:
            while time.perf_counter() - start < timeout_s and proc.poll() is None:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                        if r.status == 200:
                            ready = time.perf_counter() - start
                            rss = _rss_mb(proc.pid)
                            break
                except OSError:
                    time.sleep(0.1)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return {f"{label}_ready_s": ready, f"{label}_rss_mb": rss}


def _ms(f: dict[str, Any], key: str) -> str:
    v = f.get(key)
    if not isinstance(v, dict):
        return "-"
    return f"{v['p50_ms']:.1f} / {v['p95_ms']:.1f} ({v['cpu_p50_ms']:.1f} / {v['cpu_p95_ms']:.1f})"


def _num(f: dict[str, Any], key: str, fmt: str = "{:.1f}") -> str:
    v = f.get(key)
    return "-" if v is None else fmt.format(v)


def _reads_table(f: dict[str, Any]) -> list[str]:
    orders = ("recent", "cost", "tokens", "calls", "duration", "tool_time")
    rows = [
        f"| sessions list, order={o} (limit 50, last 7 days) | {_ms(f, f'sessions_{o}')} | "
        f"{_ms(f, f'sessions_{o}_page2')} | ≤ 150 ms p95 |"
        for o in orders
    ]
    filters = [
        f"| sessions list, order=cost, filter {name} | {_ms(f, 'sessions_cost_filter_' + name)} | "
        "| ≤ 150 ms p95 |"
        for name in ("app", "model", "open", "min_cost")
    ]
    return [
        "# Read side at scale (SPEC R-RS-6)",
        "",
        f"`bench/store_scale.py --events {f.get('events')}`: {f.get('events', 0):,} events, "
        f"~{f.get('events', 0) // 50:,} sessions over 7 days, SQLite file "
        f"{_num(f, 'db_mb', '{:,.0f}')} MB. Filled through "
        f"`SQLiteStore.write_events` in {_num(f, 'fill_s', '{:.0f}')} s "
        f"({_num(f, 'fill_cpu_us_per_event')} µs CPU per event, generation included). "
        "Reads run in a fresh process through `sidecar.store.sqlite_reads`, the query layer the admin API, "
        "`report` / `check` and start-up read through.",
        "",
        "Times are wall-clock milliseconds p50 / p95, and in brackets the reading process's CPU time "
        "p50 / p95: on a shared machine the wall clock also counts the time other processes held the "
        f"cores (load average during the reads: {_num(f, 'load_during_reads')}).",
        "",
        "| read | p50 / p95 ms (CPU) | page 2 p50 / p95 ms (CPU) | target |",
        "| --- | --- | --- | --- |",
        *rows,
        *filters,
        f"| a 500-call session (all calls) | {_ms(f, 'session_500_calls')} | | ≤ 50 ms |",
        f"| summary 24 h by app | {_ms(f, 'summary_24h_app')} | | ≤ 300 ms |",
        f"| summary 24 h by model | {_ms(f, 'summary_24h_model')} | | ≤ 300 ms |",
        f"| summary 24 h by hour | {_ms(f, 'summary_24h_hour')} | | ≤ 300 ms |",
        f"| summary 7 days by day | {_ms(f, 'summary_7d_day')} | | ≤ 300 ms |",
        f"| summary 7 days by model | {_ms(f, 'summary_7d_model')} | | ≤ 300 ms |",
        f"| per-tool statistics 24 h | {_ms(f, 'tool_summary_24h')} | | |",
        "| report's reads (24 h: summary by model, top 10 sessions, tools, cache misses, response cache) | "
        f"{_ms(f, 'report_query_layer')} | | ≤ 3 s |",
        f"| start-up reads (7-day sessions, their unpriced calls, today's spend, open sessions) | "
        f"{_ms(f, 'start_up_reads')} | | (serve ready ≤ 5 s) |",
        "",
        f"Reading process RSS: {_num(f, 'rss_before_reads_mb')} MB with the app imported, "
        f"{_num(f, 'rss_after_reads_mb')} MB after every read above (max {_num(f, 'max_rss_mb')} MB); "
        f"target ≤ 150 MB. Sessions in the last 7 days: {f.get('sessions_7d')}, "
        f"open: {f.get('open_sessions')}.",
        "",
    ]


def _wiring_and_writes(f: dict[str, Any]) -> list[str]:
    return [
        "## The product's entry points on this file",
        "",
        f"* `claude-sidecar serve` until `/readyz` answers, budgets on (start-up restores the budget "
        f"counters and the open sessions): {_num(f, 'serve_filled_ready_s')} s, RSS then "
        f"{_num(f, 'serve_filled_rss_mb')} MB (empty store: {_num(f, 'serve_empty_ready_s')} s, "
        f"{_num(f, 'serve_empty_rss_mb')} MB); targets ≤ 5 s, ≤ 150 MB.",
        f"* `claude-sidecar report` (24 h), a fresh process: {_num(f, 'report_current_s')} s wall, "
        f"{_num(f, 'report_current_cpu_s')} s CPU (imports included); target ≤ 3 s.",
        "",
        "## Write side",
        "",
        f"* Write cost, recorder-sized batches of 64 into a 100,000-event file: "
        f"{_num(f, 'write_cpu_us_per_event_with_rollup')} µs CPU per event with the rollups, "
        f"{_num(f, 'write_cpu_us_per_event_without_rollup')} µs without (the writer's per-batch rollup "
        "statements skipped and the read side's partial indexes on `events` dropped).",
        f"* Retention purge of the oldest day ({_num(f, 'purge_day_events', '{:,.0f}')} events) in "
        f"{_num(f, 'purge_day_s')} s of paced chunks (each sized to ~50 ms, at most 2,000 events), "
        "while a writer recorded 32-event batches: "
        f"its longest wait {_num(f, 'purge_writer_max_wait_s', '{:.3f}')} s, p99 "
        f"{_num(f, 'purge_writer_p99_wait_s', '{:.3f}')} s over {f.get('purge_writer_batches')} batches "
        "(target: never more than 1 s).",
        f"* Migration of an existing file: the {_num(f, 'migration_events', '{:,.0f}')} events left after "
        f"the purge, from schema 1, rolled up at the first start in {_num(f, 'migration_s')} s.",
        "",
    ]


def markdown(f: dict[str, Any]) -> str:
    return "\n".join([*_reads_table(f), *_wiring_and_writes(f)])
