"""The one declaration of every series: fleet and dead-man series live on the same registry as the rest."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from sidecar.telemetry.metrics import Metrics, declare_fleet_metrics
from tests.metrics_util import sample


def test_metrics_declares_the_fleet_series_with_the_others() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    names = {family.name for family in registry.collect()}
    assert {"sidecar_requests", "sidecar_fleet_members", "sidecar_deadman_up"} <= names
    assert {"sidecar_alert_notifications", "sidecar_session_cost_usd"} <= names
    text = generate_latest(registry).decode()
    # Delivery outcomes exist at zero before the first alert.
    assert sample(text, "sidecar_alert_notifications_total", receiver="webhook", outcome="dropped") == 0
    metrics.fleet.notification("webhook", "sent")
    text = generate_latest(registry).decode()
    assert sample(text, "sidecar_alert_notifications_total", receiver="webhook", outcome="sent") == 1
    with pytest.raises(ValueError, match="Duplicated"):  # declared once per registry
        declare_fleet_metrics(registry)


def test_check_state_and_check_gone() -> None:
    registry = CollectorRegistry()
    fleet = declare_fleet_metrics(registry)
    fleet.check_state("nightly", False, None)
    text = generate_latest(registry).decode()
    assert sample(text, "sidecar_deadman_up", check="nightly") == 0
    assert sample(text, "sidecar_deadman_last_seen_timestamp_seconds", check="nightly") is None
    fleet.check_state("nightly", True, 1234.5)
    text = generate_latest(registry).decode()
    assert sample(text, "sidecar_deadman_up", check="nightly") == 1
    assert sample(text, "sidecar_deadman_last_seen_timestamp_seconds", check="nightly") == 1234.5
    fleet.check_gone("nightly")
    fleet.check_gone("never-set")  # a check whose series never existed is no error
    text = generate_latest(registry).decode()
    assert sample(text, "sidecar_deadman_up", check="nightly") is None
    assert sample(text, "sidecar_deadman_last_seen_timestamp_seconds", check="nightly") is None
