"""``claude-sidecar report`` and ``claude-sidecar check``: each command's steps, in order.

The numbers come from :mod:`sidecar.core.report`; arguments and environment are read by ``args``, the
store's query layer by ``source`` and ``reading``, the baseline file by ``baseline``, and ``formatting``
writes the text. ``connect`` replaces the ClickHouse client factory (tests pass an in-process engine).
Exit codes: 0 done / healthy, 1 ``check`` found traffic over a ceiling or regressed, 2 usage error
(bad flag, unreadable baseline, missing or unsupported store), always with a one-line message.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence

from sidecar.core.durations import format_duration
from sidecar.core.report import DEFAULT_TOLERANCE, build_report, evaluate
from sidecar.report.args import UsageError, check_parser, parse_args, report_parser, store_and_idle
from sidecar.report.baseline import load_baseline, save_baseline
from sidecar.report.formatting import format_check, format_report
from sidecar.report.reading import check_measurements, report_parts
from sidecar.report.source import opened_reads
from sidecar.store.clickhouse import ClickHouseClient

Connect = Callable[[], ClickHouseClient]


def _fail(command: str, message: str) -> int:
    print(f"claude-sidecar {command}: {message}", file=sys.stderr)
    return 2


def report_main(
    argv: Sequence[str],
    *,
    now: float | None = None,
    env: Mapping[str, str] | None = None,
    connect: Connect | None = None,
) -> int:
    """Run ``claude-sidecar report``; returns the exit code (0, or 2 on a usage error)."""
    env = os.environ if env is None else env
    try:
        args = parse_args(report_parser(), argv)
        if isinstance(args, int):
            return args
        if args.limit < 0:
            raise UsageError("--limit must be >= 0")
        url, idle = store_and_idle(args, env)
        now = time.time() if now is None else now
        with opened_reads(url, connect) as reads:
            parts = report_parts(reads, now=now, window_s=args.window, idle_timeout_s=idle, limit=args.limit)
    except UsageError as exc:
        return _fail("report", str(exc))
    doc = build_report(parts, now=now, window_s=args.window)
    print(json.dumps(doc, indent=2) if args.json else format_report(doc, store=url))
    return 0


def check_main(
    argv: Sequence[str],
    *,
    now: float | None = None,
    env: Mapping[str, str] | None = None,
    connect: Connect | None = None,
) -> int:
    """Run ``claude-sidecar check``; returns 0 healthy, 1 over a ceiling or regressed, 2 usage error."""
    env = os.environ if env is None else env
    try:
        args = parse_args(check_parser(), argv)
        if isinstance(args, int):
            return args
        if args.tolerance is not None and args.baseline is None:
            raise UsageError("--tolerance needs --baseline")
        baseline = load_baseline(args.baseline) if args.baseline else None
        url, idle = store_and_idle(args, env)
        now = time.time() if now is None else now
        with opened_reads(url, connect) as reads:
            m = check_measurements(reads, now=now, window_s=args.window, idle_timeout_s=idle)
        result = evaluate(
            m,
            p95_latency_ms=args.p95_latency_ms,
            p95_session_cost_usd=args.p95_session_cost_usd,
            baseline=baseline,
            tolerance=DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance,
            idle_timeout_s=idle,
            require_data=args.require_data,
        )
        saved = save_baseline(args.save_baseline, result) if args.save_baseline else None
    except UsageError as exc:
        return _fail("check", str(exc))
    if args.json:
        doc = {"ok": result.ok, "findings": result.findings, "notes": result.notes}
        print(json.dumps({**doc, "measurements": result.measurements}, indent=2))
    else:
        print(format_check(result, window=format_duration(args.window)))
    if saved:
        print(f"claude-sidecar: {saved}", file=sys.stderr)
    return 0 if result.ok else 1
