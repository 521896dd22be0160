"""The sidecar's series on one registry (:class:`Metrics`): calls, prompt and response cache, the event
pipeline, budgets, sessions, and the fleet's (:mod:`sidecar.telemetry.metrics.fleet`)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry

from sidecar.core.ratelimits import UNIFIED_STATUSES
from sidecar.telemetry.labels import BUDGET_LIMITS, RESPONSE_CACHE_RESULTS, LabelCap
from sidecar.telemetry.metrics.declare import (
    DURATION_BUCKETS,
    GEN_AI,
    OVERHEAD_BUCKETS,
    PER_SESSION,
    TOKEN_BUCKETS,
    TOOL_BUCKETS,
    TTFC_BUCKETS,
    On,
)
from sidecar.telemetry.metrics.fleet import declare_fleet_metrics

_MAX_CHILDREN = 100_000  # bound on the memo of labelled series (see Metrics.child)


class Metrics:
    """Holds the metric objects on one registry (a fresh registry per app keeps tests isolated)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        max_apps: int = 50,
        max_tools: int = 100,
        max_fleets: int = 50,
        max_keys: int = 50,
    ) -> None:
        self.registry = registry
        self.app_label = LabelCap(max_apps, ("default",))
        self.tool_label = LabelCap(max_tools)
        self.key_label = LabelCap(max_keys)
        self.window_label = LabelCap(16)
        self.status_label = LabelCap(16, UNIFIED_STATUSES)
        self._children: dict[tuple[object, tuple[str, ...]], Any] = {}
        on = On(registry)
        self._declare_call_metrics(on)
        self._declare_cache_metrics(on)
        self._declare_pipeline_metrics(on)
        self._declare_session_metrics(on)
        self.fleet = declare_fleet_metrics(registry, max_fleets=max_fleets)
        self._init_series()

    def _declare_call_metrics(self, on: On) -> None:
        self.token_usage = on.histogram(
            "gen_ai_client_token_usage",
            "Tokens used per call (GenAI conventions: input includes cache).",
            "gen_ai_token_type " + GEN_AI,
            TOKEN_BUCKETS,
        )
        self.op_duration = on.histogram(
            "gen_ai_client_operation_duration_seconds",
            "Duration of upstream calls as the client sees them.",
            GEN_AI + " error_type",
            DURATION_BUCKETS,
        )
        self.ttfc = on.histogram(
            "gen_ai_client_operation_time_to_first_chunk_seconds",
            "Time to the first content chunk.",
            GEN_AI,
            TTFC_BUCKETS,
        )
        # ``provider``: anthropic | bedrock | vertex (SPEC §18).
        self.requests = on.counter(
            "sidecar_requests", "Calls forwarded or refused.", "model app status_class stream provider"
        )
        self.tokens = on.counter(
            "sidecar_tokens",
            "Tokens by Anthropic bucket (input = uncached input).",
            "model app type provider",
        )
        self.cost = on.counter("sidecar_cost_usd", "Dollar cost of calls.", "model app provider")
        self.unpriced = on.counter("sidecar_unpriced_requests", "Calls whose model has no price.")
        self.overhead = on.histogram(
            "sidecar_overhead_seconds", "Time spent in the sidecar itself per call.", "", OVERHEAD_BUCKETS
        )
        self.upstream_errors = on.counter(
            "sidecar_upstream_errors", "Upstream error answers and failures.", "model status"
        )
        self.ratelimit_remaining = on.gauge(
            "sidecar_ratelimit_remaining", "Remaining quota from Anthropic's rate-limit headers.", "app type"
        )
        self.ratelimit_limit = on.gauge(
            "sidecar_ratelimit_limit", "The quota from Anthropic's rate-limit headers.", "app type"
        )
        self.ratelimit_utilization = on.gauge(
            "sidecar_ratelimit_unified_utilization",
            "Share (0-1) of a subscription rate-limit window used, per API key fingerprint.",
            "app key window",
        )
        self.ratelimit_status = on.gauge(
            "sidecar_ratelimit_unified_status",
            "1 for the current subscription rate-limit status of an API key fingerprint, else 0.",
            "app key status",
        )

    def _declare_cache_metrics(self, on: On) -> None:
        self.cache_savings = on.counter(
            "sidecar_cache_savings_usd", "Dollars saved by prompt caching, net.", "model app"
        )
        self.cache_write_premium = on.counter(
            "sidecar_cache_write_premium_usd",
            "Dollars that cache writes cost above plain input on calls that read less than they wrote "
            "(net savings = sidecar_cache_savings_usd_total - this).",
            "model app",
        )
        self.cache_injected = on.counter(
            "sidecar_cache_breakpoints_injected",
            "Calls to which the sidecar added prompt-cache breakpoints.",
            "model app",
        )
        self.cache_busting = on.gauge(
            "sidecar_cache_busting",
            "1 while an app's system prompt changes on most calls (cache busting), else 0.",
            "app",
        )
        self.cache_wasted_write_tokens = on.counter(
            "sidecar_cache_wasted_write_tokens",
            "Cache-write tokens never read within their TTL.",
            "model app",
        )
        self.cache_plans = on.counter(
            "sidecar_cache_plans", "Prompt-cache planner decisions on /v1/messages.", "reason"
        )
        self.cache_misses = on.counter(
            "sidecar_cache_misses",
            "Calls that paid again for a prefix their session had cached, by the sidecar's reason.",
            "app model reason",
        )
        self.cache_miss_cost = on.counter(
            "sidecar_cache_miss_cost_usd",
            "Dollars cache misses cost above reading the prefix from the cache.",
            "app model reason",
        )
        self.response_cache_requests = on.counter(
            "sidecar_response_cache_requests",
            "Calls the response cache took part in: hit, miss, bypass (not looked up), store_error "
            "(a failed lookup or write; the call went on).",
            "app result",
        )
        self.response_cache_savings = on.counter(
            "sidecar_response_cache_savings_usd",
            "What the answers replayed from the response cache had cost when first made.",
            "app model",
        )
        self.response_cache_bytes = on.gauge(
            "sidecar_response_cache_bytes",
            "Stored bytes held by the response cache (Redis: every replica's entries, as last read).",
        )

    def _declare_pipeline_metrics(self, on: On) -> None:
        self.events = on.counter("sidecar_events", "Events handed to each sink.", "sink outcome")
        self.sink_errors = on.counter("sidecar_sink_errors", "Sink write failures.", "sink")
        self.dropped = on.counter("sidecar_events_dropped", "Events lost at a capacity limit.", "reason")
        self.queue_depth = on.gauge("sidecar_recorder_queue_events", "Events waiting for the sinks.")
        self.spool_pending = on.gauge("sidecar_spool_pending_events", "Events waiting in the local spool.")
        self.ship_lag = on.gauge("sidecar_ship_lag_seconds", "Age of the oldest event not yet in ClickHouse.")
        self.ship_errors = on.counter("sidecar_ship_errors", "Failed ClickHouse insert attempts.")
        self.shipped = on.counter("sidecar_events_shipped", "Events confirmed in ClickHouse.")
        self.clickhouse_quarantined = on.counter(
            "sidecar_clickhouse_quarantined_events",
            "Events ClickHouse kept rejecting, moved to the dead-letter file beside the spool.",
        )
        self.internal_errors = on.counter(
            "sidecar_internal_errors", "Failures inside the sidecar (never the call).", "component"
        )
        self.build_info = on.gauge(
            "sidecar_build_info", "Version and pricing table date.", "version pricing_date"
        )
        self.budget_refusals = on.counter(
            "sidecar_budget_refusals", "Calls refused by a cost ceiling.", "app limit"
        )
        self.budget_warnings = on.counter(
            "sidecar_budget_warnings",
            "Soft budget warnings (80 % reached, or a would-be refusal in warn mode).",
            "app limit",
        )
        self.budget_backend_errors = on.counter(
            "sidecar_budget_backend_errors",
            "Budget counter backend failures, by fail-mode outcome.",
            "outcome",
        )

    def _declare_session_metrics(self, on: On) -> None:
        self.tool_latency = on.histogram(
            "sidecar_tool_latency_seconds",
            "Time the app spent running a tool (tool_use answer → tool_result request).",
            "tool app",
            TOOL_BUCKETS,
        )
        self.active_sessions = on.gauge("sidecar_active_sessions", "Sessions seen within the idle timeout.")
        (
            self.session_cost,
            self.session_tokens,
            self.session_model_calls,
            self.session_tool_calls,
            self.session_duration,
            self.session_model_time,
            self.session_tool_time,
        ) = (on.histogram(name, doc, "app", buckets) for name, doc, buckets in PER_SESSION)

    def _init_series(self) -> None:
        for reason in ("queue_full", "spool_full", "shutdown"):
            self.dropped.labels(reason=reason)
        for sink in ("sqlite", "log", "metrics", "sessions", "deadman", "clickhouse"):
            self.events.labels(sink=sink, outcome="ok")
            self.events.labels(sink=sink, outcome="error")
            self.sink_errors.labels(sink=sink)
        self.internal_errors.labels(component="accounting")
        self.internal_errors.labels(component="policy")
        self.internal_errors.labels(component="housekeeping")
        self.internal_errors.labels(component="proxy")
        for limit in BUDGET_LIMITS:
            self.budget_refusals.labels(app="default", limit=limit)
            self.budget_warnings.labels(app="default", limit=limit)
        for outcome in ("redis_unavailable", "redis_refused", "settle_lost"):
            self.budget_backend_errors.labels(outcome=outcome)
        for result in RESPONSE_CACHE_RESULTS:
            self.response_cache_requests.labels(app="default", result=result)

    def set_build_info(self, version: str, pricing_date: str) -> None:
        self.build_info.labels(version=version, pricing_date=pricing_date).set(1)

    def on_dropped(self, reason: str, n: int) -> None:
        self.dropped.labels(reason=reason).inc(n)

    def child(self, metric: Any, *values: str) -> Any:
        """``metric.labels(*values)`` (values in the declared label order), looked up once per series:
        ``labels()`` checks its arguments and takes a lock on every call, and series are updated
        thousands of times a second. Safe from any thread; a race only repeats a lookup. Label values are
        capped where they come from clients, so the memo stays small; past its bound it just stops
        growing."""
        key = (metric, values)
        found = self._children.get(key)
        if found is None:
            found = metric.labels(*values)
            if len(self._children) < _MAX_CHILDREN:
                self._children[key] = found
        return found

    def on_sink_result(self, sink: str, outcome: str, n: int) -> None:
        self.child(self.events, sink, outcome).inc(n)
        if outcome != "ok":
            self.sink_errors.labels(sink=sink).inc()

    def on_queue_depth(self, depth: int) -> None:
        self.queue_depth.set(depth)

    def on_cache_busting(self, app: str, busting: bool) -> None:
        self.cache_busting.labels(app=self.app_label(app)).set(1.0 if busting else 0.0)

    def on_cache_plan(self, reason: str) -> None:
        self.child(self.cache_plans, reason).inc()

    def on_wasted_writes(self, model: str, app: str, tokens: int) -> None:
        self.cache_wasted_write_tokens.labels(model=model, app=self.app_label(app)).inc(tokens)

    def on_response_cache(self, app: str, result: str) -> None:
        self.child(self.response_cache_requests, self.app_label(app), result).inc()

    def on_budget_refusal(self, app: str, limit: str) -> None:
        self.budget_refusals.labels(app=self.app_label(app), limit=limit).inc()

    def on_budget_warning(self, app: str, limit: str) -> None:
        self.budget_warnings.labels(app=self.app_label(app), limit=limit).inc()

    def on_budget_backend_error(self, kind: str) -> None:
        self.budget_backend_errors.labels(outcome=kind).inc()

    def on_shipped(self, n: int) -> None:
        self.shipped.inc(n)

    def on_ship_error(self) -> None:
        self.ship_errors.inc()

    def count_internal_error(self, component: str) -> None:
        self.internal_errors.labels(component=component).inc()
