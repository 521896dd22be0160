"""Updates the Prometheus series from finished events, on the recorder's worker thread."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sidecar.core.events import CallEvent
from sidecar.telemetry.metrics import OTHER, PROVIDER, Metrics, status_class

log = logging.getLogger("sidecar.metrics")


class MetricsSink:
    name = "metrics"

    def __init__(self, metrics: Metrics) -> None:
        self.m = metrics
        self._warned_models: set[str] = set()

    def write(self, events: Sequence[CallEvent]) -> None:
        for event in events:
            self.observe(event)

    def close(self) -> None:
        return None

    def observe(self, e: CallEvent) -> None:
        m = self.m
        model = e.model_canonical or OTHER
        app = m.app_label(e.app)
        m.requests.labels(
            model=model, app=app, status_class=status_class(e), stream="true" if e.stream else "false"
        ).inc()
        m.overhead.observe(e.overhead_s)
        if e.status >= 500 or e.outcome == "upstream_error":
            m.upstream_errors.labels(model=model, status=str(e.status) if e.status else "none").inc()
        elif e.status >= 400 and e.outcome != "refused":
            m.upstream_errors.labels(model=model, status=str(e.status)).inc()
        if e.operation != "chat" or e.outcome == "refused":
            return
        if e.cache_breakpoint_injected:
            m.cache_injected.labels(model=model, app=app).inc()
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
                m.tokens.labels(model=model, app=app, type=kind).inc(n)
        op = "chat"
        if (e.status and e.status < 400) or u.total_input or u.output_tokens:
            m.token_usage.labels(
                gen_ai_token_type="input",
                gen_ai_request_model=model,
                gen_ai_operation_name=op,
                gen_ai_provider_name=PROVIDER,
            ).observe(u.total_input)
            m.token_usage.labels(
                gen_ai_token_type="output",
                gen_ai_request_model=model,
                gen_ai_operation_name=op,
                gen_ai_provider_name=PROVIDER,
            ).observe(u.output_tokens)
        m.op_duration.labels(
            gen_ai_request_model=model,
            gen_ai_operation_name=op,
            gen_ai_provider_name=PROVIDER,
            error_type=e.error_type or "",
        ).observe(e.duration_s)
        if e.ttft_s is not None:
            m.ttfc.labels(
                gen_ai_request_model=model, gen_ai_operation_name=op, gen_ai_provider_name=PROVIDER
            ).observe(e.ttft_s)
        if e.cost_usd is not None:
            m.cost.labels(model=model, app=app).inc(e.cost_usd)
            # A counter cannot go down: a call that wrote more than it saved adds to the premium counter,
            # so savings_total - premium_total is the exact net.
            if e.cache_savings_usd > 0:
                m.cache_savings.labels(model=model, app=app).inc(e.cache_savings_usd)
            elif e.cache_savings_usd < 0:
                m.cache_write_premium.labels(model=model, app=app).inc(-e.cache_savings_usd)
        elif e.model is not None and e.status and e.status < 400:
            m.unpriced.inc()
            if e.model not in self._warned_models and len(self._warned_models) < 1000:
                self._warned_models.add(e.model)
                log.warning(
                    "no price for model %r: its calls are counted in sidecar_unpriced_requests_total",
                    e.model[:100],
                )
