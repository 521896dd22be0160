"""Every Prometheus series the sidecar exports, declared in this package once, with closed
label sets (SPEC §13): ``series`` (:class:`Metrics`), ``fleet`` (:class:`FleetMetrics`), ``declare``
(how a series is declared, the histograms' buckets).

Request-path code never touches these objects: ``MetricsSink`` updates them from finished events on
the recorder's worker thread; the fleet listener, the dead-man engine and the alert dispatcher update
theirs through :class:`FleetMetrics`. Label values that come from clients (app, tool, fleet) are capped;
``check`` values are check names (bounded by the check limit) or ``fleet:NAME`` — never a member id.
"""

from __future__ import annotations

from sidecar.telemetry.metrics.fleet import FleetMetrics, declare_fleet_metrics
from sidecar.telemetry.metrics.series import Metrics

__all__ = ["FleetMetrics", "Metrics", "declare_fleet_metrics"]
