"""``claude-sidecar report`` and ``claude-sidecar check``: argument handling, store opening, text output.

The numbers come from :mod:`sidecar.core.report`; this module reads the store, the clock and the two
environment variables these commands honour (``SIDECAR_STORE``, ``SIDECAR_SESSION_IDLE_TIMEOUT``).
Exit codes: 0 done / healthy, 1 ``check`` found traffic over a ceiling or regressed, 2 usage error
(bad flag, unreadable baseline, missing or unsupported store), always with a one-line message.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

from sidecar.core.durations import parse_duration
from sidecar.core.events import CallEvent
from sidecar.core.report import (
    DEFAULT_TOLERANCE,
    Baseline,
    CheckResult,
    build_report,
    evaluate,
    format_duration,
    format_usd,
    parse_baseline,
)
from sidecar.infra.sqlite import parse_sqlite_url
from sidecar.store.base import EventStore
from sidecar.store.clickhouse import ClickHouseStoreError
from sidecar.store.factory import is_clickhouse_url, open_event_store, redact_url
from sidecar.store.sqlite import SQLiteStore

DEFAULT_STORE = "sqlite:///sidecar-data/events.db"
DEFAULT_IDLE_TIMEOUT_S = 900.0
# ``check`` reads this much before its window so that sessions straddling the window start are costed whole.
SESSION_LOOKBACK_S = 86400.0


class UsageError(Exception):
    """A problem with how the command was called; the message is shown as one line, exit code 2."""


def open_store(url: str) -> EventStore:
    """Open the event store named by ``url`` for reading; ``UsageError`` when it cannot be used."""
    if is_clickhouse_url(url):
        try:
            return open_event_store(url).analytics
        except (ClickHouseStoreError, ValueError) as exc:
            raise UsageError(f"cannot open ClickHouse store {redact_url(url)}: {exc}") from None
    if not url.startswith("sqlite:"):
        scheme = url.split(":", 1)[0] if ":" in url else url
        expected = "expected sqlite:///path or clickhouse://"
        raise UsageError(f"unknown store scheme {scheme!r} in {redact_url(url)!r} ({expected})")
    try:
        path = parse_sqlite_url(url)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    # Opening a missing file would create an empty store in the current directory: say so instead.
    if not path.is_file():
        raise UsageError(f"no event store at {path} (pass --store or set SIDECAR_STORE)")
    store = SQLiteStore(path)
    try:
        store.open()
    except (sqlite3.Error, RuntimeError, OSError) as exc:
        raise UsageError(f"cannot open event store {path}: {exc}") from None
    return store


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so errors become one-line messages and exit code 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _duration_arg(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _nonneg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number >= 0: {text!r}")
    return value


def _common(parser: argparse.ArgumentParser, window: str) -> None:
    parser.add_argument("--store", help=f"event store URL (default: $SIDECAR_STORE or {DEFAULT_STORE})")
    parser.add_argument(
        "--window",
        type=_duration_arg,
        default=parse_duration(window),
        help=f"e.g. 30m, 1h, 7d (default {window})",
    )
    parser.add_argument(
        "--idle-timeout",
        type=_duration_arg,
        help="a session closes after this long idle (default: $SIDECAR_SESSION_IDLE_TIMEOUT or 15m)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")


def report_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="claude-sidecar report", description="Per-session spend and latency tables from the store."
    )
    _common(p, "24h")
    p.add_argument("--limit", type=int, default=10, help="top sessions to show (default 10)")
    return p


def check_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="claude-sidecar check",
        description="Exit 1 when recorded traffic is over a ceiling or regressed against a baseline, "
        "0 when healthy, 2 on a usage error.",
    )
    _common(p, "1h")
    p.add_argument("--p95-latency-ms", type=_nonneg, help="ceiling for each model's p95 total duration")
    p.add_argument("--p95-session-cost-usd", type=_nonneg, help="ceiling for the p95 cost of closed sessions")
    p.add_argument("--baseline", metavar="FILE", help="fail when a value is above this saved baseline")
    p.add_argument(
        "--tolerance", type=_nonneg, help=f"allowed rise over the baseline (default {DEFAULT_TOLERANCE})"
    )
    p.add_argument(
        "--save-baseline", metavar="FILE", help="save this run's measurements (when the check passes)"
    )
    p.add_argument(
        "--require-data", action="store_true", help="fail when the window holds no successful model call"
    )
    return p


def _settings(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[str, float]:
    url = args.store or env.get("SIDECAR_STORE") or DEFAULT_STORE
    idle = args.idle_timeout
    if idle is None:
        raw = env.get("SIDECAR_SESSION_IDLE_TIMEOUT", "")
        try:
            idle = parse_duration(raw) if raw else DEFAULT_IDLE_TIMEOUT_S
        except ValueError:
            raise UsageError(f"SIDECAR_SESSION_IDLE_TIMEOUT: {raw!r} is not a duration") from None
    if args.window <= 0:
        raise UsageError("--window must be longer than 0")
    return url, float(idle)


def _read(store: EventStore, since: float) -> list[CallEvent]:
    try:
        return store.events(since=since)
    except sqlite3.Error as exc:
        raise UsageError(f"cannot read the event store: {exc}") from None
    finally:
        store.close()


Row = Mapping[str, Any]
Column = tuple[str, Callable[[str, Row], str]]


def _secs(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _field(key: str, fmt: Callable[[Any], str] = str) -> Callable[[str, Row], str]:
    return lambda _name, row: fmt(row[key])


def _name(name: str, _row: Row) -> str:
    return name


_SESSION_COLUMNS: tuple[Column, ...] = (
    ("SESSION", _name),
    ("APP", _field("app")),
    ("CALLS", _field("model_calls")),
    ("TOOLS", _field("tool_calls")),
    (
        "INPUT TOK",
        lambda _n, s: str(
            s["input_tokens"] + s["cache_read_input_tokens"] + s["cache_creation_input_tokens"]
        ),
    ),
    ("OUTPUT TOK", _field("output_tokens")),
    ("COST", _field("cost_usd", format_usd)),
    ("MODEL TIME", _field("model_time_s", _secs)),
    ("TOOL TIME", _field("tool_time_s", _secs)),
    ("LAST SEEN", _field("last_seen_at")),
    ("STATE", lambda _n, s: "open" if s["open"] else "closed"),
)
_MODEL_COLUMNS: tuple[Column, ...] = (
    ("MODEL", _name),
    ("CALLS", _field("model_calls")),
    ("OK", _field("ok_calls")),
    ("P50", _field("duration_p50_s", _secs)),
    ("P95", _field("duration_p95_s", _secs)),
    ("TTFT P50", _field("ttft_p50_s", _secs)),
    ("TTFT P95", _field("ttft_p95_s", _secs)),
    ("COST", _field("cost_usd", format_usd)),
)
_CACHE_COLUMNS: tuple[Column, ...] = (
    ("MODEL", _name),
    ("UNCACHED IN", _field("input_tokens")),
    ("CACHE READ", _field("cache_read_input_tokens")),
    ("CACHE WRITE", _field("cache_creation_input_tokens")),
    ("HIT RATIO", _field("cache_hit_ratio", _pct)),
    ("SAVED", _field("cache_savings_usd", format_usd)),
)
_TOOL_COLUMNS: tuple[Column, ...] = (
    ("TOOL", _name),
    ("CALLS", _field("count")),
    ("MEASURED", _field("measured")),
    ("ERRORS", _field("errors")),
    ("P50", _field("p50_s", _secs)),
    ("P95", _field("p95_s", _secs)),
    ("TOTAL", _field("total_s", _secs)),
)


def _table(title: str, columns: Sequence[Column], rows: Sequence[tuple[str, Row]]) -> str:
    """An aligned text table: first column left-aligned, the others right-aligned."""
    if not rows:
        return f"{title}\n  (none)"
    cells = [[h for h, _ in columns]] + [[fmt(name, row) for _, fmt in columns] for name, row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    out = [title]
    for r in cells:
        parts = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        out.append(("  " + "  ".join(parts)).rstrip())
    return "\n".join(out)


def format_report(doc: Mapping[str, Any], *, store: str) -> str:
    """The human ``report``: totals, then top sessions, latency per model, cache per model, tools."""
    t, w = doc["totals"], doc["window"]
    unpriced = f" ({t['unpriced_calls']} unpriced)" if t["unpriced_calls"] else ""
    span = format_duration(w["window_s"])
    head = (
        f"claude-sidecar report: last {span} ({w['since']} to {w['until']}), {store}\n"
        f"{t['model_calls']} model calls ({t['error_calls']} not successful), {t['sessions']} sessions, "
        f"{t['tool_calls']} tool calls, cost {format_usd(t['cost_usd'])}{unpriced}, "
        f"cache hit {_pct(t['cache_hit_ratio'])}, saved {format_usd(t['cache_savings_usd'])}, "
        f"model time {_secs(t['model_time_s'])}, tool time {_secs(t['tool_time_s'])}"
    )
    sessions = [(s["session_id"], s) for s in doc["top_sessions"]]
    models = list(doc["models"].items())
    sections = [
        head,
        _table("Top sessions by cost", _SESSION_COLUMNS, sessions),
        _table("Latency per model (successful calls)", _MODEL_COLUMNS, models),
        _table("Cache per model", _CACHE_COLUMNS, models),
        _table("Tool latency per tool", _TOOL_COLUMNS, list(doc["tools"].items())),
    ]
    return "\n\n".join(sections)


def format_check(result: CheckResult, *, window: str) -> str:
    """``check`` verdict, the findings, the notes, and what was measured."""
    m = result.measurements
    lines = [f"check {'OK' if result.ok else 'FAILED'} (last {window})"]
    lines += [f"  - {f}" for f in result.findings]
    lines += [f"  note: {n}" for n in result.notes]
    for model, ms in sorted(m["duration_p95_ms"].items()):
        lines.append(f"  measured: p95 latency of {model} {ms:.0f} ms ({m['duration_samples'][model]} calls)")
    if m["session_cost_p95_usd"] is not None:
        cost = format_usd(m["session_cost_p95_usd"])
        lines.append(f"  measured: p95 session cost {cost} ({m['closed_sessions']} closed sessions)")
    return "\n".join(lines)


def _fail(command: str, message: str) -> int:
    print(f"claude-sidecar {command}: {message}", file=sys.stderr)
    return 2


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace | int:
    """Parsed arguments, or the exit code of ``--help`` (argparse exits after printing it)."""
    try:
        return parser.parse_args(list(argv))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0


def report_main(
    argv: Sequence[str], *, now: float | None = None, env: Mapping[str, str] | None = None
) -> int:
    """Run ``claude-sidecar report``; returns the exit code (0, or 2 on a usage error)."""
    env = os.environ if env is None else env
    try:
        args = _parse(report_parser(), argv)
        if isinstance(args, int):
            return args
        if args.limit < 0:
            raise UsageError("--limit must be >= 0")
        url, idle = _settings(args, env)
        now = time.time() if now is None else now
        events = _read(open_store(url), now - args.window)
    except UsageError as exc:
        return _fail("report", str(exc))
    doc = build_report(events, now=now, window_s=args.window, idle_timeout_s=idle, limit=args.limit)
    print(json.dumps(doc, indent=2) if args.json else format_report(doc, store=url))
    return 0


def _load_baseline(path: str) -> Baseline:
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except OSError as exc:
        raise UsageError(f"--baseline: cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise UsageError(f"--baseline: {path} is not JSON: {exc}") from None
    try:
        return parse_baseline(doc)
    except ValueError as exc:
        raise UsageError(f"--baseline: {path}: {exc}") from None


def _save_baseline(path: str, result: CheckResult) -> str:
    """Write the measurements unless the run failed or saw nothing; return what happened, for stderr."""
    if not result.ok:
        return f"baseline not saved to {path}: the check failed"
    if not result.measurements["duration_p95_ms"]:
        return f"baseline not saved to {path}: no successful model calls in the window"
    try:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(result.measurements, f, indent=2, sort_keys=True)
            f.write("\n")
    except OSError as exc:
        raise UsageError(f"--save-baseline: cannot write {path}: {exc.strerror}") from None
    return f"baseline saved to {path}"


def check_main(argv: Sequence[str], *, now: float | None = None, env: Mapping[str, str] | None = None) -> int:
    """Run ``claude-sidecar check``; returns 0 healthy, 1 over a ceiling or regressed, 2 usage error."""
    env = os.environ if env is None else env
    try:
        args = _parse(check_parser(), argv)
        if isinstance(args, int):
            return args
        if args.tolerance is not None and args.baseline is None:
            raise UsageError("--tolerance needs --baseline")
        baseline = _load_baseline(args.baseline) if args.baseline else None
        url, idle = _settings(args, env)
        now = time.time() if now is None else now
        events = _read(open_store(url), now - args.window - SESSION_LOOKBACK_S)
        result = evaluate(
            events,
            now=now,
            window_s=args.window,
            p95_latency_ms=args.p95_latency_ms,
            p95_session_cost_usd=args.p95_session_cost_usd,
            baseline=baseline,
            tolerance=DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance,
            idle_timeout_s=idle,
            require_data=args.require_data,
        )
        saved = _save_baseline(args.save_baseline, result) if args.save_baseline else None
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
