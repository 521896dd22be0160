"""What ``claude-sidecar report`` and ``check`` compute (SPEC R-AC-6), pure over the store's aggregates.

The numbers come from the stores' query layer (:mod:`sidecar.store.queries`): a ``summary`` of the window
grouped by model, the top sessions by cost, per-tool statistics, the cache misses and per-session totals.
This module shapes them into the report document and decides ``check``. Definitions (shared with
:mod:`sidecar.core.sessions`: model calls, nearest-rank percentiles):

* The window is ``now - window_s <= started_at <= now``.
* Latency (``duration_s``, ``ttft_s``) percentiles per model use *successful* model calls only: HTTP 2xx
  relayed in full (outcome ``ok``); errors and broken streams would mix two distributions. They are read
  from the stores' latency histograms (:mod:`sidecar.store.latency_buckets`): each percentile is the upper
  edge of the 1/16-octave bucket holding the nearest-rank value, never below it and at most 4.4 % above.
  Tool latency percentiles likewise.
* Top sessions are whole sessions (their totals since their first call) seen in the window.
* The ``check`` session-cost p95 is exact, over *closed* sessions whose last call ended inside the window
  (closed = idle for more than ``idle_timeout_s`` at ``now``); a session's cost is the whole session's.
* No successful model call in the window is *not* a failure (a quiet hour is healthy): ``ok`` stays true
  and a finding says there was nothing to check, unless ``require_data`` asks for data.
* A baseline regression is a measured value more than ``tolerance`` (0.10 = 10 %) above the baseline's
  value for the same key (model for latency); keys measured on only one side are skipped with a note.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sidecar.core.durations import format_duration
from sidecar.core.events import OK, CallEvent
from sidecar.core.money import format_usd
from sidecar.core.sessions import is_model_call, percentile
from sidecar.core.timestamps import iso_utc

BASELINE_FORMAT = "claude-sidecar-baseline/1"
DEFAULT_TOLERANCE = 0.10
# What the report keeps of a summary's totals and of its rows per model (the stores' answers say more).
_SUMS = (
    "model_calls", "error_calls", "input_tokens", "output_tokens", "cache_read_input_tokens",
    "cache_creation_input_tokens", "cost_usd", "unpriced_calls", "cache_hit_ratio", "cache_savings_usd",
)  # fmt: skip
TOTAL_KEYS = (*_SUMS, "sessions", "tool_calls", "model_time_s", "tool_time_s")
MODEL_KEYS = (*_SUMS, "ok_calls", "duration_p50_s", "duration_p95_s", "ttft_p50_s", "ttft_p95_s")


def is_success(event: CallEvent) -> bool:
    return is_model_call(event) and 200 <= event.status < 300 and event.outcome == OK


def model_table(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per model with model calls (canonical id, else requested, else ``unknown``), from the rows of a
    summary grouped by model: token/cost sums, cache hit ratio, latency percentiles, ``ok_calls``."""
    picked = {str(r["key"]): {k: r[k] for k in MODEL_KEYS} for r in rows if r["model_calls"]}
    return dict(sorted(picked.items()))


@dataclass(frozen=True, slots=True)
class ReportParts:
    """What the store answered for a ``report`` window: ``summary`` grouped by model; ``top_sessions``
    (session objects, most expensive first); ``tools`` (per-tool statistics); ``response_cache`` (hits
    and what their answers had cost); ``cache_misses`` (see :mod:`sidecar.core.cache_report`)."""

    summary: Mapping[str, Any]
    top_sessions: Sequence[Mapping[str, Any]]
    tools: Mapping[str, Mapping[str, Any]]
    response_cache: tuple[int, float]
    cache_misses: Mapping[str, Any]


def build_report(parts: ReportParts, *, now: float, window_s: float) -> dict[str, Any]:
    """The ``report`` document for the window: totals, top sessions by cost, models, tools, cache misses."""
    totals = {k: parts.summary["totals"][k] for k in TOTAL_KEYS}
    hits, saved = parts.response_cache
    return {
        "window": {"since": iso_utc(now - window_s), "until": iso_utc(now), "window_s": window_s},
        "totals": totals,
        "response_cache": {"hits": hits, "savings_usd": saved},
        "top_sessions": list(parts.top_sessions),
        "models": model_table(parts.summary["rows"]),
        "tools": dict(parts.tools),
        "cache_misses": dict(parts.cache_misses),
    }


def measure(
    models: Mapping[str, Mapping[str, Any]],
    sessions: Iterable[tuple[float, float]],
    *,
    now: float,
    window_s: float,
    idle_timeout_s: float,
) -> dict[str, Any]:
    """What ``check`` compares, in the shape saved as a baseline JSON file. ``models``: the window's
    :func:`model_table`; ``sessions``: ``(last_seen, cost_usd)`` of the sessions last seen since the
    window's start (those last seen after ``now`` are left out)."""
    latency: dict[str, float] = {}
    samples: dict[str, int] = {}
    for name, row in models.items():
        if row["duration_p95_s"] is not None:
            latency[name] = row["duration_p95_s"] * 1000.0
            samples[name] = row["ok_calls"]
    costs: list[float] = []
    still_open = 0
    for last_seen, cost in sessions:
        if not now - window_s <= last_seen <= now:
            continue
        if now - last_seen <= idle_timeout_s:
            still_open += 1
        else:
            costs.append(cost)
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
    m: Mapping[str, Any],
    *,
    p95_latency_ms: float | None,
    p95_session_cost_usd: float | None,
    baseline: Baseline | None,
    tolerance: float = DEFAULT_TOLERANCE,
    idle_timeout_s: float = 900.0,
    require_data: bool = False,
) -> CheckResult:
    """The ``check`` gate over the window of the measurements ``m`` (as :func:`measure` made them; see
    the module docstring for the exact semantics)."""
    span = format_duration(m["window_s"])
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
    return CheckResult(ok=not failures, findings=findings, notes=notes, measurements=dict(m))
