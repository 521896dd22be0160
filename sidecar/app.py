"""The one place that builds and wires everything. No module globals; nothing happens at import.

``build_sidecar(settings)`` returns a ``Sidecar`` holding the ASGI apps (proxy listener and, when
``SIDECAR_ADMIN_PORT`` is set, a separate admin listener) and the components behind them. ASGI lifespan
on the proxy app opens and closes the upstream client, the store and the recorder.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from opentelemetry.sdk.trace.export import SpanExporter
from prometheus_client import CollectorRegistry

from sidecar import __version__
from sidecar.admin.api import AdminApp, AdminServices, build_admin
from sidecar.admin.ops import HealthProbe
from sidecar.admin.reads import SessionsReader
from sidecar.budget import BudgetCounters
from sidecar.budget.local import SESSION_TTL_S, LocalCounters
from sidecar.budget.redis_counters import RedisCounters
from sidecar.budget.service import BudgetHooks, BudgetService
from sidecar.cache.diagnosis import CacheDiagnoser
from sidecar.cache.policy import CacheSettings
from sidecar.core.accounting import price_event
from sidecar.core.budget_config import BudgetConfig
from sidecar.core.budget_estimate import charge_usd
from sidecar.core.events import CallEvent, Sink
from sidecar.core.pricing import PriceTable
from sidecar.core.session_lifecycle import SessionLifecycle, StoredSession
from sidecar.core.tools import ToolLatencyMatcher
from sidecar.errors import ConfigError, bedrock_error_parts
from sidecar.fleet.service import FleetAndAlerts
from sidecar.policy.calls import SidecarPolicies
from sidecar.providers.config import BEDROCK_HINT, bedrock_from_settings, vertex_from_settings
from sidecar.proxy.asgi import ASGIApp
from sidecar.proxy.client import UpstreamClient
from sidecar.proxy.cloud import CloudHandler, not_configured
from sidecar.proxy.context import ProxyDeps
from sidecar.proxy.handler import ProxyHandler
from sidecar.proxy.keys import key_salt, make_fingerprinter
from sidecar.proxy.origins import Origins
from sidecar.proxy.upstream import UpstreamOptions
from sidecar.respcache.build import build_response_cache, response_cache_config
from sidecar.respcache.service import ResponseCache
from sidecar.settings import Settings
from sidecar.store.clickhouse import ClickHouseClient
from sidecar.store.factory import EventStores, StoreConfig, build_event_stores, is_clickhouse_url
from sidecar.store.queries import ReadStore, SessionCounters
from sidecar.store.shipper import ShipperHooks
from sidecar.store.sqlite import SQLiteStore
from sidecar.store.sqlite_reads import SQLiteReads
from sidecar.telemetry.logs import RequestLogSink
from sidecar.telemetry.metrics import Metrics
from sidecar.telemetry.metrics_sink import MetricsSink
from sidecar.telemetry.ratelimits import RateLimitBoard
from sidecar.telemetry.recorder import Recorder, RecorderHooks
from sidecar.telemetry.sessions_sink import SessionsSink
from sidecar.telemetry.tracing import TracingSink

log = logging.getLogger("sidecar")
PRICING_KEYS = ("overrides",)  # the YAML pricing: section


class PriceHolder:
    """The current price table; replaced whole on reload (SIGHUP), read without locks."""

    def __init__(self, table: PriceTable) -> None:
        self.table = table

    def price(self, event: CallEvent) -> None:
        price_event(event, self.table)


def load_prices(settings: Settings) -> PriceTable:
    pricing = settings.policies.get("pricing", {})
    for key in pricing:
        if key not in PRICING_KEYS:
            raise ConfigError(f"pricing.{key}: unknown key (expected {', '.join(PRICING_KEYS)})")
    overrides = pricing.get("overrides")
    try:
        return PriceTable.load(settings.pricing_file, overrides=overrides)
    except ValueError as exc:
        raise ConfigError(f"pricing: {exc}") from None


@dataclass
class Sidecar:
    settings: Settings
    registry: CollectorRegistry
    metrics: Metrics
    prices: PriceHolder
    store: SQLiteStore
    recorder: Recorder
    upstream: UpstreamClient
    proxy: ProxyHandler
    ready: bool = False
    # SIGHUP: each validates the fresh settings and returns what applies them (all validate first).
    reloaders: list[Callable[[Settings], Callable[[], None]]] = field(default_factory=list)
    settings_loader: Callable[[], Settings] | None = None
    admin: AdminApp | None = None  # built by build_sidecar once every component exists
    chores: list[Callable[[float], Awaitable[None]]] = field(default_factory=list)
    startup_hooks: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    budgets: BudgetService | None = None
    fleet: FleetAndAlerts | None = None
    stores: EventStores | None = None
    response_cache: ResponseCache | None = None
    # The cloud routes (SPEC §18) by path prefix, and their upstream clients (one per origin).
    cloud: dict[str, ASGIApp] = field(default_factory=dict)
    origins: Origins | None = None
    ratelimits: RateLimitBoard | None = None  # the latest rate-limit headroom, for the admin API
    reads: ReadStore | None = None  # the embedded store's read side (SPEC §14)
    _housekeeper: asyncio.Future[None] | None = None

    def reload(self) -> None:
        """SIGHUP: re-read configuration and swap prices, budgets, prompt-cache settings, checks and
        notifiers in place — all of it, or nothing when any part is invalid. Never raises."""
        if self.settings_loader is None:
            return
        try:
            fresh = self.settings_loader()
            table = load_prices(fresh)
            apply = [reloader(fresh) for reloader in self.reloaders]
            self.prices.table = table
            for step in apply:
                step()
        except Exception as exc:
            log.error("reload failed, keeping the previous configuration: %s", exc)
            return
        log.info("configuration reloaded", extra={"fields": {"pricing_date": self.prices.table.version}})

    async def startup(self) -> None:
        if self.stores is not None:
            self.stores.open()  # the local store, and the ClickHouse shipper's thread
        else:
            self.store.open()
        self.recorder.start()
        await self.upstream.open()
        try:
            for hook in self.startup_hooks:
                await hook()
        except BaseException:
            await self.shutdown()  # undo what did start (listeners, loops, threads) before failing
            raise
        self._housekeeper = asyncio.ensure_future(self._housekeeping())
        self.ready = True  # the listeners log "sidecar ready" once every one of them accepts

    async def _housekeeping(self, interval_s: float = 30.0) -> None:
        """Periodic chores off the request path: retention, and whatever components register."""
        while True:
            await asyncio.sleep(interval_s)
            now = time.time()
            for chore in (self._purge, *self.chores):
                try:
                    await chore(now)
                except Exception:
                    self.metrics.count_internal_error("housekeeping")
                    log.exception("housekeeping chore failed")

    async def _purge(self, now: float) -> None:
        purged = await asyncio.to_thread(self.store.maybe_purge, now)
        if purged:
            log.info("retention purge", extra={"fields": {"events_deleted": purged}})

    async def shutdown(self) -> None:
        self.ready = False
        if self._housekeeper is not None:
            self._housekeeper.cancel()
        if self.fleet is not None:
            await self.fleet.stop()
        if self.budgets is not None:
            await self.budgets.aclose()
        await self.upstream.close()
        if self.response_cache is not None:
            await self.response_cache.close()  # entries being written finish first
        if self.origins is not None:
            await self.origins.close()
        self.recorder.stop(timeout_s=self.settings.drain_timeout)
        if self.reads is not None:
            self.reads.close()


async def restore_local_counters(sidecar: Sidecar, budgets: BudgetService) -> None:
    """Process-local ceilings survive a restart: rebuild the counters from the embedded store's
    per-session totals and today's per-app cost (SPEC R-RS-1), never its history."""
    now = time.time()
    reads = sidecar.reads
    if reads is None:
        return

    def load() -> tuple[list[SessionCounters], list[CallEvent], dict[str, float]]:
        sessions = reads.session_counters(now - SESSION_TTL_S)
        day_start = now - now % 86400
        unpriced = reads.unpriced_calls(min([s.first_seen for s in sessions], default=day_start))
        today = reads.summary(min(day_start, now), now + 1, "app")["rows"]
        return sessions, unpriced, {str(row["key"]): float(row["cost_usd"]) for row in today}

    sessions, unpriced, day_usd = await asyncio.to_thread(load)
    counters = LocalCounters.restore_totals(
        sessions,
        unpriced,
        day_usd,
        now,
        charge=functools.partial(charge_usd, prices=sidecar.prices.table),
        limits_for=budgets.limits_for,
    )
    budgets.replace_counters(counters)


async def restore_open_sessions(sidecar: Sidecar, sink: SessionsSink) -> None:
    """The session tracker follows again the sessions open at start (last seen within the idle timeout),
    from their per-session rollup rows, so each still closes whole and once (SPEC R-RS-1)."""
    reads = sidecar.reads
    if reads is None:
        return
    since = time.time() - sidecar.settings.session_idle_timeout
    rows = await asyncio.to_thread(reads.session_counters, since)
    sink.restore(
        [
            StoredSession(
                r.session_id, r.app, r.first_seen, r.last_seen, r.cost_usd, r.tokens, r.model_calls,
                r.tool_calls, r.model_time_s, r.tool_time_s,
            )
            for r in rows
        ]
    )  # fmt: skip


def _span_exporter(settings: Settings, given: SpanExporter | None) -> SpanExporter | None:
    if given is not None:
        return given
    if not settings.otlp_traces:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()  # endpoint, headers and TLS from the standard OTEL_EXPORTER_OTLP_* variables


def _build_stores(
    settings: Settings, metrics: Metrics, connect: Callable[[], ClickHouseClient] | None
) -> EventStores:
    """SQLite alone, or SQLite beside a spool that ships to ClickHouse (SPEC R-ST-1..3)."""
    clickhouse = is_clickhouse_url(settings.store)
    config = StoreConfig(
        retention_days=settings.retention_days,
        spool_path=Path(settings.spool_path) if clickhouse else None,
        local_url=settings.local_store,
        spool_max_bytes=settings.spool_max_bytes,
    )
    hooks = ShipperHooks(
        on_shipped=metrics.on_shipped,
        on_error=metrics.on_ship_error,
        on_dropped=lambda n: metrics.on_dropped("spool_full", n),
        on_quarantined=metrics.clickhouse_quarantined.inc,
    )
    try:
        stores = build_event_stores(settings.store, config, hooks=hooks, connect=connect)
    except ValueError as exc:
        raise ConfigError(f"SIDECAR_STORE: {exc}") from None
    if stores.shipper is not None:
        shipper = stores.shipper
        metrics.spool_pending.set_function(lambda: float(shipper.depth()))
        metrics.ship_lag.set_function(shipper.lag_seconds)
    return stores


def _recorder(
    settings: Settings, metrics: Metrics, stores: EventStores, extra: list[Sink], ratelimits: RateLimitBoard
) -> tuple[Recorder, SessionsSink]:
    """The recorder fanning events out to metrics (and the latest rate-limit headroom), the session
    tracker, the stores, logs and ``extra``."""
    sessions_sink = SessionsSink(metrics, SessionLifecycle(settings.session_idle_timeout))
    sinks: list[Sink] = [
        MetricsSink(metrics, ratelimits),
        sessions_sink,
        *stores.sinks,
        RequestLogSink(),
        *extra,
    ]
    hooks = RecorderHooks(
        on_dropped=metrics.on_dropped,
        on_sink_result=metrics.on_sink_result,
        on_queue_depth=metrics.on_queue_depth,
    )
    return Recorder(sinks, capacity=settings.queue_capacity, hooks=hooks), sessions_sink


def _budgets(settings: Settings, metrics: Metrics, prices: PriceTable) -> BudgetService:
    """Cost ceilings over process-local counters, or Redis ones shared by every replica."""
    config = BudgetConfig.from_sources(settings.policies.get("budgets"), settings.policy_env)
    hooks = BudgetHooks(
        on_refusal=metrics.on_budget_refusal,
        on_warning=metrics.on_budget_warning,
        on_backend_error=metrics.on_budget_backend_error,
    )
    counters: BudgetCounters = (
        RedisCounters.from_url(settings.redis_url) if settings.redis_url else LocalCounters()
    )
    return BudgetService(config, counters, prices, hooks)


def _cache_settings(settings: Settings) -> CacheSettings:
    return CacheSettings.from_sources(
        settings.policies.get("prompt_cache"), settings.prompt_cache, settings.cache_ttl
    )


@dataclass(frozen=True)
class _ProxyParts:
    settings: Settings
    metrics: Metrics
    prices: PriceHolder
    recorder: Recorder
    policies: SidecarPolicies
    stores: EventStores
    traced: bool


def _upstream_client(settings: Settings, base_url: str) -> UpstreamClient:
    return UpstreamClient(
        UpstreamOptions(
            base_url=base_url,
            read_timeout_s=settings.upstream_timeout,
            connect_timeout_s=settings.upstream_connect_timeout,
            pool_size=settings.upstream_pool_size,
            keepalive_s=settings.upstream_keepalive_timeout,
        )
    )


def _proxy(parts: _ProxyParts) -> tuple[UpstreamClient, ProxyHandler]:
    """The upstream client and the handler of ``/v1/*``."""
    settings = parts.settings
    upstream = _upstream_client(settings, settings.upstream_url)
    origin = urlsplit(settings.upstream_url)
    salt_beside = settings.local_store if parts.stores.shipper else settings.store
    deps = ProxyDeps(
        settings=settings,
        upstream=upstream,
        submit=parts.recorder.submit,
        price=parts.prices.price,
        policies=parts.policies,
        tracing=parts.traced,
        fingerprint_key=make_fingerprinter(key_salt(salt_beside)),
        count_internal_error=parts.metrics.count_internal_error,
        upstream_origin=f"{origin.scheme}://{origin.netloc}",
        public_url=settings.public_url,
    )
    return upstream, ProxyHandler(deps)


def _attach_response_cache(sidecar: Sidecar, cache: ResponseCache) -> None:
    """SPEC §19: opened at start, expired entries dropped by housekeeping, drained and closed at shutdown."""
    sidecar.response_cache = cache
    sidecar.startup_hooks.append(cache.open)
    sidecar.chores.append(cache.expire)
    sidecar.metrics.response_cache_bytes.set_function(cache.stored_bytes)


def _cloud(settings: Settings, deps: ProxyDeps) -> tuple[dict[str, ASGIApp], Origins]:
    """The handlers of ``/bedrock/…`` and ``/vertex/…`` over one upstream client per cloud origin."""
    origins = Origins(functools.partial(_upstream_client, settings))
    bedrock = bedrock_from_settings(settings)
    routes: dict[str, ASGIApp] = {
        "/bedrock/": CloudHandler(deps, bedrock, origins)
        if bedrock is not None
        else not_configured("Amazon Bedrock", bedrock_error_parts, BEDROCK_HINT),
        "/vertex/": CloudHandler(deps, vertex_from_settings(settings), origins),
    }
    return routes, origins


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


__all__ = ["Sidecar", "build_sidecar"]
