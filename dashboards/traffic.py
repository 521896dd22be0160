"""Overview and latency dashboards: what the apps send through the sidecar, what it costs, how fast."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash

from dashboards.board import APP_VARIABLE, MODEL_VARIABLE, datasource_variables, new_dashboard, prom_variable
from dashboards.diagnosis import headroom_panels
from dashboards.kit import (
    APP,
    GENAI_MODEL,
    MODEL,
    RATE,
    PanelBuilder,
    Q,
    graph,
    heat,
    quantile,
    quantiles,
    single,
)

F = f"{APP},{MODEL}"
INPUT_TYPES = 'type=~"input|cache_read|cache_write_5m|cache_write_1h"'


def requests(matchers: str = "", by: str = "") -> str:
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate(sidecar_requests_total{{{F}{matchers}}}{RATE}))"


def tokens(types: str, by: str = "") -> str:
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate(sidecar_tokens_total{{{F},{types}}}{RATE}))"


def cost_per_hour(by: str = "") -> str:
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate(sidecar_cost_usd_total{{{F}}}{RATE})) * 3600"


def cache_hit_ratio(by: str = "") -> str:
    reads = tokens('type="cache_read"', by)
    return f"{reads} / {tokens(INPUT_TYPES, by)}"


def savings_per_hour(by: str = "") -> str:
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate(sidecar_cache_savings_usd_total{{{F}}}{RATE})) * 3600"


ERRORS = ',status_class=~"5xx|error"'
TTFT = "gen_ai_client_operation_time_to_first_chunk_seconds"
DURATION = "gen_ai_client_operation_duration_seconds"
SESSION_MODEL_TIME = "sidecar_session_model_time_seconds_sum"
SESSION_TOOL_TIME = "sidecar_session_tool_time_seconds_sum"


def _headline() -> list[PanelBuilder]:
    return [
        single(
            "Requests / s",
            "Calls forwarded or refused, all apps and models selected.",
            "reqps",
            Q(requests()),
        ),
        single(
            "Error ratio",
            "Share of calls that ended in a 5xx (upstream or the sidecar's 502/504) or "
            "without any HTTP answer.",
            "percentunit",
            Q(f"{requests(ERRORS)} / {requests()}"),
            steps=((None, "green"), (0.01, "orange"), (0.05, "red")),
        ),
        single(
            "Cost / hour",
            "Dollar spend rate from the dated price table (unpriced models excluded).",
            "currencyUSD",
            Q(cost_per_hour()),
        ),
        single(
            "Cache hit ratio",
            "Input tokens read from the prompt cache / all input tokens (uncached, "
            "cache reads and cache writes).",
            "percentunit",
            Q(cache_hit_ratio()),
            steps=((None, "red"), (0.3, "orange"), (0.6, "green")),
        ),
        single(
            "Cache savings / hour",
            "Dollars saved by prompt caching, net of cache-write premiums.",
            "currencyUSD",
            Q(savings_per_hour()),
        ),
        single(
            "Active sessions",
            "Sessions seen within the idle timeout, summed over sidecars.",
            "short",
            Q("sum (sidecar_active_sessions)"),
        ),
    ]


def _overview_traffic() -> list[PanelBuilder]:
    return [
        graph(
            "Requests by status class",
            "Calls per second by the status class relayed to the client (error = no HTTP answer reached it).",
            "reqps",
            [Q(requests(by="status_class"), "{{status_class}}")],
            stack=True,
        ),
        graph(
            "Requests by app",
            "Calls per second by app (x-app-name header; capped, overflow = other).",
            "reqps",
            [Q(requests(by="app"), "{{app}}")],
        ),
        graph(
            "Requests by provider",
            "Calls per second by where they went: the Claude API (anthropic), Amazon Bedrock (bedrock) "
            "or Google Vertex AI (vertex).",
            "reqps",
            [Q(requests(by="provider"), "{{provider}}")],
            stack=True,
        ),
        graph(
            "Error ratio by provider",
            "Share of each provider's calls that ended in a 5xx or without an answer.",
            "percentunit",
            [Q(f"{requests(ERRORS, 'provider')} / {requests(by='provider')}", "{{provider}}")],
        ),
        graph(
            "Error ratio by app",
            "Share of each app's calls that ended in a 5xx or without an answer "
            "(alert ClaudeSidecarHighErrorRate at 5%).",
            "percentunit",
            [Q(f"{requests(ERRORS, 'app')} / {requests(by='app')}", "{{app}}")],
        ),
        graph(
            "Upstream errors by status",
            "Error answers and failures from Anthropic by HTTP status "
            "(0 = no answer: connect error, timeout, reset).",
            "reqps",
            [Q(f"sum by (status) (rate(sidecar_upstream_errors_total{{{MODEL}}}{RATE}))", "{{status}}")],
        ),
    ]


def _overview_spend() -> list[PanelBuilder]:
    return [
        graph(
            "Cost per hour by app",
            "Dollar spend rate per app.",
            "currencyUSD",
            [Q(cost_per_hour("app"), "{{app}}")],
            stack=True,
        ),
        graph(
            "Cost per hour by model",
            "Dollar spend rate per canonical model id.",
            "currencyUSD",
            [Q(cost_per_hour("model"), "{{model}}")],
            stack=True,
        ),
        graph(
            "Cost per hour by provider",
            "Dollar spend rate per provider, each priced by its own rows (a cloud's regional endpoints "
            "cost 10% more on the models that have the premium).",
            "currencyUSD",
            [Q(cost_per_hour("provider"), "{{provider}}")],
            stack=True,
        ),
        graph(
            "Tokens by provider",
            "Tokens per second (all buckets) by provider.",
            "short",
            [Q(f"sum by (provider) (rate(sidecar_tokens_total{{{F}}}{RATE}))", "{{provider}}")],
            stack=True,
        ),
        graph(
            "Tokens by type",
            "Tokens per second by Anthropic bucket: input (uncached), output, cache "
            "reads, 5-minute and 1-hour cache writes.",
            "short",
            [Q(f"sum by (type) (rate(sidecar_tokens_total{{{F}}}{RATE}))", "{{type}}")],
            stack=True,
        ),
        graph(
            "Cache hit ratio by app",
            "Share of each app's input tokens read from the prompt cache "
            "(alert ClaudeSidecarCacheHitRatioCollapse).",
            "percentunit",
            [Q(cache_hit_ratio("app"), "{{app}} hit ratio")],
        ),
        graph(
            "Cache savings per hour by app",
            "Dollars saved per hour by prompt caching, net.",
            "currencyUSD",
            [Q(savings_per_hour("app"), "{{app}}")],
        ),
        graph(
            "Budget refusals and warnings",
            "Calls refused by a cost ceiling, and soft warnings, per second by app and limit.",
            "reqps",
            [
                Q(
                    f"sum by (app, limit) (rate(sidecar_budget_refusals_total{{{APP}}}{RATE}))",
                    "refused {{app}} {{limit}}",
                ),
                Q(
                    f"sum by (app, limit) (rate(sidecar_budget_warnings_total{{{APP}}}{RATE}))",
                    "warned {{app}} {{limit}}",
                ),
            ],
        ),
        graph(
            "Unpriced calls",
            "Calls to models missing from the price table: their cost is not counted.",
            "reqps",
            [Q(f"sum (rate(sidecar_unpriced_requests_total{RATE}))", "unpriced")],
            width=24,
        ),
    ]


def overview() -> dash.Dashboard:
    """Traffic, errors, cost per hour, tokens by type, cache hit ratio and savings."""
    traffic = _overview_traffic()
    spend = _overview_spend()
    return new_dashboard(
        "claude-sidecar-overview",
        "Claude sidecar / Overview",
        "Traffic, errors, spend and prompt-cache effect of every app that calls Claude through the sidecar.",
        [*datasource_variables(), prom_variable(*APP_VARIABLE), prom_variable(*MODEL_VARIABLE)],
        [
            ("Now", _headline()),
            ("Traffic and errors", traffic),
            ("Cost and tokens", spend),
            ("Rate-limit headroom", headroom_panels()),
        ],
    )


def _latency_model_rows() -> list[PanelBuilder]:
    return [
        graph(
            "Time to first token by model",
            "p50 / p95 / p99 time to the first content chunk (alert "
            "ClaudeSidecarLatencyP95High at p95 > 10 s).",
            "s",
            quantiles(TTFT, "gen_ai_request_model", GENAI_MODEL),
        ),
        graph(
            "Call duration by model",
            "p50 / p95 / p99 duration of calls as the client sees them (grows with the answer's length).",
            "s",
            quantiles(DURATION, "gen_ai_request_model", GENAI_MODEL),
        ),
        heat(
            "Time to first token distribution",
            "Calls per time-to-first-token bucket over time.",
            "s",
            Q(f"sum by (le) (increase({TTFT}_bucket{{{GENAI_MODEL}}}{RATE}))", "{{le}}", fmt="heatmap"),
        ),
        graph(
            "Calls by model and error type",
            "Calls per second by model and error type (empty = ok).",
            "reqps",
            [
                Q(
                    f"sum by (gen_ai_request_model, error_type) "
                    f"(rate({DURATION}_count{{{GENAI_MODEL}}}{RATE}))",
                    "{{gen_ai_request_model}} {{error_type}}",
                )
            ],
        ),
        graph(
            "Tokens per call (p95)",
            "p95 tokens per call by token type (GenAI meaning: input includes cache reads and writes).",
            "short",
            [
                Q(
                    quantile(0.95, "gen_ai_client_token_usage", "gen_ai_token_type", GENAI_MODEL),
                    "{{gen_ai_token_type}} p95",
                )
            ],
        ),
    ]


def _latency_tool_rows() -> list[PanelBuilder]:
    return [
        graph(
            "Model time vs tool time",
            "Seconds per second that closed sessions spent waiting on the model and running tools.",
            "s",
            [
                Q(f"sum (rate({SESSION_MODEL_TIME}{{{APP}}}{RATE}))", "model"),
                Q(f"sum (rate({SESSION_TOOL_TIME}{{{APP}}}{RATE}))", "tools"),
            ],
            stack=True,
        ),
        graph(
            "Tool share of session time",
            "Tool time / (model time + tool time) of closed sessions, by app.",
            "percentunit",
            [
                Q(
                    f"sum by (app) (rate({SESSION_TOOL_TIME}{{{APP}}}{RATE})) / "
                    f"(sum by (app) (rate({SESSION_MODEL_TIME}{{{APP}}}{RATE}))"
                    f" + sum by (app) (rate({SESSION_TOOL_TIME}{{{APP}}}{RATE})))",
                    "{{app}}",
                )
            ],
        ),
        graph(
            "Tool latency p95 by tool",
            "p95 time the app spent running each tool (tool_use answer → tool_result request).",
            "s",
            [Q(quantile(0.95, "sidecar_tool_latency_seconds", "tool", APP), "{{tool}}")],
        ),
        graph(
            "Tool calls by tool",
            "Tool results delivered per second, by tool name (capped).",
            "ops",
            [Q(f"sum by (tool) (rate(sidecar_tool_latency_seconds_count{{{APP}}}{RATE}))", "{{tool}}")],
        ),
        graph(
            "Sidecar overhead",
            "p50 / p99 time spent inside the sidecar per call, upstream excluded.",
            "s",
            [Q(quantile(q, "sidecar_overhead_seconds", "job"), f"p{int(q * 100)}") for q in (0.5, 0.99)],
            width=24,
        ),
    ]


def latency() -> dash.Dashboard:
    """TTFT / duration percentiles per model, model time against tool time, sidecar overhead."""
    model_rows = _latency_model_rows()
    tool_rows = _latency_tool_rows()
    return new_dashboard(
        "claude-sidecar-latency",
        "Claude sidecar / Latency",
        "Model latency (time to first token, duration) per model, tool latency, and the sidecar's overhead.",
        [*datasource_variables(), prom_variable(*APP_VARIABLE), prom_variable(*MODEL_VARIABLE)],
        [("Model", model_rows), ("Tools and sessions", tool_rows)],
    )
