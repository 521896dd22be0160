"""Fleets and dead-man alerts as one component: what ``sidecar.app`` creates, starts, stops and routes to.

``FleetAndAlerts.from_settings(settings, metrics)`` validates everything at build time (``ConfigError``);
``start()`` opens the alert state, starts the fleet listener, the dispatcher and the evaluation loop on
the serving event loop; ``stop()`` undoes that (a last evaluation is saved first). ``observe_call`` (or
the recorder sink from :meth:`sink`) feeds the traffic check from finished calls, from any thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from sidecar.alerting.checks import FIRE, RESOLVE
from sidecar.alerting.config import AlertingConfig, parse_duration
from sidecar.alerting.engine import DeadmanEngine
from sidecar.alerting.notifiers import (
    AlertmanagerReceiver,
    Dispatcher,
    Notification,
    Receiver,
    RetryPolicy,
    WebhookReceiver,
    describe,
)
from sidecar.alerting.store import AlertStore
from sidecar.core.events import OK, CallEvent
from sidecar.errors import ConfigError
from sidecar.fleet.registry import FleetRegistry
from sidecar.fleet.server import FleetOptions, FleetServer
from sidecar.infra.sqlite import parse_sqlite_url
from sidecar.settings import FLEET_ENV, Settings
from sidecar.telemetry.metrics import FleetMetrics

log = logging.getLogger("sidecar.alerting")
# SIDECAR_* variables this component reads from ``settings.policy_env``.
ENV_NAMES = FLEET_ENV


def _port(env: Mapping[str, str], proxy_port: int) -> int:
    # By default the port after the proxy's (8789 beside 8788), so a second sidecar on another --port
    # does not collide on a fixed one; a proxy on "any free port" (tests, demo) gets any free port too.
    default = proxy_port + 1 if 0 < proxy_port < 65535 else 0
    raw = env.get("SIDECAR_FLEET_PORT") or str(default)
    if not raw.isdigit() or int(raw) > 65535:
        raise ConfigError(f"SIDECAR_FLEET_PORT: expected a port number (0 = any free port), got {raw!r}")
    return int(raw)


@dataclass(frozen=True)
class FleetAlertOptions:
    fleet: FleetOptions = field(default_factory=FleetOptions)
    alerting: AlertingConfig = field(default_factory=AlertingConfig)
    state_path: Path = Path("sidecar-data/alerts.db")
    eval_interval_s: float = 1.0
    forget_after_s: float = 7 * 86400.0  # disconnected members drop out of the fleet view after this
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    @classmethod
    def from_settings(cls, settings: Settings) -> FleetAlertOptions:
        env = settings.policy_env
        interval = parse_duration("SIDECAR_FLEET_PING_INTERVAL", env.get("SIDECAR_FLEET_PING_INTERVAL") or 10)
        timeout = parse_duration("SIDECAR_FLEET_PING_TIMEOUT", env.get("SIDECAR_FLEET_PING_TIMEOUT") or 10)
        public = urlsplit(settings.public_url).hostname if settings.public_url else None
        fleet = FleetOptions(
            host=settings.host,
            port=_port(env, settings.port),
            ping_interval_s=interval,
            ping_timeout_s=timeout,
            ingest_token=settings.ingest_token,
            public_host=public,
        )
        policies = settings.policies
        alerting = AlertingConfig.from_sources(policies.get("checks"), policies.get("notify"), env)
        if settings.store.startswith("sqlite:///"):
            state = parse_sqlite_url(settings.store).parent / "alerts.db"
        else:
            state = Path.cwd() / "sidecar-data" / "alerts.db"
        return cls(fleet=fleet, alerting=alerting, state_path=state)


class _TrafficSink:
    """Recorder sink that feeds the traffic check (``write`` runs on the recorder's worker thread)."""

    name = "deadman"

    def __init__(self, observe: Callable[[CallEvent], None]) -> None:
        self._observe = observe

    def write(self, events: Sequence[CallEvent]) -> None:
        for event in events:
            self._observe(event)

    def close(self) -> None:
        return None


def _receivers(config: AlertingConfig) -> list[Receiver]:
    receivers: list[Receiver] = [WebhookReceiver(w.url, w.format) for w in config.webhooks]
    if config.alertmanager_url:
        ttl = 4 * config.alertmanager_resend_s
        receivers.insert(0, AlertmanagerReceiver(config.alertmanager_url, ttl_s=ttl))
    return receivers


def _warn_if_unheard(config: AlertingConfig, receivers: Sequence[Receiver]) -> None:
    if config.checks and not receivers:
        log.warning(
            "no alert notifier configured: alerts show only in GET /sidecar/v1/alerts, metrics and logs "
            "(set notify: in the config file, SIDECAR_ALERTMANAGER_URL or SIDECAR_ALERT_WEBHOOK_URL)",
            extra={"fields": {"checks": len(config.checks)}},
        )


class FleetAndAlerts:
    def __init__(
        self, options: FleetAlertOptions, metrics: FleetMetrics, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.options = options
        self.metrics = metrics
        self.clock = clock
        self.registry = FleetRegistry(metrics)
        self.server = FleetServer(self.registry, options.fleet)
        self.engine = DeadmanEngine(options.alerting, self.registry, metrics, started_at=clock())
        self.store = AlertStore(options.state_path)
        receivers = _receivers(options.alerting)
        self.engine.deliverable = bool(receivers)
        self.dispatcher = Dispatcher(receivers, metrics.notification, options.retry)
        self._loop_task: asyncio.Task[None] | None = None
        self._last_keepalive = 0.0
        self._last_prune = 0.0
        self._started = False

    @classmethod
    def from_settings(cls, settings: Settings, metrics: FleetMetrics) -> FleetAndAlerts:
        """Validate configuration now (raises ``ConfigError``); nothing is opened until ``start``."""
        return cls(FleetAlertOptions.from_settings(settings), metrics)

    @property
    def connect_url(self) -> str:
        return self.server.connect_url

    @property
    def listening(self) -> bool:
        return self._started

    def bind(self) -> None:
        """Bind the fleet listener's port now (``ListenError`` naming ``SIDECAR_FLEET_PORT`` if taken)."""
        self.server.bind()

    async def start(self) -> None:
        self.server.bind()  # first: a taken port fails the start before anything is opened
        await asyncio.to_thread(self.store.open)
        subjects = await asyncio.to_thread(self.store.subjects)
        self.engine.restore(subjects, await asyncio.to_thread(self.store.snoozes))
        await self.dispatcher.start()
        await self.server.start()
        _warn_if_unheard(self.options.alerting, self.dispatcher.receivers)
        self._started = True
        self._last_keepalive = self.clock()  # restored firing alerts are re-posted one interval from now
        self._loop_task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        """Undo ``start``: final evaluation saved, members closed (1001), deliveries drained (5 s)."""
        if not self._started:
            self.server.release()
            return
        self._started = False
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        await self.tick(self.clock())  # before the listener closes, so shutdown is not seen as an outage
        await self.server.stop()
        await self.dispatcher.stop(timeout_s=5.0)
        await asyncio.to_thread(self.store.close)

    def prepare_reload(self, settings: Settings) -> Callable[[], None]:
        """SIGHUP, first half: validate the reloaded checks and notifiers (``ConfigError``) and change
        nothing; the function returned applies them, on the serving loop. The fleet listener's own
        settings (port, ping timings, token) apply at the next start."""
        fresh = FleetAlertOptions.from_settings(settings).alerting
        asyncio.get_running_loop()  # RuntimeError off the loop, before anything changed

        def apply() -> None:
            receivers = _receivers(fresh)
            self.options = replace(self.options, alerting=fresh)
            notes = self.engine.reconfigure(fresh, self.clock())
            self.engine.deliverable = bool(receivers)
            self.dispatcher.replace_receivers(receivers)
            self.dispatcher.submit(notes)
            _warn_if_unheard(fresh, receivers)
            log.info(
                "checks and notifiers reloaded",
                extra={"fields": {"checks": len(fresh.checks), "receivers": [r.label for r in receivers]}},
            )

        return apply

    def observe_call(self, event: CallEvent) -> None:
        """A finished upstream call: a 2xx answer relayed in full counts for the traffic check."""
        if event.outcome == OK and 200 <= event.status < 300:
            self.engine.observe_success(event.ended_at)

    def sink(self) -> _TrafficSink:
        return _TrafficSink(self.observe_call)

    async def tick(self, now: float) -> None:
        """One evaluation: persist what changed, then notify; re-post firing alerts when due."""
        ev = self.engine.evaluate(now)
        await asyncio.to_thread(self.store.save, ev.changed, ev.removed, now)
        self.dispatcher.submit(ev.notifications)
        self._log_changes(ev.notifications)
        if now - self._last_keepalive >= self.options.alerting.alertmanager_resend_s:
            self._last_keepalive = now
            self.dispatcher.submit(self.engine.keepalives(now))
        self.registry.export_gauges()
        if now - self._last_prune >= 3600.0:
            self._last_prune = now
            self.registry.prune(now, self.options.forget_after_s)

    def _log_changes(self, notes: Sequence[Notification], most: int = 10) -> None:
        """A log line per alert fired or resolved (a mass outage: the first few, then a count)."""
        changes = [n for n in notes if n.event in (FIRE, RESOLVE)]
        for n in changes[:most]:
            fields = {"check": n.check, "member": n.member, "notified": self.engine.deliverable}
            level = logging.WARNING if n.event == FIRE else logging.INFO
            log.log(level, describe(n), extra={"fields": fields})
        if len(changes) > most:
            log.warning("%d more alerts fired or resolved", len(changes) - most)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.options.eval_interval_s)
            try:
                await self.tick(self.clock())
            except RuntimeError as exc:
                if "after shutdown" in str(exc):
                    return  # the interpreter is exiting under a loop nobody stopped: nothing left to save
                log.exception("dead-man evaluation failed")
            except Exception:
                log.exception("dead-man evaluation failed")
