"""Turns the phases' raw results into the summary (added latency, headline, SPEC §12 targets) and Markdown."""

from __future__ import annotations

import math
import statistics
from typing import Any

Phase = dict[str, Any]
PROXIES = ("bare", "sidecar")  # always measured; the SPEC §12 targets compare these two
PEERS = ("litellm",)  # measured when available, for comparison only
JSON_SCENARIOS = ("json_c1", "json_c50", "json_c200", "json_c50_50ms")
STREAM_SCENARIOS = ("stream_c1", "stream_c50", "stream_c200")


def _find(phases: list[Phase], scenario: str, target: str) -> Phase | None:
    return next((p for p in phases if p["scenario"] == scenario and p["target"] == target), None)


def _stat(phase: Phase | None, metric: str, q: str) -> float:
    if phase is None or not phase.get(metric):
        return math.nan
    return float(phase[metric][q])


def _rounds(phases: list[Phase], scenario: str, target: str) -> dict[int, Phase]:
    """``target``'s phases of ``scenario`` by round (reports of older runs have one, unnumbered)."""
    return {int(p.get("round", 1)): p for p in phases if p["scenario"] == scenario and p["target"] == target}


def _median(values: list[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return statistics.median(kept) if kept else math.nan


def added_by_round(phases: list[Phase], scenario: str, target: str, metric: str, q: str) -> list[float]:
    """Per round: ``target``'s percentile minus the direct run's of the same round, in ms."""
    direct = _rounds(phases, scenario, "direct")
    return [
        round(_stat(p, metric, q) - _stat(direct.get(r), metric, q), 3)
        for r, p in sorted(_rounds(phases, scenario, target).items())
    ]


def added(phases: list[Phase], scenario: str, target: str, metric: str, q: str) -> float:
    """The median round's added latency (ms over direct; NaN when either side is missing)."""
    return round(_median(added_by_round(phases, scenario, target, metric, q)), 3)


def _median_stat(phases: list[Phase], scenario: str, target: str, metric: str, q: str) -> float:
    return _median([_stat(p, metric, q) for p in _rounds(phases, scenario, target).values()])


def _peak_mb(phases: list[Phase], target: str, scenario: str | None = None) -> float:
    kb = [
        p["peak_rss_kb"] or 0 for p in phases if p["target"] == target and scenario in (None, p["scenario"])
    ]
    return round(max(kb, default=0) / 1024, 1) if kb else math.nan


def _value(phases: list[Phase], scenario: str, target: str, key: str) -> float:
    """The median round's ``key`` (rate, CPU per request)."""
    return _median([float(p[key]) for p in _rounds(phases, scenario, target).values()])


def proxies(phases: list[Phase]) -> tuple[str, ...]:
    """The proxies to report: bare and sidecar, then each peer that has at least one phase."""
    return PROXIES + tuple(t for t in PEERS if any(p["target"] == t for p in phases))


def summarize(phases: list[Phase]) -> dict[str, Any]:
    """Headline per proxy and the added-latency grid (ms over direct, same percentile, same run)."""
    headline: dict[str, dict[str, float]] = {}
    shown = proxies(phases)
    for t in shown:
        headline[t] = {
            "max_rps": max(_value(phases, s, t, "rps") for s in ("json_c50", "json_c200")),
            "added_p50_c1_ms": added(phases, "json_c1", t, "latency_ms", "p50"),
            "added_p99_c1_ms": added(phases, "json_c1", t, "latency_ms", "p99"),
            "cpu_us_per_req_c50": _value(phases, "json_c50", t, "cpu_us_per_req"),
            "cpu_us_per_req_c1": _value(phases, "json_c1", t, "cpu_us_per_req"),
            "peak_rss_mb": _peak_mb(phases, t),
            "peak_rss_200_streams_mb": _peak_mb(phases, t, "stream_c200"),
        }
    grid: dict[str, dict[str, dict[str, float]]] = {}
    for s in JSON_SCENARIOS + STREAM_SCENARIOS:
        metric = "ttfb_ms" if s.startswith("stream") else "latency_ms"
        grid[s] = {t: {q: added(phases, s, t, metric, q) for q in ("p50", "p99")} for t in shown}
    return {"headline": headline, "added_ms": grid}


def targets(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """SPEC §12 targets for the sidecar (reported, not gated): name, measured, limit, met."""
    h, g = summary["headline"], summary["added_ms"]
    sc, bare = h["sidecar"], h["bare"]
    rows = [
        ("CPU per request, 50 clients (µs)", sc["cpu_us_per_req_c50"], 400.0, "<="),
        ("max requests/s (non-streaming)", sc["max_rps"], 2500.0, ">="),
        ("added p50, 1 client (ms): bare + 0.5", sc["added_p50_c1_ms"], bare["added_p50_c1_ms"] + 0.5, "<="),
        ("added p99, 1 client (ms): 1.5 x bare", sc["added_p99_c1_ms"], 1.5 * bare["added_p99_c1_ms"], "<="),
    ]
    for q in ("p50", "p99"):
        b = g["json_c50_50ms"]["bare"][q]
        rows.append(
            (
                f"added {q}, 50 clients, 50 ms upstream (ms): 1.5 x bare",
                g["json_c50_50ms"]["sidecar"][q],
                1.5 * b,
                "<=",
            )
        )
    for s in ("stream_c1", "stream_c50"):
        b = g[s]["bare"]["p50"]
        rows.append(
            (f"first byte p50, {s} (ms over direct): bare + 1", g[s]["sidecar"]["p50"], b + 1.0, "<=")
        )
    rows.append(("peak RSS under 200 streams (MB)", sc["peak_rss_200_streams_mb"], 120.0, "<="))
    out = []
    for name, value, limit, op in rows:
        met = value <= limit if op == "<=" else value >= limit
        out.append({"target": name, "value": value, "limit": round(limit, 3), "op": op, "met": bool(met)})
    return out


def _f(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:,.{digits}f}" if isinstance(value, float) else f"{value:,}"


def _headline_md(doc: dict[str, Any]) -> list[str]:
    lines = [
        "| proxy | max req/s (non-stream) | added p50 / p99 at 1 client | CPU µs / request (50 clients) "
        "| CPU µs / request (1 client) | peak RSS (all phases) | peak RSS (200 streams) |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in doc["summary"]["headline"]:
        h = doc["summary"]["headline"][t]
        lines.append(
            f"| {t} | {_f(h['max_rps'], 0)} | {_f(h['added_p50_c1_ms'])} / {_f(h['added_p99_c1_ms'])} ms "
            f"| {_f(h['cpu_us_per_req_c50'], 0)} | {_f(h['cpu_us_per_req_c1'], 0)} "
            f"| {_f(h['peak_rss_mb'], 1)} MB | {_f(h['peak_rss_200_streams_mb'], 1)} MB |"
        )
    return lines


def _signed(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:+.2f}"


def _added_md(doc: dict[str, Any], phases: list[Phase], scenarios: tuple[str, ...], metric: str) -> list[str]:
    shown = list(doc["summary"]["headline"])
    lines = [
        "| scenario | direct p50 / p99 | " + " | ".join(f"{t} added p50 / p99" for t in shown) + " |",
        "|---" * (2 + len(shown)) + "|",
    ]
    grid = doc["summary"]["added_ms"]
    for s in scenarios:
        d = _find(phases, s, "direct")
        label = d["label"] if d else s
        direct = f"{_f(_median_stat(phases, s, 'direct', metric, 'p50'))} / "
        direct += _f(_median_stat(phases, s, "direct", metric, "p99"))
        cells = [f"{_signed(grid[s][t]['p50'])} / {_signed(grid[s][t]['p99'])}" for t in shown]
        lines.append(f"| {label} | {direct} | " + " | ".join(cells) + " |")
    return lines


def _rounds_md(phases: list[Phase]) -> list[str]:
    """Each round's added latency for the scenarios measured in several rounds (none: no lines)."""
    repeated = [
        s
        for s in JSON_SCENARIOS + STREAM_SCENARIOS
        if len(_rounds(phases, s, "sidecar")) > 1 or len(_rounds(phases, s, "bare")) > 1
    ]
    if not repeated:
        return []
    lines = [
        "## Rounds (added ms over direct within each round; the tables above show the median round)",
        "",
        "| scenario | proxy | added p50 by round | added p99 by round |",
        "|---|---|---|---|",
    ]
    for s in repeated:
        metric = "ttfb_ms" if s.startswith("stream") else "latency_ms"
        for t in PROXIES:
            p50, p99 = (
                ", ".join(_signed(v) for v in added_by_round(phases, s, t, metric, q)) for q in ("p50", "p99")
            )
            lines.append(f"| {s} | {t} | {p50} | {p99} |")
    return [*lines, ""]


def _other_pct(p: Phase) -> str:
    seconds = float(p["duration_s"]) or 1.0
    return f"{100.0 * float(p.get('other_cpu_on_proxy_core_s', 0.0)) / seconds:.0f} %"


def disturbed(phases: list[Phase], limit_pct: float = 5.0) -> list[str]:
    """Phases during which other processes used more than ``limit_pct`` of the proxy core."""
    out = []
    for p in phases:
        seconds = float(p["duration_s"]) or 1.0
        if 100.0 * float(p.get("other_cpu_on_proxy_core_s", 0.0)) / seconds > limit_pct:
            where = f"{p['scenario']}/{p['target']}"
            out.append(where + (f" (round {p['round']})" if p.get("round", 1) > 1 else ""))
    return out


def _phases_md(phases: list[Phase]) -> list[str]:
    lines = [
        "| scenario | target | round | load gen | requests | errors | req/s | p50 ms | p99 ms "
        "| TTFB p50 / p99 ms | CPU µs/req | peak RSS MB | other CPU on proxy core |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in phases:
        ttfb = (
            f"{_f(_stat(p, 'ttfb_ms', 'p50'))} / {_f(_stat(p, 'ttfb_ms', 'p99'))}"
            if p.get("ttfb_ms")
            else "-"
        )
        latency = f"{_f(_stat(p, 'latency_ms', 'p50'))} | {_f(_stat(p, 'latency_ms', 'p99'))}"
        lines.append(
            f"| {p['scenario']} | {p['target']} | {p.get('round', 1)} | {p['loadgen']} | {p['requests']:,} "
            f"| {p['errors']} "
            f"| {_f(float(p['rps']), 0)} | {latency} "
            f"| {ttfb} | {_f(float(p['cpu_us_per_req']), 0)} | {_f((p['peak_rss_kb'] or 0) / 1024, 1)} "
            f"| {_other_pct(p)} |"
        )
    return lines


def litellm_line(info: dict[str, Any] | None, phases: list[Phase]) -> str | None:
    """The report's LiteLLM bullet: what ran and how, or why it was not measured (None: no record)."""
    if info is None:
        return None
    mine = [p for p in phases if p["target"] == "litellm"]
    if not mine:
        return f"- LiteLLM: not measured — {info.get('reason') or 'no phase ran'}"
    how = f"installed in {info['install_s']:.0f} s" if info.get("install_s") else "reused from an earlier run"
    requests, errors = sum(p["requests"] for p in mine), sum(p["errors"] for p in mine)
    with_errors = ", ".join(p["scenario"] for p in mine if p["errors"])
    line = (
        f"- LiteLLM: proxy {info['version']} through its Anthropic pass-through route `{info['route']}` "
        f"(defaults: uvicorn, 1 worker; no database), own venv `{info['venv']}` "
        f"({_f(info['venv_mb'], 0)} MB, {how}); answers checked to come from the bench upstream; "
        f"{errors:,} errors in {requests:,} measured requests" + (f" ({with_errors})" if with_errors else "")
    )
    line += (
        f"; phases of at least {_f(info['min_seconds'], 0)} s; a peer for comparison, "
        "not judged against the targets"
    )
    if info.get("reason"):
        line += f"; stopped early — {info['reason']}"
    return line


def _target_md(t: dict[str, Any]) -> str:
    return (
        f"| {t['target']} | {_f(t['value'])} | {t['op']} {_f(t['limit'])} | {'yes' if t['met'] else 'NO'} |"
    )


def markdown(doc: dict[str, Any]) -> str:
    """The report: machine, method notes, headline, added latency, first byte, targets, every phase."""
    m, phases, check = doc["machine"], doc["phases"], doc["sidecar_check"]
    peer = litellm_line(doc.get("litellm"), phases)
    out = [
        "# claude-sidecar benchmark",
        "",
        f"- date: {m['date']}  \n- machine: {m['nproc']} cores, {m['cpu_model']}  \n"
        f"- Python {m['python']}, {m['platform']}  \n- mode: {doc['mode']}; {doc['method']}  \n"
        f"- sidecar: {doc['sidecar_source']}  \n"
        f"- sidecar check: {_f(check['requests_measured'])} measured requests sent to it, "
        f"{_f(check['events_stored'])} events in its SQLite store (warm-up calls included), "
        f"exit code {check['exit_code']} after SIGTERM  \n"
        f"- load average at start / end: {m['loadavg_start']} / {m['loadavg_end']}; phases where other "
        f"processes used > 5 % of the proxy core: {', '.join(disturbed(phases)) or 'none'}"
        + ("  \n" + peer if peer else ""),
        "",
        "## Headline",
        "",
        *_headline_md(doc),
        "",
        "## Added latency, non-streaming (ms over direct, same percentile, same round; median round)",
        "",
        *_added_md(doc, phases, JSON_SCENARIOS, "latency_ms"),
        "",
        "## Streaming time to first byte (ms over direct, same round; median round)",
        "",
        *_added_md(doc, phases, STREAM_SCENARIOS, "ttfb_ms"),
        "",
        "## SPEC §12 targets (sidecar; reported, not gated)",
        "",
        "| target | measured | limit | met |",
        "|---|---|---|---|",
        *[_target_md(t) for t in doc["targets"]],
        "",
        *_rounds_md(phases),
        "## Every phase",
        "",
        *_phases_md(phases),
        "",
    ]
    return "\n".join(out)
