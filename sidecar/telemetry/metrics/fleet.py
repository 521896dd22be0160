"""The fleet, dead-man and alert-delivery series (SPEC §13): what the fleet listener, the dead-man engine
and the alert dispatcher update."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from sidecar.telemetry.labels import OUTCOMES, RECEIVERS, LabelCap
from sidecar.telemetry.metrics.declare import RTT_BUCKETS, On


@dataclass(frozen=True)
class FleetMetrics:
    """Fleet, dead-man and alert-delivery series. Also what the dead-man engine reports check states to
    (its ``CheckGauges``) and the dispatcher counts deliveries with (``notification``)."""

    members: Gauge
    rtt: Histogram
    pongs_missed: Counter
    disconnects: Counter
    connects: Counter
    pings: Counter
    deadman_up: Gauge
    deadman_last_seen: Gauge
    notifications: Counter
    fleet_label: LabelCap

    def notification(self, receiver: str, outcome: str) -> None:
        self.notifications.labels(receiver, outcome).inc()

    def check_state(self, check: str, up: bool, last_seen: float | None) -> None:
        """``sidecar_deadman_up`` of ``check``, and its last-seen time when it has one."""
        self.deadman_up.labels(check).set(1 if up else 0)
        if last_seen is not None:
            self.deadman_last_seen.labels(check).set(last_seen)

    def check_gone(self, check: str) -> None:
        """Drop ``check``'s series (a check no longer watched); a series never set is no error."""
        self.deadman_up.remove(check)
        self.deadman_last_seen.remove(check)


def declare_fleet_metrics(registry: CollectorRegistry, *, max_fleets: int = 50) -> FleetMetrics:
    """Declare the fleet / dead-man / notification series on ``registry`` (:class:`Metrics` does, with
    every other series; alone, for tests of the fleet and alerting parts)."""
    on = On(registry)
    metrics = FleetMetrics(
        members=on.gauge("sidecar_fleet_members", "Connected fleet members.", "fleet"),
        rtt=on.histogram(
            "sidecar_fleet_heartbeat_rtt_seconds",
            "Ping/pong round-trip time of fleet members.",
            "fleet",
            RTT_BUCKETS,
        ),
        pongs_missed=on.counter(
            "sidecar_fleet_pongs_missed", "Pings not answered within the ping timeout.", "fleet"
        ),
        disconnects=on.counter(
            "sidecar_fleet_disconnects", "Member disconnections by reason.", "fleet reason"
        ),
        connects=on.counter("sidecar_fleet_connects", "Member connections (reconnects included).", "fleet"),
        pings=on.counter("sidecar_fleet_pings", "Heartbeat pings sent.", "fleet"),
        deadman_up=on.gauge("sidecar_deadman_up", "1 while a check (or fleet) is not down.", "check"),
        deadman_last_seen=on.gauge(
            "sidecar_deadman_last_seen_timestamp_seconds",
            "Unix time a check was last pinged (a fleet: last pong from any member).",
            "check",
        ),
        notifications=on.counter(
            "sidecar_alert_notifications", "Alert deliveries by receiver and outcome.", "receiver outcome"
        ),
        fleet_label=LabelCap(max_fleets),
    )
    for receiver in RECEIVERS:
        for outcome in OUTCOMES:
            metrics.notifications.labels(receiver, outcome)
    return metrics
