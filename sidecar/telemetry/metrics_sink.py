"""Updates the Prometheus series from finished events, on the recorder's worker thread.

Per batch, counter increments are summed by series and applied once, and every series' child is looked
up once (``Metrics.child``): ``labels()`` and ``inc()`` each take a lock and cost microseconds, which at
thousands of calls a second would be a visible share of the sidecar's CPU. Histograms are still observed
per event.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sidecar.core.events import CACHE_HIT, SIDECAR_ERROR, CallEvent
from sidecar.core.ratelimits import UNIFIED_STATUSES, RateLimits
from sidecar.telemetry.labels import OTHER, gen_ai_provider, provider_label, status_class
from sidecar.telemetry.metrics import Metrics
from sidecar.telemetry.ratelimits import RateLimitBoard

log = logging.getLogger("sidecar.metrics")


class MetricsSink:
    name = "metrics"

    def __init__(self, metrics: Metrics, ratelimits: RateLimitBoard | None = None) -> None:
        self.m = metrics
        self._warned_models: set[str] = set()
        self._board = ratelimits

    def write(self, events: Sequence[CallEvent]) -> None:
        sums: defaultdict[Any, float] = defaultdict(float)
        # Rate-limit gauges take the batch's latest answer per (app, key): set once, not per event.
        latest: dict[tuple[str, str | None], tuple[RateLimits, float]] = {}
        try:
            for event in events:
                self._observe(event, sums)
                if event.ratelimits is not None:
                    source = (self.m.app_label(event.app), event.key_fingerprint)
                    latest[source] = (event.ratelimits, event.ended_at)
        finally:  # what was counted before a failure still counts
            for child, amount in sums.items():
                child.inc(amount)
            for (app, key), (limits, at) in latest.items():
                self._ratelimits(app, key, limits)
                if self._board is not None:
                    self._board.observe(app, key, limits, at)

    def close(self) -> None:
        return None

    def _observe(self, e: CallEvent, sums: defaultdict[Any, float]) -> None:
        m = self.m
        child = m.child
        model = e.model_canonical or OTHER
        app = m.app_label(e.app)
        provider = provider_label(e)
        stream = "true" if e.stream else "false"
        sums[child(m.requests, model, app, status_class(e), stream, provider)] += 1
        m.overhead.observe(e.overhead_s)
        if e.outcome == SIDECAR_ERROR:
            pass  # the sidecar's own failure: counted in sidecar_internal_errors_total, not the upstream's
        elif e.status >= 500 or e.outcome == "upstream_error":
            sums[child(m.upstream_errors, model, str(e.status) if e.status else "none")] += 1
        elif e.status >= 400 and e.outcome != "refused":
            sums[child(m.upstream_errors, model, str(e.status))] += 1
        if e.outcome == CACHE_HIT:  # a request, not a model call: no tokens, cost or gen_ai_* series
            if e.response_cache_savings_usd:
                sums[child(m.response_cache_savings, app, model)] += e.response_cache_savings_usd
            return
        if e.operation != "chat" or e.outcome == "refused":
            return
        if e.cache_miss_reason is not None:
            sums[child(m.cache_misses, app, model, e.cache_miss_reason)] += 1
            if e.cache_miss_cost_usd:
                sums[child(m.cache_miss_cost, app, model, e.cache_miss_reason)] += e.cache_miss_cost_usd
        if e.cache_breakpoint_injected:
            sums[child(m.cache_injected, model, app)] += 1
        u = e.usage
        w5, w1 = u.write_buckets()
        for kind, n in (
            ("input", u.input_tokens),
            ("output", u.output_tokens),
            ("cache_read", u.cache_read_input_tokens),
            ("cache_write_5m", w5),
            ("cache_write_1h", w1),
        ):
            if n:
                sums[child(m.tokens, model, app, kind, provider)] += n
        op, gen_ai = "chat", gen_ai_provider(e)
        if (e.status and e.status < 400) or u.total_input or u.output_tokens:
            child(m.token_usage, "input", model, op, gen_ai).observe(u.total_input)
            child(m.token_usage, "output", model, op, gen_ai).observe(u.output_tokens)
        child(m.op_duration, model, op, gen_ai, e.error_type or "").observe(e.duration_s)
        if e.ttft_s is not None:
            child(m.ttfc, model, op, gen_ai).observe(e.ttft_s)
        if e.cost_usd is not None:
            sums[child(m.cost, model, app, provider)] += e.cost_usd
            # A counter cannot go down: a call that wrote more than it saved adds to the premium counter,
            # so savings_total - premium_total is the exact net.
            if e.cache_savings_usd > 0:
                sums[child(m.cache_savings, model, app)] += e.cache_savings_usd
            elif e.cache_savings_usd < 0:
                sums[child(m.cache_write_premium, model, app)] += -e.cache_savings_usd
        elif e.model is not None and e.status and e.status < 400:
            sums[m.unpriced] += 1
            if e.model not in self._warned_models and len(self._warned_models) < 1000:
                self._warned_models.add(e.model)
                log.warning(
                    "no price for model %r: its calls are counted in sidecar_unpriced_requests_total",
                    e.model[:100],
                )

    def _ratelimits(self, app: str, key: str | None, limits: RateLimits) -> None:
        """The latest headroom an answer reported: gauges set, never summed."""
        m, child = self.m, self.m.child
        for limit in limits.standard:
            if limit.remaining is not None:
                child(m.ratelimit_remaining, app, limit.kind).set(limit.remaining)
            if limit.limit is not None:
                child(m.ratelimit_limit, app, limit.kind).set(limit.limit)
        if not limits.unified:
            return
        key_label = m.key_label(key or "none")
        for window in limits.windows:
            if window.utilization is not None:
                child(m.ratelimit_utilization, app, key_label, m.window_label(window.name)).set(
                    window.utilization
                )
        if limits.status is not None:
            current = m.status_label(limits.status)
            for status in {*UNIFIED_STATUSES, current}:
                child(m.ratelimit_status, app, key_label, status).set(1.0 if status == current else 0.0)
