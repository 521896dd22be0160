"""Fleet, dead-man and alert-delivery series (SPEC §13), declared once with closed label sets.

``fleet`` label values come from clients, so they are capped (overflow ``other``); ``check`` values are
check names (bounded by the check limit) or ``fleet:NAME`` for a fleet as a whole — never a member id.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

OTHER = "other"
RTT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
DISCONNECT_REASONS = ("ping_timeout", "client_close", "abnormal", "replaced", "shutdown")
RECEIVERS = ("alertmanager", "webhook")
OUTCOMES = ("sent", "retried", "failed", "dropped")


class FleetLabel:
    """Admits at most ``limit`` distinct fleet names as label values; later ones map to ``other``."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, fleet: str) -> str:
        if fleet in self._seen:
            return fleet
        with self._lock:
            if len(self._seen) < self._limit:
                self._seen.add(fleet)
                return fleet
        return OTHER


@dataclass(frozen=True)
class FleetMetrics:
    members: Gauge
    rtt: Histogram
    pongs_missed: Counter
    disconnects: Counter
    connects: Counter
    pings: Counter
    deadman_up: Gauge
    deadman_last_seen: Gauge
    notifications: Counter
    fleet_label: FleetLabel

    def notification(self, receiver: str, outcome: str) -> None:
        self.notifications.labels(receiver, outcome).inc()


def declare_fleet_metrics(registry: CollectorRegistry, *, max_fleets: int = 50) -> FleetMetrics:
    """Declare every fleet / dead-man / notification series on ``registry`` (once per registry)."""
    r = registry
    metrics = FleetMetrics(
        members=Gauge("sidecar_fleet_members", "Connected fleet members.", ["fleet"], registry=r),
        rtt=Histogram(
            "sidecar_fleet_heartbeat_rtt_seconds",
            "Ping/pong round-trip time of fleet members.",
            ["fleet"],
            buckets=RTT_BUCKETS,
            registry=r,
        ),
        pongs_missed=Counter(
            "sidecar_fleet_pongs_missed", "Pings not answered within the ping timeout.", ["fleet"], registry=r
        ),
        disconnects=Counter(
            "sidecar_fleet_disconnects", "Member disconnections by reason.", ["fleet", "reason"], registry=r
        ),
        connects=Counter(
            "sidecar_fleet_connects", "Member connections (reconnects included).", ["fleet"], registry=r
        ),
        pings=Counter("sidecar_fleet_pings", "Heartbeat pings sent.", ["fleet"], registry=r),
        deadman_up=Gauge(
            "sidecar_deadman_up", "1 while a check (or fleet) is not down.", ["check"], registry=r
        ),
        deadman_last_seen=Gauge(
            "sidecar_deadman_last_seen_timestamp_seconds",
            "Unix time a check was last pinged (a fleet: last pong from any member).",
            ["check"],
            registry=r,
        ),
        notifications=Counter(
            "sidecar_alert_notifications",
            "Alert deliveries by receiver and outcome.",
            ["receiver", "outcome"],
            registry=r,
        ),
        fleet_label=FleetLabel(max_fleets),
    )
    for receiver in RECEIVERS:
        for outcome in OUTCOMES:
            metrics.notifications.labels(receiver, outcome)
    return metrics
