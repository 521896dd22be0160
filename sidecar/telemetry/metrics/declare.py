"""How the sidecar declares a series, and the bucket boundaries its histograms share."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# OTel GenAI semantic-convention bucket boundaries.
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TTFC_BUCKETS = (0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48)
OVERHEAD_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
TOOL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
SESSION_COST_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 25, 50)
SESSION_TIME_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
COUNT_BUCKETS = (1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233)
RTT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
GEN_AI = "gen_ai_request_model gen_ai_operation_name gen_ai_provider_name"
# Per-session histograms (label ``app``), observed once when a session closes, in Metrics' attribute order.
PER_SESSION = (
    ("sidecar_session_cost_usd", "Cost of a session, observed when it closes.", SESSION_COST_BUCKETS),
    ("sidecar_session_tokens", "Tokens of a session (all buckets), on close.", TOKEN_BUCKETS),
    ("sidecar_session_model_calls", "Model calls per session, on close.", COUNT_BUCKETS),
    ("sidecar_session_tool_calls", "Tool calls per session, on close.", COUNT_BUCKETS),
    ("sidecar_session_duration_seconds", "Wall time of a session, on close.", SESSION_TIME_BUCKETS),
    ("sidecar_session_model_time_seconds", "Time a session spent waiting on the model, on close.",
     SESSION_TIME_BUCKETS),
    ("sidecar_session_tool_time_seconds", "Time a session spent running tools, on close.",
     SESSION_TIME_BUCKETS),
)  # fmt: skip


class On:
    """Declares series on one registry; label names are given as one space-separated string."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def counter(self, name: str, doc: str, labels: str = "") -> Counter:
        return Counter(name, doc, labels.split(), registry=self.registry)

    def gauge(self, name: str, doc: str, labels: str = "") -> Gauge:
        return Gauge(name, doc, labels.split(), registry=self.registry)

    def histogram(self, name: str, doc: str, labels: str, buckets: Sequence[float]) -> Histogram:
        return Histogram(name, doc, labels.split(), buckets=buckets, registry=self.registry)
