"""Every Prometheus series the sidecar exports, declared once with closed label sets (SPEC §13).

Request-path code never touches these objects: ``MetricsSink`` updates them from finished events on
the recorder's worker thread. Label values that come from clients (app, tool) are capped.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from sidecar.core.events import CallEvent

PROVIDER = "anthropic"
_MAX_CHILDREN = 100_000  # bound on the memo of labelled series (see Metrics.child)
OTHER = "other"
TOKEN_TYPES = ("input", "output", "cache_read", "cache_write_5m", "cache_write_1h")
# OTel GenAI semantic-convention bucket boundaries.
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TTFC_BUCKETS = (0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48)
OVERHEAD_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
RATELIMIT_TYPES = ("requests", "tokens", "input_tokens", "output_tokens")
_RATELIMIT_HEADERS = {
    f"anthropic-ratelimit-{t.replace('_', '-')}-remaining".encode(): t for t in RATELIMIT_TYPES
}
TOOL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
SESSION_COST_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 25, 50)
SESSION_TIME_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
COUNT_BUCKETS = (1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233)
BUDGET_LIMITS = (
    "session_usd",
    "session_tokens",
    "session_model_calls",
    "session_tool_calls",
    "app_daily_usd",
    "blocked",
)


class LabelCap:
    """Admits at most ``limit`` distinct values; later ones map to ``other`` (bounded cardinality)."""

    def __init__(self, limit: int, initial: Sequence[str] = ()) -> None:
        self._limit = limit
        self._seen: set[str] = set(initial)
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        with self._lock:
            if len(self._seen) < self._limit:
                self._seen.add(value)
                return value
        return OTHER


def status_class(event: CallEvent) -> str:
    if event.status <= 0:
        return "error"
    return f"{event.status // 100}xx" if 200 <= event.status < 600 else "error"


class Metrics:
    """Holds the metric objects on one registry (a fresh registry per app keeps tests isolated)."""

    def __init__(self, registry: CollectorRegistry, *, max_apps: int = 50, max_tools: int = 100) -> None:
        self.registry = registry
        self.app_label = LabelCap(max_apps, ("default",))
        self.tool_label = LabelCap(max_tools)
        r = registry
        self.token_usage = Histogram(
            "gen_ai_client_token_usage",
            "Tokens used per call (GenAI conventions: input includes cache).",
            ["gen_ai_token_type", "gen_ai_request_model", "gen_ai_operation_name", "gen_ai_provider_name"],
            buckets=TOKEN_BUCKETS,
            registry=r,
        )
        self.op_duration = Histogram(
            "gen_ai_client_operation_duration_seconds",
            "Duration of upstream calls as the client sees them.",
            ["gen_ai_request_model", "gen_ai_operation_name", "gen_ai_provider_name", "error_type"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.ttfc = Histogram(
            "gen_ai_client_operation_time_to_first_chunk_seconds",
            "Time to the first content chunk.",
            ["gen_ai_request_model", "gen_ai_operation_name", "gen_ai_provider_name"],
            buckets=TTFC_BUCKETS,
            registry=r,
        )
        self.requests = Counter(
            "sidecar_requests",
            "Calls forwarded or refused.",
            ["model", "app", "status_class", "stream"],
            registry=r,
        )
        self.tokens = Counter(
            "sidecar_tokens",
            "Tokens by Anthropic bucket (input = uncached input).",
            ["model", "app", "type"],
            registry=r,
        )
        self.cost = Counter("sidecar_cost_usd", "Dollar cost of calls.", ["model", "app"], registry=r)
        self.unpriced = Counter("sidecar_unpriced_requests", "Calls whose model has no price.", registry=r)
        self.overhead = Histogram(
            "sidecar_overhead_seconds",
            "Time spent in the sidecar itself per call.",
            buckets=OVERHEAD_BUCKETS,
            registry=r,
        )
        self.upstream_errors = Counter(
            "sidecar_upstream_errors", "Upstream error answers and failures.", ["model", "status"], registry=r
        )
        self.ratelimit_remaining = Gauge(
            "sidecar_ratelimit_remaining",
            "Remaining quota from Anthropic's rate-limit headers.",
            ["app", "type"],
            registry=r,
        )
        self.cache_savings = Counter(
            "sidecar_cache_savings_usd", "Dollars saved by prompt caching, net.", ["model", "app"], registry=r
        )
        self.cache_write_premium = Counter(
            "sidecar_cache_write_premium_usd",
            "Dollars that cache writes cost above plain input on calls that read less than they wrote "
            "(net savings = sidecar_cache_savings_usd_total - this).",
            ["model", "app"],
            registry=r,
        )
        self.cache_injected = Counter(
            "sidecar_cache_breakpoints_injected",
            "Calls to which the sidecar added prompt-cache breakpoints.",
            ["model", "app"],
            registry=r,
        )
        self.cache_busting = Gauge(
            "sidecar_cache_busting",
            "1 while an app's system prompt changes on most calls (cache busting), else 0.",
            ["app"],
            registry=r,
        )
        self.cache_wasted_write_tokens = Counter(
            "sidecar_cache_wasted_write_tokens",
            "Cache-write tokens never read within their TTL.",
            ["model", "app"],
            registry=r,
        )
        self.cache_plans = Counter(
            "sidecar_cache_plans", "Prompt-cache planner decisions on /v1/messages.", ["reason"], registry=r
        )
        self.events = Counter(
            "sidecar_events", "Events handed to each sink.", ["sink", "outcome"], registry=r
        )
        self.sink_errors = Counter("sidecar_sink_errors", "Sink write failures.", ["sink"], registry=r)
        self.dropped = Counter(
            "sidecar_events_dropped", "Events lost at a capacity limit.", ["reason"], registry=r
        )
        self.queue_depth = Gauge("sidecar_recorder_queue_events", "Events waiting for the sinks.", registry=r)
        self.spool_pending = Gauge(
            "sidecar_spool_pending_events", "Events waiting in the local spool.", registry=r
        )
        self.ship_lag = Gauge(
            "sidecar_ship_lag_seconds", "Age of the oldest event not yet in ClickHouse.", registry=r
        )
        self.ship_errors = Counter("sidecar_ship_errors", "Failed ClickHouse insert attempts.", registry=r)
        self.shipped = Counter("sidecar_events_shipped", "Events confirmed in ClickHouse.", registry=r)
        self.clickhouse_quarantined = Counter(
            "sidecar_clickhouse_quarantined_events",
            "Events ClickHouse kept rejecting, moved to the dead-letter file beside the spool.",
            registry=r,
        )
        self.internal_errors = Counter(
            "sidecar_internal_errors",
            "Failures inside the sidecar (never the call).",
            ["component"],
            registry=r,
        )
        self.build_info = Gauge(
            "sidecar_build_info", "Version and pricing table date.", ["version", "pricing_date"], registry=r
        )
        self._children: dict[tuple[object, tuple[str, ...]], Any] = {}
        self._declare_session_metrics(r)
        self._init_series()

    def _declare_session_metrics(self, r: CollectorRegistry) -> None:
        self.tool_latency = Histogram(
            "sidecar_tool_latency_seconds",
            "Time the app spent running a tool (tool_use answer → tool_result request).",
            ["tool", "app"],
            buckets=TOOL_BUCKETS,
            registry=r,
        )
        self.active_sessions = Gauge(
            "sidecar_active_sessions", "Sessions seen within the idle timeout.", registry=r
        )
        self.session_cost = Histogram(
            "sidecar_session_cost_usd",
            "Cost of a session, observed when it closes.",
            ["app"],
            buckets=SESSION_COST_BUCKETS,
            registry=r,
        )
        self.session_tokens = Histogram(
            "sidecar_session_tokens",
            "Tokens of a session (all buckets), on close.",
            ["app"],
            buckets=TOKEN_BUCKETS,
            registry=r,
        )
        self.session_model_calls = Histogram(
            "sidecar_session_model_calls",
            "Model calls per session, on close.",
            ["app"],
            buckets=COUNT_BUCKETS,
            registry=r,
        )
        self.session_tool_calls = Histogram(
            "sidecar_session_tool_calls",
            "Tool calls per session, on close.",
            ["app"],
            buckets=COUNT_BUCKETS,
            registry=r,
        )
        self.session_duration = Histogram(
            "sidecar_session_duration_seconds",
            "Wall time of a session, on close.",
            ["app"],
            buckets=SESSION_TIME_BUCKETS,
            registry=r,
        )
        self.session_model_time = Histogram(
            "sidecar_session_model_time_seconds",
            "Time a session spent waiting on the model, on close.",
            ["app"],
            buckets=SESSION_TIME_BUCKETS,
            registry=r,
        )
        self.session_tool_time = Histogram(
            "sidecar_session_tool_time_seconds",
            "Time a session spent running tools, on close.",
            ["app"],
            buckets=SESSION_TIME_BUCKETS,
            registry=r,
        )
        self.budget_refusals = Counter(
            "sidecar_budget_refusals", "Calls refused by a cost ceiling.", ["app", "limit"], registry=r
        )
        self.budget_warnings = Counter(
            "sidecar_budget_warnings",
            "Soft budget warnings (80 % reached, or a would-be refusal in warn mode).",
            ["app", "limit"],
            registry=r,
        )
        self.budget_backend_errors = Counter(
            "sidecar_budget_backend_errors",
            "Budget counter backend failures, by fail-mode outcome.",
            ["outcome"],
            registry=r,
        )

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
        for limit in BUDGET_LIMITS:
            self.budget_refusals.labels(app="default", limit=limit)
            self.budget_warnings.labels(app="default", limit=limit)
        for outcome in ("redis_unavailable", "redis_refused", "settle_lost"):
            self.budget_backend_errors.labels(outcome=outcome)

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

    def observe_ratelimit(self, app: str, headers: Sequence[tuple[bytes, bytes]]) -> None:
        """``anthropic-ratelimit-<type>-remaining`` headers → ``sidecar_ratelimit_remaining{app,type}``."""
        for name, value in headers:
            if len(name) < 30 or not name.endswith((b"-remaining", b"-Remaining")):
                continue
            kind = _RATELIMIT_HEADERS.get(name.lower())
            if kind is None:
                continue
            try:
                self.child(self.ratelimit_remaining, self.app_label(app), kind).set(float(value))
            except ValueError:
                continue

    def on_cache_busting(self, app: str, busting: bool) -> None:
        self.cache_busting.labels(app=self.app_label(app)).set(1.0 if busting else 0.0)

    def on_cache_plan(self, reason: str) -> None:
        self.child(self.cache_plans, reason).inc()

    def on_wasted_writes(self, model: str, app: str, tokens: int) -> None:
        self.cache_wasted_write_tokens.labels(model=model, app=self.app_label(app)).inc(tokens)

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
