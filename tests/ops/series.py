"""The series that dashboards and alert rules may use, and a PromQL series-name extractor.

``ALLOWED`` is SPEC §13's list with the series §15 and §17 add to it (histograms as
``_bucket``/``_sum``/``_count``, counters as ``_total``)
plus the few series the exporter declares beyond it, plus what Prometheus itself synthesizes (``up``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

HISTOGRAMS = frozenset(
    {
        "gen_ai_client_token_usage",
        "gen_ai_client_operation_duration_seconds",
        "gen_ai_client_operation_time_to_first_chunk_seconds",
        "sidecar_overhead_seconds",
        "sidecar_tool_latency_seconds",
        "sidecar_session_cost_usd",
        "sidecar_session_tool_calls",
        "sidecar_session_model_calls",
        "sidecar_session_duration_seconds",
        "sidecar_session_model_time_seconds",
        "sidecar_session_tool_time_seconds",
        "sidecar_fleet_heartbeat_rtt_seconds",
    }
)
COUNTERS = frozenset(
    {
        "sidecar_requests",
        "sidecar_tokens",
        "sidecar_cost_usd",
        "sidecar_unpriced_requests",
        "sidecar_budget_refusals",
        "sidecar_budget_warnings",
        "sidecar_cache_breakpoints_injected",
        "sidecar_cache_savings_usd",
        "sidecar_cache_wasted_write_tokens",
        "sidecar_cache_misses",
        "sidecar_cache_miss_cost_usd",
        "sidecar_fleet_pongs_missed",
        "sidecar_fleet_disconnects",
        "sidecar_fleet_connects",
        "sidecar_fleet_pings",
        "sidecar_alert_notifications",
        "sidecar_events",
        "sidecar_sink_errors",
        "sidecar_events_dropped",
        "sidecar_upstream_errors",
        "sidecar_ship_errors",
        "sidecar_response_cache_requests",  # §19
        "sidecar_response_cache_savings_usd",
    }
)
GAUGES = frozenset(
    {
        "sidecar_active_sessions",
        "sidecar_cache_busting",
        "sidecar_fleet_members",
        "sidecar_deadman_up",
        "sidecar_deadman_last_seen_timestamp_seconds",
        "sidecar_spool_pending_events",
        "sidecar_build_info",
        "sidecar_ratelimit_remaining",
        "sidecar_ratelimit_limit",
        "sidecar_ratelimit_unified_utilization",
        "sidecar_ratelimit_unified_status",
        "sidecar_ship_lag_seconds",
        "sidecar_response_cache_bytes",  # §19
    }
)
# Declared by sidecar/telemetry/metrics/ although §13 does not name them (kind, name).
BEYOND_SPEC = (
    ("gauge", "sidecar_recorder_queue_events"),
    ("counter", "sidecar_internal_errors"),
    ("counter", "sidecar_budget_backend_errors"),
    ("histogram", "sidecar_session_tokens"),
    ("counter", "sidecar_clickhouse_quarantined_events"),
)
PROMETHEUS_SYNTHETIC = frozenset({"up"})


def exposed_names(kind: str, name: str) -> set[str]:
    """Sample names a metric family exposes in the text format."""
    if kind == "histogram":
        return {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    if kind == "counter":
        return {f"{name}_total"}
    return {name}


def allowed() -> frozenset[str]:
    names: set[str] = set(PROMETHEUS_SYNTHETIC)
    families = [
        *(("histogram", n) for n in HISTOGRAMS),
        *(("counter", n) for n in COUNTERS),
        *(("gauge", n) for n in GAUGES),
        *BEYOND_SPEC,
    ]
    for kind, name in families:
        names |= exposed_names(kind, name)
    return frozenset(names)


ALLOWED = allowed()

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENT = re.compile(r"(?<![\w.:])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?")
_KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "inf",
        "nan",
        "atan2",
    }
)
_GRAFANA_VARS = (
    ("$__rate_interval", "5m"),
    ("$__interval", "1m"),
    ("$__range", "1h"),
    ("${app}", "default"),
    ("$app", "default"),
    ("${model}", "claude-sonnet-4-5"),
    ("$model", "claude-sonnet-4-5"),
    ("${fleet}", "voice"),
    ("$fleet", "voice"),
    ("${check}", "traffic"),
    ("$check", "traffic"),
)


def substitute_variables(expr: str) -> str:
    """Grafana template variables → concrete values, so the expression is plain PromQL."""
    for name, value in _GRAFANA_VARS:
        expr = expr.replace(name, value)
    return expr


def promql_series(expr: str) -> set[str]:
    """Metric names referenced by a PromQL expression (functions, keywords, labels and numbers excluded)."""
    text = _STRING.sub('""', substitute_variables(expr))
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    names: set[str] = set()
    for match in _IDENT.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


_LABEL_VALUES = re.compile(r"^\s*label_values\((.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*$", re.S)


def variable_query_series(query: str) -> set[str]:
    """Series behind a Grafana Prometheus variable query (``label_values(expr, label)`` or plain PromQL)."""
    match = _LABEL_VALUES.match(query)
    if match:
        return promql_series(match.group(1))
    if re.match(r"^\s*label_values\(\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*$", query):
        return set()
    return promql_series(query)


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def dashboard_promql(doc: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """``(where, expr)`` for every PromQL panel target of a dashboard JSON document."""
    for panel in _panels(doc.get("panels", [])):
        for target in panel.get("targets", []):
            if "expr" in target:
                yield f"{doc['uid']} / {panel['title']} / {target['refId']}", target["expr"]


def dashboard_variable_queries(doc: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """``(name, query)`` for every Prometheus query variable of a dashboard JSON document."""
    for variable in doc.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable["query"]
            yield variable["name"], query["query"] if isinstance(query, dict) else query


def dashboard_series(doc: dict[str, Any]) -> set[str]:
    names: set[str] = set()
    for _, expr in dashboard_promql(doc):
        names |= promql_series(expr)
    for _, query in dashboard_variable_queries(doc):
        names |= variable_query_series(query)
    return names


def rule_expressions(doc: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """``(alert or record name, expr)`` for every rule of a Prometheus rule file document."""
    for group in doc["groups"]:
        for rule in group["rules"]:
            yield rule.get("alert") or rule["record"], rule["expr"]
