"""The running ``Sidecar``: start-up, housekeeping, reload (SIGHUP) and shutdown of what
``build_sidecar`` wired, and the start-up hook that restores process-local budget counters."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from sidecar.admin.api import AdminApp
from sidecar.app.prices import PriceHolder, load_prices
from sidecar.budget.local import SESSION_TTL_S, LocalCounters
from sidecar.budget.service import BudgetService
from sidecar.core.budget_estimate import charge_usd
from sidecar.core.events import CallEvent
from sidecar.core.session_lifecycle import StoredSession
from sidecar.fleet.service import FleetAndAlerts
from sidecar.proxy.asgi import ASGIApp
from sidecar.proxy.client import UpstreamClient
from sidecar.proxy.handler import ProxyHandler
from sidecar.proxy.origins import Origins
from sidecar.respcache.service import ResponseCache
from sidecar.settings import Settings
from sidecar.store.factory import EventStores
from sidecar.store.queries import ReadStore, SessionCounters
from sidecar.store.sqlite import SQLiteStore
from sidecar.telemetry.metrics import Metrics
from sidecar.telemetry.ratelimits import RateLimitBoard
from sidecar.telemetry.recorder import Recorder
from sidecar.telemetry.sessions_sink import SessionsSink

log = logging.getLogger("sidecar")


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
