"""The build stages ``build_sidecar`` composes: stores, recorder, budgets, proxy, cloud routes."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from opentelemetry.sdk.trace.export import SpanExporter

from sidecar.app.prices import PriceHolder
from sidecar.app.runtime import Sidecar
from sidecar.budget import BudgetCounters
from sidecar.budget.local import LocalCounters
from sidecar.budget.redis_counters import RedisCounters
from sidecar.budget.service import BudgetHooks, BudgetService
from sidecar.cache.policy import CacheSettings
from sidecar.core.budget_config import BudgetConfig
from sidecar.core.events import Sink
from sidecar.core.pricing import PriceTable
from sidecar.core.session_lifecycle import SessionLifecycle
from sidecar.errors import ConfigError, bedrock_error_parts
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
from sidecar.respcache.service import ResponseCache
from sidecar.settings import Settings
from sidecar.store.clickhouse import ClickHouseClient
from sidecar.store.factory import EventStores, StoreConfig, build_event_stores, is_clickhouse_url
from sidecar.store.shipper import ShipperHooks
from sidecar.telemetry.logs import RequestLogSink
from sidecar.telemetry.metrics import Metrics
from sidecar.telemetry.metrics_sink import MetricsSink
from sidecar.telemetry.ratelimits import RateLimitBoard
from sidecar.telemetry.recorder import Recorder, RecorderHooks
from sidecar.telemetry.sessions_sink import SessionsSink


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
