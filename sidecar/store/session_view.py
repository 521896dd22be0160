"""Rollup rows and histogram counts → the JSON documents of the read side, the same for every store.

Session objects keep every field of :func:`sidecar.core.sessions.session_summary` (SPEC §13) and add
``events``, ``models``, ``agent_ids``, ``providers``, ``cache_miss_cost_usd`` and ``cache_misses``. The only
difference: a session's totals are the whole session's, not the part inside a time window.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sidecar.core.events import CallEvent
from sidecar.core.sessions import cache_hit_ratio, percentile, session_summary
from sidecar.core.timestamps import iso_utc
from sidecar.store.latency_buckets import DURATION, TTFT, merge_counts, percentile_of_counts

# Per-session sums of the rollup (every store has a column of each name).
SESSION_COUNTS = (
    "events", "model_calls", "error_calls", "retries", "tool_calls", "input_tokens", "output_tokens",
    "cache_read_input_tokens", "cache_creation_input_tokens", "cache_write_5m", "cache_write_1h", "tokens",
    "unpriced_calls", "tool_results", "cache_misses",
)  # fmt: skip
SESSION_AMOUNTS = ("cost_usd", "cache_savings_usd", "cache_miss_cost_usd", "model_time_s", "tool_time_s")
# Sums of a summary group (hourly rollup columns).
SUMMARY_COUNTS = (
    "requests", "model_calls", "ok_calls", "error_calls", "unpriced_calls", "tool_calls", "input_tokens",
    "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens", "cache_write_5m",
    "cache_write_1h", "tool_results", "cache_misses",
)  # fmt: skip
SUMMARY_AMOUNTS = SESSION_AMOUNTS
SUMMARY_FIELDS = SUMMARY_COUNTS + SUMMARY_AMOUNTS
# The stores' ``tool_results`` count, renamed in the answers: a call's ``tool_results`` is a list.
MEASURED = "measured_tool_results"


def tools_by_session(
    rows: Iterable[tuple[str, bool, Sequence[str], Iterable[Sequence[Any]]]],
) -> dict[str, dict[str, dict[str, Any]]]:
    """Per-tool statistics of each session, as :func:`~sidecar.core.sessions.tool_stats` computes them,
    from ``(session_id, is_model_call, tool_uses, tool_results)`` of the session's calls with tool
    blocks (``tool_results``: id, name, latency, is_error). Lean on purpose: a page of long sessions
    has thousands of such calls."""
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    latencies: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    errors: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for sid, model_call, uses, results in rows:
        if model_call:
            for name in uses:
                counts[sid][name] += 1
        for _, name, latency, is_error in results:
            latencies[sid][name].append(float(latency))
            errors[sid][name] += bool(is_error)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for sid in set(counts) | set(latencies):
        c, lat, err = counts.get(sid, {}), latencies.get(sid, {}), errors.get(sid, {})
        out[sid] = {
            name: {
                "count": c.get(name, 0),
                "measured": len(lat.get(name, ())),
                "errors": err.get(name, 0),
                "p50_s": percentile(lat.get(name, ()), 50),
                "p95_s": percentile(lat.get(name, ()), 95),
                "total_s": math.fsum(lat.get(name, ())),
            }
            for name in sorted(set(c) | set(lat))
        }
    return out


def session_json(
    r: Mapping[str, Any], tools: dict[str, dict[str, Any]], *, now: float, idle_timeout_s: float
) -> dict[str, Any]:
    """The §13 session object of a rollup row ``r`` (keys: the rollup's column names, ``models``,
    ``agent_ids`` and ``providers`` as lists)."""
    first, last = float(r["first_seen"]), float(r["last_seen"])
    inp, read = int(r["input_tokens"]), int(r["cache_read_input_tokens"])
    write = int(r["cache_creation_input_tokens"])
    out: dict[str, Any] = {
        "session_id": r["session_id"],
        "session_source": r["session_source"],
        "app": r["app"],
        "started_at": iso_utc(first),
        "started_at_ts": first,
        "last_seen_at": iso_utc(last),
        "last_seen_at_ts": last,
        "duration_s": last - first,
        "open": now - last <= idle_timeout_s,
    }
    out.update({name: int(r[name]) for name in SESSION_COUNTS})
    out.update({name: float(r[name]) for name in SESSION_AMOUNTS})
    out[MEASURED] = out.pop("tool_results")
    out.update(
        cache_hit_ratio=cache_hit_ratio(inp, read, write),
        models=sorted(r["models"]),
        agent_ids=sorted(r["agent_ids"]),
        providers=sorted(r["providers"]),
        tools=tools,
    )
    return out


def calls_json(page: Sequence[CallEvent], *, now: float, idle_timeout_s: float) -> list[dict[str, Any]]:
    """The §13 ``calls`` entries of ``page`` (oldest first), as ``session_summary`` renders them."""
    if not page:
        return []
    calls: list[dict[str, Any]] = session_summary(
        page, now=now, idle_timeout_s=idle_timeout_s, with_calls=True
    )["calls"]
    return calls


def _group(sums: Mapping[str, Any], hist: Mapping[int, dict[int, int]]) -> dict[str, Any]:
    out: dict[str, Any] = {name: int(sums.get(name) or 0) for name in SUMMARY_COUNTS}
    out.update({name: float(sums.get(name) or 0.0) for name in SUMMARY_AMOUNTS})
    out[MEASURED] = out.pop("tool_results")
    out["cache_hit_ratio"] = cache_hit_ratio(
        out["input_tokens"], out["cache_read_input_tokens"], out["cache_creation_input_tokens"]
    )
    for metric, name in ((DURATION, "duration"), (TTFT, "ttft")):
        counts = hist.get(metric, {})
        out[f"{name}_p50_s"] = percentile_of_counts(counts, 50)
        out[f"{name}_p95_s"] = percentile_of_counts(counts, 95)
    return out


def summary_doc(
    window: tuple[float, float],
    group_by: str,
    sums: Iterable[Sequence[Any]],
    hist: Iterable[Sequence[Any]],
    sessions: int,
    misses: Iterable[Sequence[Any]] = (),
) -> dict[str, Any]:
    """The summary document. ``sums``: ``(key, *SUMMARY_FIELDS)`` rows, a key repeated or not; ``hist``:
    ``(key, metric, bucket, n)`` rows; ``misses``: ``(reason, misses, cost)`` rows of the window's cache
    misses (the totals' ``cache_misses_by_reason``). Hour and day keys are unix seconds, shown as ISO
    8601."""
    by_key: dict[Any, dict[str, Any]] = {}
    for row in sums:
        acc = by_key.setdefault(row[0], {})
        for name, value in zip(SUMMARY_FIELDS, row[1:], strict=True):
            acc[name] = acc.get(name, 0) + (value or 0)
    key_hist: dict[Any, dict[int, list[tuple[int, int]]]] = {}
    all_hist: dict[int, list[tuple[int, int]]] = {DURATION: [], TTFT: []}
    for key, metric, bucket, n in hist:
        key_hist.setdefault(key, {}).setdefault(int(metric), []).append((int(bucket), int(n)))
        all_hist[int(metric)].append((int(bucket), int(n)))
    totals: dict[str, Any] = {}
    for acc in by_key.values():
        for name, value in acc.items():
            totals[name] = totals.get(name, 0) + value
    rows = []
    for key in sorted(by_key):
        merged = {m: merge_counts(pairs) for m, pairs in key_hist.get(key, {}).items()}
        group: dict[str, Any] = {"key": iso_utc(key) if group_by in ("hour", "day") else key}
        group.update(_group(by_key[key], merged))
        if group_by in ("hour", "day"):
            group["key_ts"] = key
        rows.append(group)
    total = _group(totals, {m: merge_counts(pairs) for m, pairs in all_hist.items()})
    total["sessions"] = sessions
    by_reason = {str(r): {"misses": int(n), "cost_usd": float(cost or 0.0)} for r, n, cost in misses}
    total["cache_misses_by_reason"] = dict(sorted(by_reason.items()))
    since, until = window
    return {
        "since": iso_utc(since),
        "until": iso_utc(until),
        "group_by": group_by,
        "totals": total,
        "rows": rows,
    }


def tool_summary_doc(
    uses: Iterable[Sequence[Any]], results: Iterable[Sequence[Any]]
) -> dict[str, dict[str, Any]]:
    """Per tool over a window, the fields of :func:`~sidecar.core.sessions.tool_stats` (percentiles as
    bucket edges). ``uses``: ``(name, tool_use blocks in model calls)``; ``results``: ``(name, bucket,
    measured, total latency, errors)``, a name repeated once per bucket."""
    count = {str(name): int(n) for name, n in uses}
    hist: dict[str, dict[int, int]] = defaultdict(dict)
    total: dict[str, float] = defaultdict(float)
    errors: dict[str, int] = defaultdict(int)
    for name, bucket, n, latency, err in results:
        hist[str(name)][int(bucket)] = int(n)
        total[str(name)] += float(latency)
        errors[str(name)] += int(err)
    return {
        name: {
            "count": count.get(name, 0),
            "measured": sum(hist.get(name, {}).values()),
            "errors": errors.get(name, 0),
            "p50_s": percentile_of_counts(hist.get(name, {}), 50),
            "p95_s": percentile_of_counts(hist.get(name, {}), 95),
            "total_s": total.get(name, 0.0),
        }
        for name in sorted(set(count) | set(hist))
    }
