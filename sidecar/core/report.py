"""What ``claude-sidecar report`` and ``check`` compute (SPEC R-AC-6), pure over a list of events.

Definitions (shared with :mod:`sidecar.core.sessions`: model calls, nearest-rank percentiles):

* The window is ``now - window_s <= started_at <= now``.
* Latency (``duration_s``, ``ttft_s``) percentiles per model use *successful* model calls only: HTTP 2xx
  relayed in full (outcome ``ok``); errors and broken streams would mix two distributions.
* The ``check`` session-cost p95 is taken over *closed* sessions whose last call ended inside the window
  (closed = idle for more than ``idle_timeout_s`` at ``now``). A session's cost sums every event given for
  it, so callers pass events from a little before the window to catch sessions that straddle its start.
* No successful model call in the window is *not* a failure (a quiet hour is healthy): ``ok`` stays true
  and a finding says there was nothing to check, unless ``require_data`` asks for data.
* A baseline regression is a measured value more than ``tolerance`` (0.10 = 10 %) above the baseline's
  value for the same key (model for latency); keys measured on only one side are skipped with a note.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sidecar.core.cache_report import cache_miss_section
from sidecar.core.durations import format_duration
from sidecar.core.events import CACHE_HIT, OK, CallEvent
from sidecar.core.money import format_usd
from sidecar.core.sessions import (
    cache_hit_ratio,
    group_sessions,
    is_model_call,
    list_sessions,
    model_name,
    percentile,
    session_summary,
    tool_stats,
)
from sidecar.core.timestamps import iso_utc

BASELINE_FORMAT = "claude-sidecar-baseline/1"
DEFAULT_TOLERANCE = 0.10


def in_window(events: Sequence[CallEvent], now: float, window_s: float) -> list[CallEvent]:
    since = now - window_s
    return [e for e in events if since <= e.started_at <= now]


def is_success(event: CallEvent) -> bool:
    return is_model_call(event) and 200 <= event.status < 300 and event.outcome == OK


def _token_sums(model_calls: Sequence[CallEvent]) -> dict[str, Any]:
    inp = sum(e.usage.input_tokens for e in model_calls)
    read = sum(e.usage.cache_read_input_tokens for e in model_calls)
    write = sum(e.usage.cache_creation_input_tokens for e in model_calls)
    return {
        "model_calls": len(model_calls),
        "error_calls": sum(1 for e in model_calls if not is_success(e)),
        "input_tokens": inp,
        "output_tokens": sum(e.usage.output_tokens for e in model_calls),
        "cache_read_input_tokens": read,
        "cache_creation_input_tokens": write,
        "cost_usd": math.fsum(e.cost_usd for e in model_calls if e.cost_usd is not None),
        "unpriced_calls": sum(1 for e in model_calls if e.cost_usd is None),
        "cache_hit_ratio": cache_hit_ratio(inp, read, write),
        "cache_savings_usd": math.fsum(e.cache_savings_usd for e in model_calls),
    }


def model_table(events: Sequence[CallEvent]) -> dict[str, dict[str, Any]]:
    """Per model (canonical id, else requested): token/cost sums, cache hit ratio, and p50/p95 of
    ``duration_s`` and ``ttft_s`` over successful calls (``ok_calls`` of them)."""
    by_model: dict[str, list[CallEvent]] = defaultdict(list)
    for e in events:
        if is_model_call(e):
            by_model[model_name(e)].append(e)
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(by_model):
        calls = by_model[name]
        ok = [e for e in calls if is_success(e)]
        durations = [e.duration_s for e in ok]
        ttfts = [e.ttft_s for e in ok if e.ttft_s is not None]
        row = _token_sums(calls)
        row.update(
            ok_calls=len(ok),
            duration_p50_s=percentile(durations, 50),
            duration_p95_s=percentile(durations, 95),
            ttft_p50_s=percentile(ttfts, 50),
            ttft_p95_s=percentile(ttfts, 95),
        )
        out[name] = row
    return out


def response_cache_totals(events: Sequence[CallEvent]) -> dict[str, Any]:
    """Calls answered from the response cache (no model call) and what their answers had cost."""
    hits = [e for e in events if e.outcome == CACHE_HIT]
    return {"hits": len(hits), "savings_usd": math.fsum(e.response_cache_savings_usd for e in hits)}


def build_report(
    events: Sequence[CallEvent], *, now: float, window_s: float, idle_timeout_s: float, limit: int
) -> dict[str, Any]:
    """The ``report`` document for the window: totals, top sessions by cost, models, tools, cache misses.

    Sessions are aggregated from the window's events only (a session that began earlier shows its
    in-window part).
    """
    events = in_window(events, now, window_s)
    model_calls = [e for e in events if is_model_call(e)]
    totals = _token_sums(model_calls)
    totals.update(
        sessions=len(group_sessions(events)),
        tool_calls=sum(len(e.tool_uses) for e in model_calls),
        model_time_s=math.fsum(e.duration_s for e in model_calls),
        tool_time_s=math.fsum(r.latency_s for e in events for r in e.tool_results),
    )
    return {
        "window": {"since": iso_utc(now - window_s), "until": iso_utc(now), "window_s": window_s},
        "totals": totals,
        "response_cache": response_cache_totals(events),
        "top_sessions": list_sessions(
            events, now=now, idle_timeout_s=idle_timeout_s, limit=limit, order="cost"
        ),
        "models": model_table(events),
        "tools": tool_stats(events),
        "cache_misses": cache_miss_section(events, limit=limit),
    }


def closed_session_costs(
    events: Sequence[CallEvent], *, now: float, window_s: float, idle_timeout_s: float
) -> tuple[list[float], int]:
    """Costs of the closed sessions whose last call ended in the window, and how many are still open."""
    costs: list[float] = []
    still_open = 0
    for evs in group_sessions(events).values():
        s = session_summary(evs, now=now, idle_timeout_s=idle_timeout_s, with_calls=False)
        if not now - window_s <= s["last_seen_at_ts"] <= now:
            continue
        if s["open"]:
            still_open += 1
        else:
            costs.append(s["cost_usd"])
    return costs, still_open


def measure(
    events: Sequence[CallEvent], *, now: float, window_s: float, idle_timeout_s: float
) -> dict[str, Any]:
    """What ``check`` compares, in the shape saved as a baseline JSON file."""
    latency: dict[str, float] = {}
    samples: dict[str, int] = {}
    for name, row in model_table(in_window(events, now, window_s)).items():
        if row["duration_p95_s"] is not None:
            latency[name] = row["duration_p95_s"] * 1000.0
            samples[name] = row["ok_calls"]
    costs, still_open = closed_session_costs(
        events, now=now, window_s=window_s, idle_timeout_s=idle_timeout_s
    )
    return {
        "format": BASELINE_FORMAT,
        "measured_at": iso_utc(now),
        "window_s": window_s,
        "duration_p95_ms": latency,
        "duration_samples": samples,
        "session_cost_p95_usd": percentile(costs, 95),
        "closed_sessions": len(costs),
        "open_sessions": still_open,
    }


@dataclass(frozen=True, slots=True)
class Baseline:
    duration_p95_ms: Mapping[str, float]
    session_cost_p95_usd: float | None


def _number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{where} must be a finite number, not {value!r}")
    if value < 0:
        raise ValueError(f"{where} must not be negative")
    return float(value)


def parse_baseline(doc: object) -> Baseline:
    """Validate a baseline document (as written by ``--save-baseline``); ``ValueError`` says what is wrong."""
    if not isinstance(doc, dict) or doc.get("format") != BASELINE_FORMAT:
        raise ValueError(f'not a baseline file (expected "format": "{BASELINE_FORMAT}")')
    latency = doc.get("duration_p95_ms", {})
    if not isinstance(latency, dict):
        raise ValueError("duration_p95_ms must be an object keyed by model")
    parsed = {str(k): _number(v, f"duration_p95_ms[{k!r}]") for k, v in latency.items()}
    cost = doc.get("session_cost_p95_usd")
    return Baseline(parsed, None if cost is None else _number(cost, "session_cost_p95_usd"))


@dataclass(frozen=True, slots=True)
class CheckResult:
    """``ok``: nothing over a ceiling or regressed (and data present when required). ``findings``: the
    sentences to show, violations first (also the no-data sentence); ``notes``: context that is no
    failure; ``measurements``: suitable for ``--save-baseline``."""

    ok: bool
    findings: list[str]
    notes: list[str] = field(default_factory=list)
    measurements: dict[str, Any] = field(default_factory=dict)


def _regressions(
    m: Mapping[str, Any], base: Baseline, tolerance: float, span: str
) -> tuple[list[str], list[str]]:
    failures: list[str] = []
    notes: list[str] = []
    limit_pct = f"tolerance {tolerance:.0%}"
    for model, ref in sorted(base.duration_p95_ms.items()):
        now_ms = m["duration_p95_ms"].get(model)
        if now_ms is None:
            notes.append(f"baseline model {model} had no successful calls over the last {span}; not compared")
        elif now_ms > ref * (1.0 + tolerance):
            rise = f"+{now_ms / ref - 1:.0%}" if ref > 0 else "up from 0"
            failures.append(
                f"p95 latency of {model} regressed to {now_ms:.0f} ms over the last {span} from a baseline "
                f"of {ref:.0f} ms ({rise}, {limit_pct}; {m['duration_samples'][model]} calls)"
            )
    cost, ref_cost = m["session_cost_p95_usd"], base.session_cost_p95_usd
    if ref_cost is not None and cost is not None and cost > ref_cost * (1.0 + tolerance):
        rise = f"+{cost / ref_cost - 1:.0%}" if ref_cost > 0 else "up from 0"
        failures.append(
            f"p95 session cost regressed to {format_usd(cost)} over the last {span} from a baseline of "
            f"{format_usd(ref_cost)} ({rise}, {limit_pct}; {m['closed_sessions']} closed sessions)"
        )
    return failures, notes


def evaluate(
    events: Sequence[CallEvent],
    *,
    now: float,
    window_s: float,
    p95_latency_ms: float | None,
    p95_session_cost_usd: float | None,
    baseline: Baseline | None,
    tolerance: float = DEFAULT_TOLERANCE,
    idle_timeout_s: float = 900.0,
    require_data: bool = False,
) -> CheckResult:
    """The ``check`` gate over the window (see the module docstring for the exact semantics)."""
    m = measure(events, now=now, window_s=window_s, idle_timeout_s=idle_timeout_s)
    span = format_duration(window_s)
    failures: list[str] = []
    notes: list[str] = []
    if p95_latency_ms is not None:
        for model, ms in sorted(m["duration_p95_ms"].items()):
            if ms > p95_latency_ms:
                failures.append(
                    f"p95 latency of {model} is {ms:.0f} ms over the last {span}, above the ceiling of "
                    f"{p95_latency_ms:g} ms ({m['duration_samples'][model]} calls)"
                )
    cost = m["session_cost_p95_usd"]
    if p95_session_cost_usd is not None and cost is not None and cost > p95_session_cost_usd:
        failures.append(
            f"p95 session cost is {format_usd(cost)} over the {m['closed_sessions']} sessions closed in "
            f"the last {span}, above the ceiling of {format_usd(p95_session_cost_usd)}"
        )
    if baseline is not None:
        more_failures, more_notes = _regressions(m, baseline, tolerance, span)
        failures += more_failures
        notes += more_notes
    if cost is None and (p95_session_cost_usd is not None or baseline is not None):
        notes.append(
            f"no closed session ended in the last {span} ({m['open_sessions']} still open; a session "
            f"closes after {format_duration(idle_timeout_s)} idle): session cost not checked"
        )
    findings = list(failures)
    if not m["duration_p95_ms"]:
        findings.append(f"no successful model calls recorded over the last {span}: nothing to check")
        if require_data:
            failures.append("no data")
    return CheckResult(ok=not failures, findings=findings, notes=notes, measurements=m)
