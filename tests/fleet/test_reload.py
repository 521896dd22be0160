"""Checks and notifiers follow a reload (the SIGHUP path), and alerts with nowhere to go say so."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from sidecar.alerting.config import AlertingConfig, CheckSpec, Webhook
from sidecar.alerting.notifiers import RetryPolicy
from sidecar.errors import ConfigError
from sidecar.fleet.server import FleetOptions
from sidecar.fleet.service import FleetAlertOptions, FleetAndAlerts
from sidecar.settings import Settings
from sidecar.telemetry.metrics import declare_fleet_metrics
from tests.alerting.test_notifiers import Receiver
from tests.waiting import wait_until_async


async def _receiver() -> tuple[Receiver, web.AppRunner]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    rec.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/hook"  # type: ignore[union-attr]
    return rec, runner


@pytest.fixture
async def receivers() -> AsyncIterator[tuple[Receiver, Receiver]]:
    (a, run_a), (b, run_b) = await _receiver(), await _receiver()
    yield a, b
    await run_a.cleanup()
    await run_b.cleanup()


@pytest.fixture
def alert_logs() -> Iterator[list[logging.LogRecord]]:
    """Records of the ``sidecar.alerting`` logger, whatever the logging configuration left by other tests."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("sidecar.alerting")
    saved = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(saved)


def _service(tmp_path: Path, checks: tuple[CheckSpec, ...], hooks: tuple[str, ...]) -> FleetAndAlerts:
    opts = FleetAlertOptions(
        fleet=FleetOptions(port=0, ping_interval_s=0.1, ping_timeout_s=0.2, close_timeout_s=0.3),
        alerting=AlertingConfig(checks=checks, webhooks=tuple(Webhook(h, "json") for h in hooks)),
        state_path=tmp_path / "alerts.db",
        eval_interval_s=0.05,
        retry=RetryPolicy(attempts=2, base_s=0.01, cap_s=0.05),
    )
    return FleetAndAlerts(opts, declare_fleet_metrics(CollectorRegistry()))


def _settings(checks: list[dict[str, Any]], hooks: list[str]) -> Settings:
    notify = {"webhooks": [{"url": h, "format": "json"} for h in hooks]}
    return Settings(port=0, policies={"checks": checks, "notify": notify})


async def test_reload_swaps_checks_and_notifiers(
    tmp_path: Path, receivers: tuple[Receiver, Receiver]
) -> None:
    old, new = receivers
    svc = _service(tmp_path, (CheckSpec("old-job", period_s=3600.0, grace_s=60.0),), (old.url,))
    await svc.start()
    try:
        apply = svc.prepare_reload(_settings([{"name": "nightly", "period": "1h", "grace": "0s"}], [new.url]))
        assert [c["check"] for c in svc.engine.view(time.time())["checks"]] == ["old-job"]  # not yet
        apply()
        checks = {c["check"]: c for c in svc.engine.view(time.time())["checks"]}
        assert set(checks) == {"nightly"} and checks["nightly"]["period_s"] == 3600.0
        assert not checks["nightly"]["dynamic"]
        svc.engine.checkin("nightly", "fail", time.time())
        assert await wait_until_async(lambda: [b["check"] for b in new.bodies] == ["nightly"])
        assert new.bodies[0]["event"] == "firing" and old.bodies == []
        (firing,) = svc.engine.view(time.time())["firing"]
        assert firing["check"] == "nightly" and firing["notified"] is True
    finally:
        await svc.stop()


async def test_an_invalid_reload_changes_nothing(
    tmp_path: Path, receivers: tuple[Receiver, Receiver]
) -> None:
    svc = _service(tmp_path, (CheckSpec("job", period_s=60.0, grace_s=0.0),), (receivers[0].url,))
    await svc.start()
    try:
        with pytest.raises(ConfigError, match=r"checks\[0\]\.period"):
            svc.prepare_reload(_settings([{"name": "job", "period": "soon"}], [receivers[1].url]))
        assert svc.options.alerting.checks[0].period_s == 60.0
        assert [r.url for r in svc.dispatcher.receivers] == [receivers[0].url]  # type: ignore[attr-defined]
    finally:
        await svc.stop()


async def test_alerts_with_no_notifier_say_so_until_one_is_added(
    tmp_path: Path, receivers: tuple[Receiver, Receiver], alert_logs: list[logging.LogRecord]
) -> None:
    hook = receivers[0]
    svc = _service(tmp_path, (CheckSpec("job", period_s=3600.0, grace_s=0.0),), ())
    await svc.start()
    try:
        warned = [r.getMessage() for r in alert_logs if r.levelno == logging.WARNING]
        assert any(m.startswith("no alert notifier configured") for m in warned)
        svc.engine.checkin("job", "fail", time.time())
        assert await wait_until_async(lambda: svc.engine.view(time.time())["firing"] != [])
        (firing,) = svc.engine.view(time.time())["firing"]
        assert firing["notified"] is False
        assert await wait_until_async(lambda: any("[FIRING]" in r.getMessage() for r in alert_logs))
        (fired,) = [r for r in alert_logs if "[FIRING]" in r.getMessage()]
        assert fired.levelno == logging.WARNING and fired.fields["notified"] is False  # type: ignore[attr-defined]
        for _ in range(3):  # several evaluations: announced once, not once per tick
            await svc.tick(time.time())
        assert len([r for r in alert_logs if "[FIRING]" in r.getMessage()]) == 1
        assert [s.notified for s in await asyncio.to_thread(svc.store.subjects)] == [False]
        # A notifier added by a reload hears about the outage that is still going on.
        svc.prepare_reload(_settings([{"name": "job", "period": "1h", "grace": "0s"}], [hook.url]))()
        assert await wait_until_async(lambda: [b["event"] for b in hook.bodies] == ["firing"])
        assert svc.engine.view(time.time())["firing"][0]["notified"] is True
    finally:
        await svc.stop()
