"""Cache-miss and rate-limit series, from finished events (the metrics sink) and through a real sidecar."""

from __future__ import annotations

from collections.abc import Callable

import anthropic
import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from sidecar.core.events import CallEvent
from sidecar.core.ratelimits import RateLimits, StandardLimit, UnifiedWindow
from sidecar.server.inprocess import RunningSidecar
from sidecar.telemetry.metrics import Metrics
from sidecar.telemetry.metrics_sink import MetricsSink
from sidecar.telemetry.ratelimits import RateLimitBoard
from sidecar.testing.fake_upstream import FakeUpstream
from tests.conftest import API_KEY
from tests.metrics_util import sample


def event(**kw: object) -> CallEvent:
    base: dict[str, object] = {
        "event_id": "e", "started_at": 1.79e9, "app": "billing", "session_id": "s",
        "session_source": "header", "method": "POST", "path": "/v1/messages", "operation": "chat",
        "stream": False,
        "model": "claude-sonnet-4-5", "model_canonical": "claude-sonnet-4-5", "status": 200, "cost_usd": 0.01,
    }  # fmt: skip
    base.update(kw)
    return CallEvent(**base)  # type: ignore[arg-type]


def test_misses_and_their_cost_by_reason() -> None:
    registry = CollectorRegistry()
    sink = MetricsSink(Metrics(registry))
    miss = {"cache_outcome": "miss", "cache_miss_reason": "system_changed", "cache_missed_tokens": 1000}
    sink.write(
        [
            event(**miss, cache_miss_cost_usd=0.00345),
            event(**miss, cache_miss_cost_usd=0.00100),
            event(cache_outcome="hit"),
            event(cache_outcome="miss", cache_miss_reason="evicted", cache_miss_cost_usd=0.5, app="x"),
        ]
    )
    text = generate_latest(registry).decode()
    labels = {"app": "billing", "model": "claude-sonnet-4-5", "reason": "system_changed"}
    assert sample(text, "sidecar_cache_misses_total", **labels) == 2
    assert sample(text, "sidecar_cache_miss_cost_usd_total", **labels) == pytest.approx(0.00445)
    assert sample(text, "sidecar_cache_misses_total", app="x", reason="evicted") == 1
    assert sample(text, "sidecar_cache_misses_total", app="billing", reason="evicted") is None


def test_rate_limits_per_app_and_key() -> None:
    registry = CollectorRegistry()
    sink = MetricsSink(Metrics(registry, max_keys=1))
    limits = RateLimits(
        standard=(StandardLimit("requests", 4000, 3990), StandardLimit("tokens", None, 1000)),
        status="allowed_warning",
        windows=(UnifiedWindow("5h", 0.93), UnifiedWindow("7d", 0.41)),
    )
    sink.write([event(ratelimits=limits, key_fingerprint="kf_1")])
    text = generate_latest(registry).decode()
    assert sample(text, "sidecar_ratelimit_remaining", app="billing", type="requests") == 3990
    assert sample(text, "sidecar_ratelimit_limit", app="billing", type="requests") == 4000
    assert sample(text, "sidecar_ratelimit_limit", app="billing", type="tokens") is None
    assert (
        sample(text, "sidecar_ratelimit_unified_utilization", app="billing", key="kf_1", window="5h") == 0.93
    )
    assert sample(text, "sidecar_ratelimit_unified_status", key="kf_1", status="allowed_warning") == 1
    assert sample(text, "sidecar_ratelimit_unified_status", key="kf_1", status="allowed") == 0
    # The status moves: the old one goes to 0. A second key is past the cap: its series go to "other".
    sink.write([event(ratelimits=RateLimits(status="rejected"), key_fingerprint="kf_1")])
    sink.write([event(ratelimits=RateLimits(status="allowed"), key_fingerprint="kf_2", operation="models")])
    text = generate_latest(registry).decode()
    assert sample(text, "sidecar_ratelimit_unified_status", key="kf_1", status="allowed_warning") == 0
    assert sample(text, "sidecar_ratelimit_unified_status", key="kf_1", status="rejected") == 1
    assert sample(text, "sidecar_ratelimit_unified_status", key="other", status="allowed") == 1


def test_headroom_through_the_sidecar(
    fake: FakeUpstream, make_sidecar: Callable[..., RunningSidecar]
) -> None:
    sidecar = make_sidecar(fake.url)
    client = anthropic.Anthropic(base_url=sidecar.url, api_key=API_KEY, max_retries=0)
    client.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=10,
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"x-app-name": "coder", "x-fake-unified-ratelimit": "5h=0.95,7d_opus=0.2"},
    )
    (stored,) = sidecar.wait_events(1)
    text = httpx.get(f"{sidecar.url}/metrics").text
    key = stored.key_fingerprint
    assert key and API_KEY not in text
    assert sample(text, "sidecar_ratelimit_unified_utilization", app="coder", key=key, window="5h") == 0.95
    assert (
        sample(text, "sidecar_ratelimit_unified_utilization", app="coder", key=key, window="7d_opus") == 0.2
    )
    assert (
        sample(text, "sidecar_ratelimit_unified_status", app="coder", key=key, status="allowed_warning") == 1
    )
    assert sample(text, "sidecar_ratelimit_limit", app="coder", type="requests") == 4000
    remaining = sample(text, "sidecar_ratelimit_remaining", app="coder", type="requests")
    assert remaining is not None and remaining < 4000


def test_the_latest_headroom_per_app_and_key_for_the_admin_api() -> None:
    board = RateLimitBoard(max_sources=2)
    sink = MetricsSink(Metrics(CollectorRegistry()), board)
    key_limits = RateLimits(standard=(StandardLimit("requests", 4000, 1000),))
    window = RateLimits(status="allowed", windows=(UnifiedWindow("5h", 0.5, 1.8e9),))
    sink.write([event(ratelimits=key_limits, key_fingerprint="kf_a", started_at=100.0, duration_s=1.0)])
    sink.write([event(ratelimits=window, key_fingerprint="kf_b", started_at=200.0)])
    assert board.rows() == [
        {"app": "billing", "key": "kf_b", "seen_at": 200.0, "window": "5h", "utilization": 0.5,
         "reset": 1.8e9, "status": "allowed"},
        {"app": "billing", "key": "kf_a", "seen_at": 101.0, "type": "requests", "remaining": 1000,
         "limit": 4000, "utilization": 0.75, "reset": None},
    ]  # fmt: skip
    sink.write([event(ratelimits=window, key_fingerprint="kf_c", started_at=300.0)])
    assert [r["key"] for r in board.rows()] == ["kf_c", "kf_b"]  # bounded: the oldest source is gone
