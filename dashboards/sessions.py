"""Sessions & cost and prompt-cache dashboards.

Per-session distributions come from the session histograms (observed when a session closes); the top
sessions table comes from ClickHouse (``events``, one row per call, usage buckets flattened, and the
per-session ``sessions_rollup``), so it covers every sidecar of the fleet.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash

from dashboards.board import APP_VARIABLE, MODEL_VARIABLE, datasource_variables, new_dashboard, prom_variable
from dashboards.diagnosis import cache_miss_headline, cache_miss_panels
from dashboards.kit import APP, MODEL, RATE, SQL, PanelBuilder, Q, buckets, graph, grid, quantiles, single

F = f"{APP},{MODEL}"
# The dashboard's app filter as a ClickHouse condition (``All`` is ``.*``).
SQL_APP = "match(app, '^(${app:regex})$')"

# Tables and columns as created by sidecar/store/clickhouse_schema.py. sessions_rollup keeps partial
# per-session aggregates, so it is always read with GROUP BY app, session_id; events and tool_calls are
# ReplacingMergeTree tables read with FINAL. Aliases never reuse a column name: ClickHouse resolves
# aliases anywhere in the query (WHERE, inside other aggregates), not just in the output.
TOP_SESSIONS_SQL = f"""SELECT
  session_id,
  app,
  min(started_at) AS first_call_at,
  max(last_seen_at) AS last_seen,
  sum(model_calls) AS calls,
  sum(tool_calls) AS tools,
  sum(input_tokens) + sum(cache_read_input_tokens) + sum(cache_creation_input_tokens) AS input_tok,
  sum(output_tokens) AS output_tok,
  round(sum(cost_usd), 4) AS cost,
  sum(unpriced_calls) AS unpriced,
  round(sum(model_time_s), 2) AS model_s,
  round(sum(tool_time_s), 2) AS tool_s
FROM sessions_rollup
WHERE {SQL_APP}
GROUP BY app, session_id
HAVING last_seen >= $__fromTime AND last_seen <= $__toTime
ORDER BY cost DESC, last_seen DESC, session_id
LIMIT 25"""

# Model calls only (chat, not refused by the sidecar), as the sessions API and reports count them.
COST_BY_APP_SQL = f"""SELECT
  $__timeInterval(started_at) AS time,
  app,
  sum(ifNull(cost_usd, 0)) AS cost
FROM events FINAL
WHERE $__timeFilter(started_at) AND {SQL_APP} AND operation = 'chat' AND outcome != 'refused'
GROUP BY time, app
ORDER BY time, app"""

SESSIONS_BY_APP_SQL = f"""SELECT
  app,
  count() AS sessions,
  round(sum(session_cost), 2) AS total_usd,
  round(avg(session_cost), 4) AS avg_usd,
  round(quantile(0.95)(session_cost), 4) AS p95_usd,
  round(avg(session_calls), 1) AS avg_model_calls,
  round(avg(session_tools), 1) AS avg_tool_calls
FROM (
  SELECT app, session_id, max(last_seen_at) AS session_last_seen, sum(cost_usd) AS session_cost,
         sum(model_calls) AS session_calls, sum(tool_calls) AS session_tools
  FROM sessions_rollup
  WHERE {SQL_APP}
  GROUP BY app, session_id
  HAVING session_last_seen >= $__fromTime AND session_last_seen <= $__toTime
)
GROUP BY app
ORDER BY total_usd DESC, app"""

# p50 / p95 are nearest-rank percentiles, the definition the CLI report uses.
TOOL_LATENCY_SQL = f"""SELECT
  name AS tool,
  count() AS measured,
  countIf(is_error) AS errors,
  arrayElement(arraySort(groupArray(latency_s)), toUInt64(greatest(1, ceil(0.50 * count())))) AS p50_s,
  arrayElement(arraySort(groupArray(latency_s)), toUInt64(greatest(1, ceil(0.95 * count())))) AS p95_s,
  round(sum(latency_s), 3) AS total_s
FROM tool_calls FINAL
WHERE $__timeFilter(started_at) AND {SQL_APP}
GROUP BY tool
ORDER BY total_s DESC, tool"""


SESSION_COST = "sidecar_session_cost_usd"
TOKENS = "sidecar_tokens_total"


def _cache_ratio(by: str) -> str:
    inputs = f'{F},type=~"input|cache_read|cache_write_5m|cache_write_1h"'
    reads = f'{F},type="cache_read"'
    return f"{_rate(TOKENS, by, reads)} / {_rate(TOKENS, by, inputs)}"


def _rate(metric: str, by: str = "", matchers: str = APP) -> str:
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({metric}{{{matchers}}}{RATE}))"


def _distribution(title: str, description: str, unit: str, metric: str) -> PanelBuilder:
    return buckets(
        title,
        description,
        unit,
        Q(
            f"sum by (le) (increase({metric}_bucket{{{APP}}}[$__range]))",
            "{{le}}",
            instant=True,
            fmt="heatmap",
        ),
    )


def _sessions_headline() -> list[PanelBuilder]:
    return [
        single(
            "Sessions closed / min",
            "Sessions that ended (idle timeout) per minute.",
            "short",
            Q(f"{_rate(SESSION_COST + '_count')} * 60"),
            width=6,
        ),
        single(
            "Average session cost",
            "Mean dollar cost of the sessions that closed in the range.",
            "currencyUSD",
            Q(
                f"sum (increase({SESSION_COST}_sum{{{APP}}}[$__range])) / "
                f"sum (increase({SESSION_COST}_count{{{APP}}}[$__range]))",
                instant=True,
            ),
            width=6,
        ),
        single(
            "Active sessions",
            "Sessions seen within the idle timeout, summed over sidecars.",
            "short",
            Q("sum (sidecar_active_sessions)"),
            width=6,
        ),
        single(
            "Session budget refusals",
            "Calls refused by a per-session ceiling in the range.",
            "short",
            Q(
                f'sum (increase(sidecar_budget_refusals_total{{{APP},limit=~"session_.*"}}[$__range]))',
                instant=True,
            ),
            steps=((None, "green"), (1, "orange")),
            width=6,
        ),
    ]


def _sessions_distributions() -> list[PanelBuilder]:
    return [
        graph(
            "Session cost percentiles",
            "p50 / p95 / p99 cost of closed sessions by app (alert "
            "ClaudeSidecarSessionCostP95High at p95 > 1 USD).",
            "currencyUSD",
            quantiles(SESSION_COST, "app", APP),
        ),
        _distribution(
            "Session cost distribution",
            "Closed sessions per cost bucket (upper bound, USD) in the selected range.",
            "short",
            SESSION_COST,
        ),
        graph(
            "Tool calls per session",
            "p50 / p95 / p99 tool calls per closed session by app.",
            "short",
            quantiles("sidecar_session_tool_calls", "app", APP),
        ),
        _distribution(
            "Tool calls per session distribution",
            "Closed sessions per tool-call-count bucket in the selected range.",
            "short",
            "sidecar_session_tool_calls",
        ),
        graph(
            "Model calls per session",
            "p50 / p95 / p99 model calls per closed session by app.",
            "short",
            quantiles("sidecar_session_model_calls", "app", APP),
        ),
        graph(
            "Session duration",
            "p50 / p95 / p99 wall time of closed sessions by app.",
            "s",
            quantiles("sidecar_session_duration_seconds", "app", APP),
        ),
    ]


def _sessions_top() -> list[PanelBuilder]:
    return [
        grid(
            "Top sessions by cost (ClickHouse)",
            "The most expensive sessions whose last call fell in the range, across all sidecars "
            "(sessions_rollup). Open one with GET /sidecar/v1/sessions/{id} on its sidecar.",
            "none",
            [SQL(TOP_SESSIONS_SQL)],
            height=10,
        ),
        graph(
            "Model-call cost by app (ClickHouse)",
            "Dollars per time bucket by app from the events table: fleet-wide, and complete even for "
            "intervals Prometheus did not scrape.",
            "currencyUSD",
            [SQL(COST_BY_APP_SQL, kind="timeSeries")],
        ),
        grid(
            "Sessions by app (ClickHouse)",
            "Sessions, total, mean and p95 cost, mean model and tool calls per session, by app "
            "(sessions_rollup).",
            "none",
            [SQL(SESSIONS_BY_APP_SQL)],
            width=12,
        ),
        grid(
            "Tool latency by tool (ClickHouse)",
            "Measured tool results in the range: count, errors, nearest-rank p50 / p95 and total "
            "seconds per tool (tool_calls).",
            "none",
            [SQL(TOOL_LATENCY_SQL)],
            width=12,
        ),
    ]


def sessions() -> dash.Dashboard:
    """Per-session cost and tool-call distributions, session throughput, top sessions from ClickHouse."""
    headline = _sessions_headline()
    distributions = _sessions_distributions()
    top = _sessions_top()
    return new_dashboard(
        "claude-sidecar-sessions",
        "Claude sidecar / Sessions & cost",
        "What sessions cost and how many model and tool calls they make; the top sessions fleet-wide.",
        [*datasource_variables(clickhouse=True), prom_variable(*APP_VARIABLE)],
        [("Now", headline), ("Distributions", distributions), ("Top sessions (ClickHouse)", top)],
    )


def _prompt_cache_headline() -> list[PanelBuilder]:
    return [
        single(
            "Cache hit ratio",
            "Input tokens read from the cache / all input tokens.",
            "percentunit",
            Q(_cache_ratio("")),
            steps=((None, "red"), (0.3, "orange"), (0.6, "green")),
            width=6,
        ),
        single(
            "Savings / hour",
            "Dollars saved by prompt caching per hour, net of write premiums.",
            "currencyUSD",
            Q(f"{_rate('sidecar_cache_savings_usd_total', matchers=F)} * 3600"),
            width=6,
        ),
        single(
            "Breakpoints injected / min",
            "cache_control breakpoints the sidecar added to requests.",
            "short",
            Q(f"{_rate('sidecar_cache_breakpoints_injected_total', matchers=F)} * 60"),
            width=6,
        ),
        single(
            "Apps busting the cache",
            "Apps whose cached prefix changes between calls (e.g. a timestamp in the system prompt).",
            "short",
            Q(f"count (max by (app) (sidecar_cache_busting{{{APP}}}) > 0)"),
            steps=((None, "green"), (1, "red")),
            width=6,
        ),
        cache_miss_headline(),
    ]


def _prompt_cache_panels() -> list[PanelBuilder]:
    return [
        graph(
            "Hit ratio by app",
            "Share of input tokens read from the cache, by app.",
            "percentunit",
            [Q(_cache_ratio("app"), "{{app}}")],
        ),
        graph(
            "Hit ratio by model",
            "Share of input tokens read from the cache, by model (caches are per model).",
            "percentunit",
            [Q(_cache_ratio("model"), "{{model}}")],
        ),
        graph(
            "Cache reads and writes",
            "Tokens per second read from and written to the cache (5-minute and 1-hour TTL).",
            "short",
            [Q(_rate(TOKENS, "type", f'{F},type=~"cache_read|cache_write_5m|cache_write_1h"'), "{{type}}")],
        ),
        graph(
            "Savings per hour by app",
            "Dollars saved per hour, net, by app.",
            "currencyUSD",
            [Q(f"{_rate('sidecar_cache_savings_usd_total', 'app', F)} * 3600", "{{app}}")],
        ),
        graph(
            "Breakpoints injected by app",
            "Breakpoints added by the sidecar per minute.",
            "short",
            [Q(f"{_rate('sidecar_cache_breakpoints_injected_total', 'app', F)} * 60", "{{app}}")],
        ),
        graph(
            "Wasted cache writes",
            "Tokens written to the cache and never read before they expired, per second, by app.",
            "short",
            [Q(_rate("sidecar_cache_wasted_write_tokens_total", "app", F), "{{app}}")],
        ),
        graph(
            "Cache busting",
            "1 while the sidecar sees an app's cached prefix change between calls.",
            "none",
            [Q(f"max by (app) (sidecar_cache_busting{{{APP}}})", "{{app}}")],
            width=24,
        ),
    ]


def prompt_cache() -> dash.Dashboard:
    """Hit ratio, savings, injected breakpoints, wasted writes, cache-busting apps, and why it missed."""
    headline = _prompt_cache_headline()
    panels = _prompt_cache_panels()
    return new_dashboard(
        "claude-sidecar-prompt-cache",
        "Claude sidecar / Prompt cache",
        "How much of the input comes from Anthropic's prompt cache, what it saves, and what breaks it.",
        [*datasource_variables(), prom_variable(*APP_VARIABLE), prom_variable(*MODEL_VARIABLE)],
        [("Now", headline), ("Cache", panels), ("Why the cache missed", cache_miss_panels())],
    )
