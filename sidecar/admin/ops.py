"""Operations routes: ``/metrics`` (Prometheus or OpenMetrics text), ``/healthz`` and ``/readyz``.

They stay open whatever the admin token (SPEC R-PX-9): probes and scrapers carry no credentials.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_TYPE
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from pydantic import BaseModel, ConfigDict
from starlette.responses import Response

OPEN_PATHS = ("/metrics", "/healthz", "/readyz")  # never need the admin token


@dataclass(frozen=True)
class HealthProbe:
    """What ``/readyz`` reports, read at each probe."""

    ready: Callable[[], bool]
    recorder_pending: Callable[[], int]
    pricing_date: Callable[[], str]
    clickhouse: Callable[[], Mapping[str, Any]] | None = None  # the shipper's status, in ClickHouse mode


def health_probe() -> HealthProbe:
    raise LookupError("the admin app was built without a HealthProbe")  # bound by build_admin


def metrics_registry() -> CollectorRegistry:
    raise LookupError("the admin app was built without a metrics registry")  # bound by build_admin


class Healthz(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: str


class ShipperStatus(BaseModel):
    """The ClickHouse shipper: local spool, lag, errors and drops."""

    model_config = ConfigDict(extra="forbid")
    spool_pending: int
    spool_bytes: int
    ship_lag_s: float
    ship_errors: int
    spool_dropped: int
    quarantined_events: int  # events ClickHouse kept rejecting, in the dead-letter file
    shipping: bool


class Readiness(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ready: bool
    recorder_pending: int
    pricing_date: str
    clickhouse: ShipperStatus | None = None  # present only when the store is ClickHouse


router = APIRouter(tags=["operations"])
_METRICS_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Prometheus text format, or OpenMetrics when the Accept header names it",
        "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}, OPENMETRICS_TYPE: {}},
    }
}


@router.get("/metrics", name="metrics", response_class=Response, responses=_METRICS_DOC)
async def metrics(
    registry: Annotated[CollectorRegistry, Depends(metrics_registry)], request: Request
) -> Response:
    if "application/openmetrics-text" in request.headers.get("accept", ""):
        body = generate_openmetrics(registry)  # type: ignore[no-untyped-call]
        return Response(body, media_type=OPENMETRICS_TYPE)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/healthz", name="healthz", response_model=Healthz)
async def healthz() -> dict[str, Any]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    name="readyz",
    response_model=Readiness,
    response_model_exclude_unset=True,
    responses={503: {"model": Readiness, "description": "Starting up or shutting down"}},
)
async def readyz(probe: Annotated[HealthProbe, Depends(health_probe)], response: Response) -> dict[str, Any]:
    """Readiness: 200 once started (and until shutdown begins), 503 otherwise."""
    ready = probe.ready()
    body: dict[str, Any] = {
        "ready": ready,
        "recorder_pending": probe.recorder_pending(),
        "pricing_date": probe.pricing_date(),
    }
    if probe.clickhouse is not None:
        body["clickhouse"] = probe.clickhouse()
    response.status_code = 200 if ready else 503
    return body
