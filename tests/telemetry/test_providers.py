"""Where a call went, in every output (SPEC R-CP-3, R-CP-5): metrics, spans, logs — credentials in none."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry, generate_latest

from sidecar.core.events import CallEvent
from sidecar.core.usage import Usage
from sidecar.telemetry.logs import event_log_fields, redact
from sidecar.telemetry.metrics import Metrics
from sidecar.telemetry.metrics_sink import MetricsSink
from sidecar.telemetry.tracing import TracingSink
from tests.metrics_util import sample


def event(provider: str, region: str | None = None) -> CallEvent:
    e = CallEvent("e-" + provider, 1_765_000_000.0, "agents", "s", "header", "POST", "/x", "chat", True)
    e.model, e.model_canonical, e.status, e.duration_s = "m", "claude-sonnet-4-5", 200, 0.5
    e.usage, e.cost_usd = Usage(input_tokens=10, output_tokens=5), 0.001
    e.provider, e.cloud_region = provider, region
    return e


@pytest.mark.parametrize(
    ("provider", "gen_ai"),
    [("anthropic", "anthropic"), ("bedrock", "aws.bedrock"), ("vertex", "gcp.vertex_ai")],
)
def test_series_carry_the_provider(provider: str, gen_ai: str) -> None:
    registry = CollectorRegistry()
    MetricsSink(Metrics(registry)).write([event(provider, "us")])
    text = generate_latest(registry).decode()
    common = {"model": "claude-sonnet-4-5", "app": "agents", "provider": provider}
    assert sample(text, "sidecar_requests_total", **common, status_class="2xx", stream="true") == 1
    assert sample(text, "sidecar_tokens_total", **common, type="input") == 10
    assert sample(text, "sidecar_cost_usd_total", **common) == 0.001
    assert (
        sample(
            text,
            "gen_ai_client_token_usage_count",
            gen_ai_provider_name=gen_ai,
            gen_ai_token_type="output",
            gen_ai_request_model="claude-sonnet-4-5",
        )
        == 1
    )


def test_an_unknown_provider_is_other_not_a_new_series_value() -> None:
    registry = CollectorRegistry()
    MetricsSink(Metrics(registry)).write([event("azure")])
    text = generate_latest(registry).decode()
    assert sample(text, "sidecar_requests_total", provider="other") == 1


def test_spans_name_the_provider() -> None:
    exporter = InMemorySpanExporter()
    sink = TracingSink(exporter)
    traced = event("bedrock", "us")
    traced.trace_id, traced.span_id = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    sink.write([traced])
    sink.close()
    (span,) = exporter.get_finished_spans()
    assert span.attributes is not None and span.attributes["gen_ai.provider.name"] == "aws.bedrock"


def test_log_lines_name_the_provider_and_mask_cloud_credentials() -> None:
    assert event_log_fields(event("vertex"))["provider"] == "vertex"
    line = "creds AKIAIOSFODNN7EXAMPLE ASIAY34FZKBOKMUTVV7A token ya29.a0AfH6SMBxyz-_1 ok"
    masked = redact(line)
    assert "AKIAIOSFODNN7EXAMPLE" not in masked and "ASIAY34" not in masked and "ya29.a0" not in masked
    assert masked.startswith("creds [REDACTED]") and masked.endswith(" ok")
    assert redact("the Asia region and akia words stay") == "the Asia region and akia words stay"
