"""The text output of ``report`` and ``check``: aligned tables and one-line findings."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sidecar.core.durations import format_duration
from sidecar.core.money import format_usd
from sidecar.core.report import CheckResult

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
_MISS_COLUMNS: tuple[Column, ...] = (
    ("REASON", _name),
    ("MISSES", _field("misses")),
    ("MISSED TOK", _field("missed_tokens")),
    ("LOST", _field("cost_usd", format_usd)),
)
_MISS_SESSION_COLUMNS: tuple[Column, ...] = (
    ("SESSION", _name),
    ("APP", _field("app")),
    ("MISSES", _field("misses")),
    ("LOST", _field("cost_usd", format_usd)),
    ("MOSTLY", _field("top_reason")),
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
    cached = doc.get("response_cache") or {}
    if cached.get("hits"):
        head += (
            f"\nresponse cache: {cached['hits']} calls answered without a model call, "
            f"saved {format_usd(cached['savings_usd'])}"
        )
    sessions = [(s["session_id"], s) for s in doc["top_sessions"]]
    models = list(doc["models"].items())
    sections = [
        head,
        _table("Top sessions by cost", _SESSION_COLUMNS, sessions),
        _table("Latency per model (successful calls)", _MODEL_COLUMNS, models),
        _table("Cache per model", _CACHE_COLUMNS, models),
        _table("Tool latency per tool", _TOOL_COLUMNS, list(doc["tools"].items())),
        *_cache_miss_tables(doc["cache_misses"]),
    ]
    return "\n\n".join(sections)


def _cache_miss_tables(misses: Mapping[str, Any]) -> list[str]:
    title = f"Cache misses by reason ({misses['misses']} calls, {format_usd(misses['cost_usd'])} lost)"
    sessions = [(s["session_id"], s) for s in misses["worst_sessions"]]
    return [
        _table(title, _MISS_COLUMNS, list(misses["by_reason"].items())),
        _table("Sessions losing most to cache misses", _MISS_SESSION_COLUMNS, sessions),
    ]


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
