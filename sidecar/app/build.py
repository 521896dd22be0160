"""``build_sidecar(settings)``: wire every component from settings, and the admin API over them."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace

from opentelemetry.sdk.trace.export import SpanExporter
from prometheus_client import CollectorRegistry

from sidecar import __version__
from sidecar.admin.api import AdminApp, AdminServices, build_admin
from sidecar.admin.ops import HealthProbe
from sidecar.admin.reads import SessionsReader
from sidecar.app.prices import PriceHolder, load_prices
from sidecar.app.runtime import Sidecar, restore_local_counters, restore_open_sessions
from sidecar.app.stages import (
    _attach_response_cache,
    _budgets,
    _build_stores,
    _cache_settings,
    _cloud,
    _proxy,
    _ProxyParts,
    _recorder,
    _span_exporter,
)
from sidecar.budget.service import BudgetService
from sidecar.cache.diagnosis import CacheDiagnoser
from sidecar.core.budget_config import BudgetConfig
from sidecar.core.events import Sink
from sidecar.core.tools import ToolLatencyMatcher
from sidecar.fleet.service import FleetAndAlerts
from sidecar.policy.calls import SidecarPolicies
from sidecar.respcache.build import build_response_cache, response_cache_config
from sidecar.settings import Settings
from sidecar.store.clickhouse import ClickHouseClient
from sidecar.store.sqlite_reads import SQLiteReads
from sidecar.telemetry.metrics import Metrics
from sidecar.telemetry.ratelimits import RateLimitBoard
from sidecar.telemetry.tracing import TracingSink

log = logging.getLogger("sidecar")


def build_sidecar(
    settings: Settings,
    registry: CollectorRegistry | None = None,
    span_exporter: SpanExporter | None = None,
    clickhouse_connect: Callable[[], ClickHouseClient] | None = None,
    *,
    clock: Callable[[], float] = time.time,
) -> Sidecar:
    """Wire every component from settings. Raises ``ConfigError`` for anything invalid, before serving.

    ``span_exporter`` and ``clickhouse_connect`` replace the OTLP exporter and the ClickHouse client
    (tests use OpenTelemetry's in-memory exporter and an in-process ClickHouse engine); ``clock`` the
    wall clock the cache diagnosis measures idle time on (tests move it past a cache TTL).
    """
    registry = registry or CollectorRegistry()
    metrics = Metrics(registry, max_apps=settings.max_apps, max_tools=settings.max_tools)
    prices = PriceHolder(load_prices(settings))
    metrics.set_build_info(__version__, prices.table.version)
    stores = _build_stores(settings, metrics, clickhouse_connect)
    assert stores.local is not None  # a serving process always keeps the embedded store
    exporter = _span_exporter(settings, span_exporter)
    fleet = FleetAndAlerts.from_settings(settings, metrics.fleet)
    tracing: list[Sink] = [TracingSink(exporter)] if exporter is not None else []
    ratelimits = RateLimitBoard()
    recorder, sessions_sink = _recorder(settings, metrics, stores, [fleet.sink(), *tracing], ratelimits)
    budgets = _budgets(settings, metrics, prices.table)
    response_cache = build_response_cache(settings, metrics.on_response_cache)
    diagnoser = CacheDiagnoser(settings.cache_diagnostics, settings.cache_diag_max_sessions, clock=clock)
    policies = SidecarPolicies(
        ToolLatencyMatcher(),
        budgets,
        prices.price,
        _cache_settings(settings),
        lambda: prices.table,
        metrics,
        response_cache,
        diagnoser,
    )
    upstream, proxy = _proxy(
        _ProxyParts(settings, metrics, prices, recorder, policies, stores, traced=exporter is not None)
    )
    sidecar = Sidecar(settings, registry, metrics, prices, stores.local, recorder, upstream, proxy)
    sidecar.budgets, sidecar.stores, sidecar.fleet = budgets, stores, fleet
    sidecar.cloud, sidecar.origins = _cloud(settings, proxy.deps)
    sidecar.ratelimits = ratelimits
    sidecar.reads = SQLiteReads(stores.local.path)

    async def expire_sessions(now: float) -> None:
        sessions_sink.expire(now)
        await policies.expire(now, settings.session_idle_timeout)

    sidecar.chores.append(expire_sessions)
    if response_cache is not None:
        _attach_response_cache(sidecar, response_cache)
    sidecar.startup_hooks.append(fleet.start)
    sidecar.startup_hooks.append(lambda: restore_open_sessions(sidecar, sessions_sink))
    if not settings.redis_url:
        sidecar.startup_hooks.append(lambda: restore_local_counters(sidecar, budgets))

    def reload_budgets(fresh: Settings) -> Callable[[], None]:
        config = BudgetConfig.from_sources(fresh.policies.get("budgets"), fresh.policy_env)
        cache = _cache_settings(fresh)
        responses = response_cache_config(fresh)

        def apply() -> None:
            budgets.reload(config, sidecar.prices.table)
            policies.cache = cache
            if response_cache is not None:
                response_cache.config = responses
            elif responses.enabled:
                log.warning("the response cache was off at start: turning it on takes a restart")

        return apply

    sidecar.reloaders.extend([reload_budgets, fleet.prepare_reload])
    sidecar.admin = _admin(sidecar, budgets, fleet)
    return sidecar


def _admin(sidecar: Sidecar, budgets: BudgetService, fleet: FleetAndAlerts) -> AdminApp:
    """The admin API, given the narrow services its routers use (never the ``Sidecar`` itself)."""
    shipper = sidecar.stores.shipper if sidecar.stores is not None else None
    health = HealthProbe(
        ready=lambda: sidecar.ready,
        recorder_pending=lambda: sidecar.recorder.pending,
        pricing_date=lambda: sidecar.prices.table.version,
        clickhouse=shipper.status if shipper is not None else None,
    )
    stores = sidecar.stores
    assert sidecar.reads is not None  # set by build_sidecar before the admin app
    reader = SessionsReader(
        sidecar.reads,
        sidecar.recorder.flush,
        sidecar.settings.session_idle_timeout,
        fleet=stores.fleet_reads if stores is not None and stores.fleet is not None else None,
        ratelimits=sidecar.ratelimits.rows if sidecar.ratelimits is not None else None,
    )
    services = AdminServices(
        sidecar.registry, health, reader, budgets, fleet=fleet, checkins=fleet, alerts=fleet
    )
    if sidecar.response_cache is not None:
        services = replace(services, response_cache=sidecar.response_cache)
    return build_admin(services, sidecar.settings.admin_token)
