"""Fleet & dead-man and sidecar self-health dashboards (what on-call opens first)."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash

from dashboards.board import datasource_variables, new_dashboard, prom_variable
from dashboards.kit import RATE, PanelBuilder, Q, graph, grid, quantile, quantiles, single, states

FLEET = 'fleet=~"$fleet"'
CHECK = 'check=~"$check"'
JOB = 'job="claude-sidecar"'


def _per_min(metric: str, by: str, matchers: str = "") -> str:
    selector = f"{metric}{{{matchers}}}" if matchers else metric
    return f"sum by ({by}) (rate({selector}{RATE})) * 60"


def _fleet_headline() -> list[PanelBuilder]:
    return [
        single(
            "Connected members",
            "WebSocket fleet members connected now, selected fleets.",
            "short",
            Q(f"sum (sidecar_fleet_members{{{FLEET}}})"),
            width=6,
        ),
        single(
            "Dead-man checks down",
            "Checks past their period and grace (alert ClaudeSidecarDeadManCheckDown).",
            "short",
            Q(f"count (sidecar_deadman_up{{{CHECK}}} == 0) or vector(0)"),
            steps=((None, "green"), (1, "red")),
            width=6,
        ),
        single(
            "Missed pongs / min",
            "Pings without a pong in time, all selected fleets.",
            "short",
            Q(f"sum (rate(sidecar_fleet_pongs_missed_total{{{FLEET}}}{RATE})) * 60"),
            steps=((None, "green"), (1, "orange")),
            width=6,
        ),
        single(
            "Disconnects / min",
            "Members that went away, for any reason.",
            "short",
            Q(f"sum (rate(sidecar_fleet_disconnects_total{{{FLEET}}}{RATE})) * 60"),
            width=6,
        ),
    ]


def _fleet_graphs() -> list[PanelBuilder]:
    return [
        graph(
            "Members by fleet",
            "Connected members per fleet (alert ClaudeSidecarFleetMembersLost below "
            "80% of the 30-minute peak).",
            "short",
            [Q(f"sum by (fleet) (sidecar_fleet_members{{{FLEET}}})", "{{fleet}}")],
        ),
        graph(
            "Heartbeat round trip",
            "p50 / p95 / p99 ping/pong round trip per fleet (alert "
            "ClaudeSidecarFleetHeartbeatRttHigh at p95 > 1 s).",
            "s",
            quantiles("sidecar_fleet_heartbeat_rtt_seconds", "fleet", FLEET),
        ),
        graph(
            "Missed pongs by fleet",
            "Pings that got no pong within the ping timeout, per minute.",
            "short",
            [Q(_per_min("sidecar_fleet_pongs_missed_total", "fleet", FLEET), "{{fleet}}")],
        ),
        graph(
            "Disconnects by reason",
            "Members that went away per minute, by fleet and reason.",
            "short",
            [Q(_per_min("sidecar_fleet_disconnects_total", "fleet, reason", FLEET), "{{fleet}} {{reason}}")],
        ),
        graph(
            "Connects and pings",
            "New member connections and pings sent per minute, by fleet.",
            "short",
            [
                Q(_per_min("sidecar_fleet_connects_total", "fleet", FLEET), "connects {{fleet}}"),
                Q(_per_min("sidecar_fleet_pings_total", "fleet", FLEET), "pings {{fleet}}"),
            ],
            width=24,
        ),
    ]


def _fleet_deadman() -> list[PanelBuilder]:
    return [
        states(
            "Dead-man checks",
            "Each named check, fleet check (fleet:NAME) and the traffic check: up or down over time.",
            Q(f"max by (check) (sidecar_deadman_up{{{CHECK}}})", "{{check}}"),
            [("1", "up", "green"), ("0", "down", "red")],
        ),
        grid(
            "Time since last seen",
            "Seconds since each check last pinged (or a fleet's members were last seen), now.",
            "s",
            [
                Q(
                    f"time() - max by (check) (sidecar_deadman_last_seen_timestamp_seconds{{{CHECK}}})",
                    "{{check}}",
                    instant=True,
                    fmt="table",
                )
            ],
            width=12,
        ),
        graph(
            "Alert notifications",
            "Notifications the sidecar sent to its receivers per minute, by receiver and outcome.",
            "short",
            [
                Q(
                    _per_min("sidecar_alert_notifications_total", "receiver, outcome"),
                    "{{receiver}} {{outcome}}",
                )
            ],
        ),
    ]


def fleet() -> dash.Dashboard:
    """Fleet members, heartbeat RTT, missed pongs, disconnect reasons; dead-man checks and notifications."""
    members = [*_fleet_headline(), *_fleet_graphs()]
    deadman = _fleet_deadman()
    return new_dashboard(
        "claude-sidecar-fleet",
        "Claude sidecar / Fleet & dead-man",
        "WebSocket fleets under ping/pong heartbeat; dead-man checks that watch jobs, fleets and traffic.",
        [
            *datasource_variables(),
            prom_variable("fleet", "Fleet", "label_values(sidecar_fleet_members, fleet)", "Fleet name"),
            prom_variable("check", "Check", "label_values(sidecar_deadman_up, check)", "Dead-man check name"),
        ],
        [("Fleets", members), ("Dead-man checks", deadman)],
    )


def _health_headline() -> list[PanelBuilder]:
    return [
        single(
            "Sidecars up",
            "Targets of job claude-sidecar answering scrapes.",
            "short",
            Q(f"sum (up{{{JOB}}})"),
        ),
        single(
            "Sidecars down",
            "Targets of job claude-sidecar not answering scrapes (alert ClaudeSidecarDown).",
            "short",
            Q(f"count (up{{{JOB}}} == 0) or vector(0)"),
            steps=((None, "green"), (1, "red")),
        ),
        single(
            "Overhead p99",
            "99th percentile of the time spent inside the sidecar per call.",
            "s",
            Q(quantile(0.99, "sidecar_overhead_seconds", "job")),
            steps=((None, "green"), (0.005, "orange"), (0.05, "red")),
        ),
        single(
            "Events dropped (range)",
            "Events lost at a capacity limit in the selected range.",
            "short",
            Q("sum (increase(sidecar_events_dropped_total[$__range]))", instant=True),
            steps=((None, "green"), (1, "red")),
        ),
        single(
            "Spool depth",
            "Events waiting in the local spool for ClickHouse, all sidecars.",
            "short",
            Q("sum (sidecar_spool_pending_events)"),
            steps=((None, "green"), (10000, "orange")),
        ),
        single(
            "Ship lag",
            "Age of the oldest event not yet in ClickHouse, worst sidecar.",
            "s",
            Q("max (sidecar_ship_lag_seconds)"),
            steps=((None, "green"), (900, "orange")),
        ),
    ]


def _health_pipeline() -> list[PanelBuilder]:
    return [
        graph(
            "Sidecar overhead",
            "p50 / p95 / p99 time spent in the sidecar per call, upstream excluded.",
            "s",
            quantiles("sidecar_overhead_seconds", "instance", label="{{instance}}"),
        ),
        graph(
            "Recorder queue",
            "Events waiting in the in-memory queue to the sinks (bounded; overflow is dropped and counted).",
            "short",
            [Q("max by (instance) (sidecar_recorder_queue_events)", "{{instance}}")],
        ),
        graph(
            "Events by sink",
            "Events handed to each sink per second, by outcome.",
            "ops",
            [Q(f"sum by (sink, outcome) (rate(sidecar_events_total{RATE}))", "{{sink}} {{outcome}}")],
        ),
        graph(
            "Sink errors",
            "Sink write failures per minute (each sink is isolated: a failure is a log line "
            "and this counter).",
            "short",
            [Q(_per_min("sidecar_sink_errors_total", "sink"), "{{sink}}")],
        ),
        graph(
            "Events dropped",
            "Events lost per minute at a capacity limit, by reason (alert ClaudeSidecarEventsDropped).",
            "short",
            [Q(_per_min("sidecar_events_dropped_total", "reason"), "{{reason}}")],
        ),
        graph(
            "Internal errors",
            "Failures inside the sidecar that never affected a call, per minute.",
            "short",
            [Q(_per_min("sidecar_internal_errors_total", "component"), "{{component}}")],
        ),
    ]


def _health_shipping() -> list[PanelBuilder]:
    return [
        graph(
            "Spool depth",
            "Events waiting in each sidecar's spool for ClickHouse (alert "
            "ClaudeSidecarSpoolBacklog above 10000).",
            "short",
            [Q("max by (instance) (sidecar_spool_pending_events)", "{{instance}}")],
        ),
        graph(
            "Ship lag",
            "Age of the oldest event not yet in ClickHouse (alert ClaudeSidecarShipLagHigh "
            "above 15 minutes).",
            "s",
            [Q("max by (instance) (sidecar_ship_lag_seconds)", "{{instance}}")],
        ),
        graph(
            "Ship errors",
            "Failed ClickHouse inserts per minute (retried with backoff).",
            "short",
            [Q(_per_min("sidecar_ship_errors_total", "instance"), "{{instance}}")],
        ),
        graph(
            "Budget backend errors",
            "Budget counter backend (Redis) failures per minute, by fail-mode outcome.",
            "short",
            [Q(_per_min("sidecar_budget_backend_errors_total", "outcome"), "{{outcome}}")],
        ),
        grid(
            "Versions",
            "Sidecar version and price table date per target.",
            "none",
            [Q("max by (instance, version, pricing_date) (sidecar_build_info)", instant=True, fmt="table")],
        ),
    ]


def health() -> dash.Dashboard:
    """Scrape health, overhead, recorder queue, sinks, spool and ClickHouse shipping, drops."""
    headline = _health_headline()
    pipeline = _health_pipeline()
    shipping = _health_shipping()
    return new_dashboard(
        "claude-sidecar-health",
        "Claude sidecar / Sidecar health",
        "The sidecar's own health: scrapes, overhead, recorder queue, sinks, spool and ClickHouse shipping.",
        datasource_variables(),
        [("Now", headline), ("Event pipeline", pipeline), ("ClickHouse shipping and backends", shipping)],
    )
