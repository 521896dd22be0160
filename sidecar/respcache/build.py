"""The response cache as ``sidecar.app`` wires it: the configured modes over the deployment's backend."""

from __future__ import annotations

from collections.abc import Callable

from sidecar.infra.sqlite import parse_sqlite_url
from sidecar.respcache.backend import Backend
from sidecar.respcache.config import CacheConfig
from sidecar.respcache.redis_store import RedisEntries
from sidecar.respcache.service import MAX_ENTRY_BYTES, ResponseCache
from sidecar.respcache.sqlite_store import FILE_NAME, SQLiteEntries
from sidecar.settings import Settings


def response_cache_config(settings: Settings) -> CacheConfig:
    """The modes of the YAML ``response_cache:`` section and ``SIDECAR_RESPONSE_CACHE[_TTL]``; raises
    ``ConfigError`` naming a bad key."""
    section = settings.policies.get("response_cache")
    return CacheConfig.from_sources(section, settings.response_cache, settings.response_cache_ttl)


def build_response_cache(settings: Settings, on_result: Callable[[str, str], None]) -> ResponseCache | None:
    """``None`` when the cache is off for every app; else a cache in Redis when ``SIDECAR_REDIS_URL`` is set
    (shared by the replicas), or in ``response-cache.db`` beside the embedded events database. Nothing is
    opened here (``ResponseCache.open`` at start-up)."""
    config = response_cache_config(settings)
    if not config.enabled:
        return None
    max_bytes = settings.response_cache_max_bytes
    backend: Backend
    if settings.redis_url:
        backend = RedisEntries.from_url(settings.redis_url)
    else:
        # In ClickHouse mode the embedded store is the local one kept beside it.
        events = settings.store if settings.store.startswith("sqlite:") else settings.local_store
        backend = SQLiteEntries(parse_sqlite_url(events).parent / FILE_NAME, max_bytes)
    return ResponseCache(
        config,
        backend,
        shared=settings.response_cache_shared,
        max_entry_bytes=min(max_bytes, MAX_ENTRY_BYTES),
        on_result=on_result,
    )
