"""The read side at scale (SPEC R-RS-6): a week of history in the embedded store, and what reading costs.

    nice -n 10 python bench/store_scale.py                   # 2,000,000 events in 40,000 sessions
    python bench/store_scale.py --events 200000              # a smaller run
    python bench/store_scale.py --db /tmp/big.db --reuse     # keep / reuse a filled file

Fills a SQLite store through the product's own ``SQLiteStore.write_events`` (batches of 2,000), then
measures, each in a fresh process as a server would be: the sessions list for every order (p95 of 30),
a 500-call session, ``summary``, the start-up reads and a ``report``-sized read through the query layer
(:mod:`sidecar.store.sqlite_reads`), and that process's RSS after them. It also times the product's own
entry points (``claude-sidecar report``, wall and CPU time; ``serve`` until ready with budgets on, and its
RSS then), the rollup's write cost per event (CPU µs
with and without the read side), a day's retention purge against a concurrent writer, and the migration
that rolls up an existing file. Writes
``bench/results/store_scale.md`` (``--out``) and prints the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from store_scale_data import DAY, history
from store_scale_report import markdown, serve_ready

from sidecar.store import sqlite as sqlite_module
from sidecar.store import sqlite_rollup_batch
from sidecar.store.sqlite import SQLiteStore
from sidecar.store.sqlite_schema import MIGRATIONS

HERE = Path(__file__).resolve().parent
BATCH = 2000
# What the read side adds to each insert besides the events table's own indexes (schema 1).
_READ_SIDE_INDEXES = ("events_unpriced", "events_session_tools", "events_tools")


def fill(path: Path, n_events: int, now: float) -> dict[str, float]:
    store = SQLiteStore(path, retention_days=0)
    store.open()
    wall, cpu = time.perf_counter(), time.process_time()
    batch = []
    for event in history(n_events, now):
        batch.append(event)
        if len(batch) == BATCH:
            store.write_events(batch)
            batch = []
    store.write_events(batch)
    store.close()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"events": n_events, "fill_s": wall, "fill_cpu_us_per_event": cpu / n_events * 1e6}


def write_cost(now: float, n_prefill: int = 100_000, n_measured: int = 40_000) -> dict[str, float]:
    """CPU µs per stored event, recorder-sized batches (64), with and without the read side (the
    writer's per-batch rollup statements, and the read side's partial indexes on ``events``)."""
    events = list(history(n_prefill + n_measured, now, seed=9))
    out: dict[str, float] = {}
    for label in ("with_rollup", "without_rollup"):
        with tempfile.TemporaryDirectory() as tmp:
            store = SQLiteStore(Path(tmp) / "w.db", retention_days=0)
            store.open()
            if label == "without_rollup":
                conn = sqlite3.connect(store.path)
                for index in _READ_SIDE_INDEXES:
                    conn.execute(f"DROP INDEX {index}")
                conn.commit()
                conn.close()
            # Module attribute swapped for this measurement only: the writer without its rollup step.
            sqlite_module.roll_up = _no_rollup if label == "without_rollup" else sqlite_rollup_batch.roll_up
            try:
                for i in range(0, n_prefill, BATCH):
                    store.write_events(events[i : i + BATCH])
                cpu = time.process_time()
                for i in range(n_prefill, n_prefill + n_measured, 64):
                    store.write_events(events[i : i + 64])
                out[f"write_cpu_us_per_event_{label}"] = (time.process_time() - cpu) / n_measured * 1e6
            finally:
                sqlite_module.roll_up = sqlite_rollup_batch.roll_up
                store.close()
    return out


def _no_rollup(conn: sqlite3.Connection, after: int) -> None:
    del conn, after


def _reader(path: str, now: float) -> None:
    """Runs in a fresh process: the query layer's reads, timed, then this process's RSS."""
    from store_scale_reads import run_reads

    print(json.dumps(run_reads(Path(path), now)))


def reads(path: Path, now: float) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--reader", str(path), "--now", repr(now)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), str(HERE)])},
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def current_report(path: Path) -> dict[str, float | None]:
    """``claude-sidecar report`` (24 h) as a person runs it, in a fresh process: wall-clock seconds, and
    the CPU seconds of that process (user + system), which a loaded machine does not inflate."""
    code = "import sys; from sidecar.cli import main; sys.exit(main(sys.argv[1:]))"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    try:
        subprocess.run(
            [sys.executable, "-c", code, "report", "--store", f"sqlite:///{path}"],
            check=True,
            capture_output=True,
            timeout=600,
            env={**os.environ, "PYTHONPATH": str(HERE.parent)},
        )
    except subprocess.TimeoutExpired:
        return {"report_current_s": None, "report_current_cpu_s": None}
    took = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"report_current_s": took, "report_current_cpu_s": cpu}


def purge_day(path: Path, now: float) -> dict[str, float]:
    """Delete the oldest day while a writer records 32-event batches; the writer's worst wait."""
    store = SQLiteStore(path, retention_days=0)
    store.open()
    latencies: list[float] = []
    stop = threading.Event()
    template = next(history(1, now, seed=3))

    def writer() -> None:
        k = 0
        while not stop.is_set():
            batch = [
                replace(template, event_id=f"live-{k}-{j}", started_at=now + k * 0.01) for j in range(32)
            ]
            t = time.perf_counter()
            store.write_events(batch)
            latencies.append(time.perf_counter() - t)
            k += 1
            time.sleep(0.005)

    thread = threading.Thread(target=writer)
    thread.start()
    start = time.perf_counter()
    deleted = store.purge(now - 6 * DAY)
    took = time.perf_counter() - start
    stop.set()
    thread.join()
    store.close()
    latencies.sort()
    return {
        "purge_day_events": deleted,
        "purge_day_s": took,
        "purge_writer_batches": len(latencies),
        "purge_writer_max_wait_s": latencies[-1] if latencies else 0.0,
        "purge_writer_p99_wait_s": latencies[int(0.99 * (len(latencies) - 1))] if latencies else 0.0,
    }


_ADD_COLUMN = re.compile(r"ALTER TABLE (\w+) ADD COLUMN (\w+)", re.IGNORECASE)


def migration(path: Path) -> dict[str, float]:
    """Take the file back to schema 1 (events only) and time the start that rolls it up again: what the
    first start after the upgrade costs on an existing history."""
    conn = sqlite3.connect(path, isolation_level=None)
    keep = {"events", "schema_migrations"}
    objects = conn.execute("SELECT type, name FROM sqlite_master WHERE sql IS NOT NULL").fetchall()
    base = {"events_started_at", "events_session_started_at", "events_app_started_at"}
    for kind, name in objects:
        if (
            kind == "trigger"
            or (kind == "index" and name not in base)
            or (kind == "table" and name not in keep)
        ):
            conn.execute(f"DROP {kind.upper()} IF EXISTS {name}")
    for version, statements in MIGRATIONS:  # columns later migrations added go too, to be added again
        for statement in statements if version > 1 else ():
            added = _ADD_COLUMN.search(statement)
            if added is not None and added[1] in keep:  # the dropped tables' columns went with them
                conn.execute(f"ALTER TABLE {added[1]} DROP COLUMN {added[2]}")
    conn.execute("DELETE FROM schema_migrations WHERE version > 1")
    (events,) = conn.execute("SELECT count(*) FROM events").fetchone()
    conn.close()
    store = SQLiteStore(path, retention_days=0)
    start = time.perf_counter()
    store.open()
    took = time.perf_counter() - start
    store.close()
    return {"migration_events": events, "migration_s": took}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=2_000_000)
    p.add_argument("--db", type=Path, help="the store file (default: a temporary one)")
    p.add_argument("--reuse", action="store_true", help="use --db as it is if it exists")
    p.add_argument("--no-serve", action="store_true", help="skip the serve and report command runs")
    p.add_argument("--fill-only", action="store_true", help="fill --db (kept for --reuse) and stop")
    p.add_argument("--out", type=Path, default=HERE / "results" / "store_scale.md")
    p.add_argument("--reader", help=argparse.SUPPRESS)
    p.add_argument("--now", type=float, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.reader:
        _reader(args.reader, args.now)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = args.db or Path(tmp) / "events.db"
        now_file = path.with_suffix(".now")
        figures: dict[str, Any] = {}
        if args.reuse and path.exists() and now_file.exists():
            now = float(now_file.read_text())
            figures["events"] = args.events
        else:
            path.unlink(missing_ok=True)
            now = time.time()
            figures.update(fill(path, args.events, now))
            now_file.write_text(repr(now))
        print(json.dumps(figures), flush=True)
        if args.fill_only:
            return
        figures.update(reads(path, now))
        print(json.dumps(figures), flush=True)
        if not args.no_serve:
            figures.update(serve_ready(path))
            figures.update(serve_ready(None))
            figures.update(current_report(path))
        figures.update(write_cost(now, min(100_000, args.events), min(40_000, max(1000, args.events // 5))))
        figures["db_mb"] = path.stat().st_size / 1e6
        figures.update(purge_day(path, now))  # last: it changes the file, so a later --reuse refills
        now_file.unlink(missing_ok=True)
        figures.update(migration(path))
        print(json.dumps(figures), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(markdown(figures))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
