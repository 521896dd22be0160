"""Fleet bookkeeping: RTT percentiles, status sanitising, pruning, per-fleet gauges."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from sidecar.fleet.registry import RTT_WINDOW, FleetRegistry, sanitize_status
from sidecar.telemetry.metrics import declare_fleet_metrics
from tests.fleet.test_heartbeat import FakeLink
from tests.metrics_util import sample


def test_rtt_percentiles_over_the_last_window() -> None:
    registry = FleetRegistry(declare_fleet_metrics(CollectorRegistry()))
    member, _ = registry.connect("f", "m", FakeLink(), 0.0)
    assert member.rtt_quantile(0.5) is None
    for ms in range(1, 101):  # 1..100 ms; the window keeps the last 64: 37..100 ms
        registry.record_pong(member, ms / 1000, float(ms))
    assert RTT_WINDOW == 64
    # Nearest rank over 64 samples: p50 -> rank 32 -> 37 + 31 = 68 ms; p99 -> rank ceil(63.36) = 64 -> 100 ms.
    assert member.rtt_quantile(0.5) == 0.068
    assert member.rtt_quantile(0.99) == 0.100
    doc = member.to_json(150.0)
    assert (doc["rtt_p50_s"], doc["rtt_p99_s"], doc["last_pong"], doc["connection_age_s"]) == (
        0.068,
        0.1,
        100.0,
        150.0,
    )


def test_sanitize_status() -> None:
    doc = {
        "type": "status",
        "calls_in_progress": 3,
        "ok": True,
        "load": 0.5,
        "note": "x" * 500,
        "deep": {"a": 1},
    }
    assert sanitize_status(doc) == {"calls_in_progress": 3, "ok": True, "load": 0.5, "note": "x" * 200}
    many = {f"k{i}": i for i in range(50)}
    assert len(sanitize_status(many)) == 20


def test_prune_forget_and_fleet_gauges() -> None:
    prom = CollectorRegistry()
    registry = FleetRegistry(declare_fleet_metrics(prom))
    a, b = FakeLink(), FakeLink()
    ma, _ = registry.connect("voice", "a", a, 100.0)
    mb, _ = registry.connect("voice", "b", b, 100.0)
    registry.record_pong(ma, 0.001, 130.0)
    registry.disconnect(mb, b, "abnormal", 140.0, 1006)
    assert not registry.disconnect(mb, b, "abnormal", 141.0, 1006)  # once only
    registry.export_gauges()
    text = generate_latest(prom).decode()
    assert sample(text, "sidecar_deadman_up", check="fleet:voice") == 1
    assert (
        sample(text, "sidecar_deadman_last_seen_timestamp_seconds", check="fleet:voice") == 130.0
    )  # last pong
    assert sample(text, "sidecar_fleet_members", fleet="voice") == 1
    assert registry.prune(200.0, forget_after_s=100.0) == 0  # b gone for 60 s only
    assert registry.prune(241.0, forget_after_s=100.0) == 1
    assert [m["member"] for m in registry.snapshot(241.0)[0]["members"]] == ["a"]
    assert not registry.forget("voice", "a")  # connected members cannot be forgotten
    registry.disconnect(ma, a, "ping_timeout", 250.0, 1011)
    registry.export_gauges()
    assert sample(generate_latest(prom).decode(), "sidecar_deadman_up", check="fleet:voice") == 0
    assert registry.forget("voice", "a")
    assert registry.snapshot(260.0) == [
        {"fleet": "voice", "connected": 0, "known": 0, "last_seen": 130.0, "members": []}
    ]


def test_fleet_label_is_capped() -> None:
    prom = CollectorRegistry()
    registry = FleetRegistry(declare_fleet_metrics(prom, max_fleets=2))
    for name in ("a", "b", "c", "d"):
        registry.connect(name, "m", FakeLink(), 0.0)
    text = generate_latest(prom).decode()
    assert sample(text, "sidecar_fleet_members", fleet="a") == 1
    assert sample(text, "sidecar_fleet_members", fleet="other") == 2
    assert [f["fleet"] for f in registry.snapshot(1.0)] == ["a", "b", "c", "d"]  # the view keeps real names
