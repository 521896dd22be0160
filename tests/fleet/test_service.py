"""FleetAndAlerts end to end: settings, admin routes, a real fleet listener and a real webhook receiver."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from websockets.asyncio.client import connect

from sidecar.admin import alerts, checkins, fleet
from sidecar.admin.api import admin_api
from sidecar.alerting.config import AlertingConfig, CheckSpec, Webhook
from sidecar.alerting.notifiers import RetryPolicy
from sidecar.core.events import OK, UPSTREAM_ERROR, CallEvent
from sidecar.errors import ConfigError
from sidecar.fleet.server import FleetOptions
from sidecar.fleet.service import FleetAlertOptions, FleetAndAlerts
from sidecar.settings import Settings
from sidecar.telemetry.metrics import declare_fleet_metrics
from tests.alerting.test_notifiers import Receiver, receiver  # noqa: F401 - fixture
from tests.waiting import wait_until_async


def options(tmp_path: Path, hook_url: str, **fleet: Any) -> FleetAlertOptions:
    checks = (
        CheckSpec("voice-members", "fleet_members", 0.0, 0.3, fleet="voice"),
        CheckSpec("voice-size", "fleet_size", 0.0, 5.0, fleet="voice", min_members=1),
        CheckSpec("traffic", "traffic", 600.0, 0.0),
    )
    return FleetAlertOptions(
        fleet=FleetOptions(port=0, ping_interval_s=0.1, ping_timeout_s=0.2, close_timeout_s=0.3, **fleet),
        alerting=AlertingConfig(checks=checks, webhooks=(Webhook(hook_url, "json"),)),
        state_path=tmp_path / "alerts.db",
        eval_interval_s=0.05,
        retry=RetryPolicy(attempts=3, base_s=0.01, cap_s=0.05),
    )


@pytest.fixture
async def service(tmp_path: Path, receiver: Receiver) -> AsyncIterator[FleetAndAlerts]:  # noqa: F811
    svc = FleetAndAlerts(
        options(tmp_path, receiver.url, ingest_token="tok"), declare_fleet_metrics(CollectorRegistry())
    )
    await svc.start()
    yield svc
    await svc.stop()


def client(svc: FleetAndAlerts) -> httpx.AsyncClient:
    app = admin_api()
    for provider in (fleet.fleet_admin, checkins.checkin_admin, alerts.alerts_admin):
        app.dependency_overrides[provider] = lambda: svc
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sidecar")


async def test_frozen_member_fires_and_resolves_through_a_webhook(
    service: FleetAndAlerts,
    receiver: Receiver,  # noqa: F811
) -> None:
    url = f"{service.connect_url}?fleet=voice&member=agent-1&token=tok"
    ws = await connect(url, ping_interval=None)
    assert await wait_until_async(lambda: service.registry.connected_count("voice") == 1)
    ws.transport.pause_reading()  # the member freezes: no more pongs
    assert await wait_until_async(lambda: any(b["event"] == "firing" for b in receiver.bodies))
    (fired,) = receiver.bodies
    assert (fired["check"], fired["member"], fired["fleet"]) == ("voice-members", "agent-1", "voice")
    async with client(service) as http:
        alerts = (await http.get("/sidecar/v1/alerts")).json()
        assert [(f["check"], f["member"]) for f in alerts["firing"]] == [("voice-members", "agent-1")]
        view = (await http.get("/sidecar/v1/fleet")).json()
    assert view["connect_url"] == service.connect_url and view["connect_url"].startswith("ws://127.0.0.1:")
    (member,) = view["fleets"][0]["members"]
    assert member["disconnect_reason"] == "ping_timeout" and member["missed_pongs"] == 1
    ws.transport.abort()
    async with connect(url, ping_interval=None):  # back again
        assert await wait_until_async(lambda: [b["event"] for b in receiver.bodies] == ["firing", "resolved"])
    assert receiver.bodies[1]["member"] == "agent-1"


async def test_checkin_routes_and_ingest_token(service: FleetAndAlerts) -> None:
    async with client(service) as http:
        assert (await http.post("/sidecar/v1/checkins/backup")).status_code == 401
        r = await http.post("/sidecar/v1/checkins/backup?token=tok&period=2h&grace=5m")
        assert r.status_code == 200
        assert r.json() == {
            "check": "backup",
            "signal": "success",
            "period_s": 7200.0,
            "grace_s": 300.0,
            "status": "new",
        }
        headers = {"Authorization": "Bearer tok"}
        assert (await http.post("/sidecar/v1/checkins/backup/start", headers=headers)).json()[
            "signal"
        ] == "start"
        assert (await http.post("/sidecar/v1/checkins/backup/fail", headers=headers)).json()[
            "signal"
        ] == "fail"
        bad = await http.post("/sidecar/v1/checkins/backup?token=tok&period=soon")
        assert bad.status_code == 400 and bad.json()["error"]["message"].startswith("period:")
        wrong_kind = await http.post("/sidecar/v1/checkins/traffic?token=tok")
        assert wrong_kind.status_code == 409
        assert await wait_until_async(lambda: service.engine.subjects["backup"].status == "down")
        alerts = (await http.get("/sidecar/v1/alerts")).json()
        assert [f["check"] for f in alerts["firing"]] == ["backup"]
        checks = {c["check"]: c for c in alerts["checks"]}
        assert checks["backup"]["dynamic"] and checks["backup"]["misses"] == 1
        assert checks["voice-members"]["members_watched"] == 0
        named_start = await http.post("/sidecar/v1/checkins/start?token=tok")  # a check called "start"
        assert named_start.json()["check"] == "start" and named_start.json()["signal"] == "success"
        deleted = await http.delete("/sidecar/v1/checks/backup")
        assert deleted.json() == {"check": "backup", "deleted": True}
        assert (await http.delete("/sidecar/v1/checks/traffic")).status_code == 404


async def test_snooze_and_maintenance_persist(service: FleetAndAlerts, tmp_path: Path) -> None:
    async with client(service) as http:
        r = await http.post("/sidecar/v1/alerts/nightly/snooze?for=1h&reason=deploy")
        assert r.status_code == 200 and r.json()["reason"] == "deploy"
        assert (await http.post("/sidecar/v1/maintenance?for=45d")).status_code == 400
        assert (await http.post("/sidecar/v1/maintenance")).status_code == 400
        m = (await http.post("/sidecar/v1/maintenance?for=30m")).json()
        assert m["scope"] == "*" and m["reason"] == "maintenance"
        scopes = [s["scope"] for s in (await http.get("/sidecar/v1/alerts")).json()["snoozes"]]
        assert scopes == ["*", "nightly"]
        assert (await http.delete("/sidecar/v1/maintenance")).json() == {"scope": "*", "unsnoozed": True}
    assert set(await asyncio.to_thread(service.store.snoozes)) == {"nightly"}


async def test_traffic_check_counts_only_successful_calls(service: FleetAndAlerts) -> None:
    def event(outcome: str, status: int, at: float) -> CallEvent:
        return CallEvent(
            "e", at, "app", "", "none", "POST", "/v1/messages", "chat", False, status=status, outcome=outcome
        )

    sink = service.sink()
    sink.write([event(UPSTREAM_ERROR, 502, 100.0), event(OK, 429, 200.0)])
    assert service.engine.last_success is None
    sink.write([event(OK, 200, 300.0), event(OK, 200, 250.0)])
    assert service.engine.last_success == 300.0


async def test_state_survives_a_restart(tmp_path: Path, receiver: Receiver) -> None:  # noqa: F811
    opts = options(tmp_path, receiver.url)
    opts = replace(
        opts, alerting=replace(opts.alerting, checks=(CheckSpec("job", period_s=0.1, grace_s=0.0),))
    )
    first = FleetAndAlerts(opts, declare_fleet_metrics(CollectorRegistry()))
    await first.start()
    first.engine.checkin("job", "success", time.time())
    assert await wait_until_async(lambda: [b["event"] for b in receiver.bodies] == ["firing"])
    await first.stop()
    second = FleetAndAlerts(opts, declare_fleet_metrics(CollectorRegistry()))
    await second.start()
    # An evaluation of the restored state, and its notifications (if any) delivered, before looking.
    await second.tick(time.time())
    assert await second.dispatcher.drain(10.0)
    assert second.engine.subjects["job"].firing and len(receiver.bodies) == 1  # not fired again
    second.engine.checkin("job", "success", time.time() + 10)
    assert await wait_until_async(lambda: [b["event"] for b in receiver.bodies] == ["firing", "resolved"])
    await second.stop()


def test_from_settings(tmp_path: Path) -> None:
    settings = Settings(
        host="0.0.0.0",
        store=f"sqlite:///{tmp_path}/data/events.db",
        ingest_token="abc",
        public_url="https://sidecar.internal:8788",
        policies={
            "checks": [{"name": "nightly", "period": "1d"}],
            "notify": {"webhooks": [{"url": "http://x/y"}]},
        },
        policy_env={
            "SIDECAR_FLEET_PORT": "0",
            "SIDECAR_FLEET_PING_INTERVAL": "2.5",
            "SIDECAR_FLEET_PING_TIMEOUT": "1.5",
            "SIDECAR_ALERTMANAGER_URL": "http://127.0.0.1:9093",
        },
    )
    svc = FleetAndAlerts.from_settings(settings, declare_fleet_metrics(CollectorRegistry()))
    o = svc.options
    assert (o.fleet.host, o.fleet.port, o.fleet.ping_interval_s, o.fleet.ping_timeout_s) == (
        "0.0.0.0",
        0,
        2.5,
        1.5,
    )
    assert o.fleet.ingest_token == "abc" and o.fleet.public_host == "sidecar.internal"
    assert o.state_path == tmp_path / "data" / "alerts.db"
    assert o.alerting.checks[0].period_s == 86400.0 and o.alerting.alertmanager_url == "http://127.0.0.1:9093"
    assert [r.label for r in svc.dispatcher.receivers] == ["alertmanager", "webhook"]
    defaults = FleetAlertOptions.from_settings(Settings())
    assert (defaults.fleet.port, defaults.fleet.ping_interval_s, defaults.fleet.ping_timeout_s) == (
        8789,
        10.0,
        10.0,
    )
    for env in ({"SIDECAR_FLEET_PORT": "x"}, {"SIDECAR_FLEET_PING_INTERVAL": "0"}):
        with pytest.raises(ConfigError):
            FleetAlertOptions.from_settings(Settings(policy_env=env))


async def test_fleet_port_in_use_is_a_config_error(tmp_path: Path, receiver: Receiver) -> None:  # noqa: F811
    first = FleetAndAlerts(options(tmp_path, receiver.url), declare_fleet_metrics(CollectorRegistry()))
    await first.start()
    try:
        opts = options(tmp_path / "b", receiver.url)
        taken = replace(opts, fleet=replace(opts.fleet, port=first.server.port or 0))
        second = FleetAndAlerts(taken, declare_fleet_metrics(CollectorRegistry()))
        with pytest.raises(ConfigError, match=r"^SIDECAR_FLEET_PORT: cannot listen on 127\.0\.0\.1:"):
            await second.start()
        await second.stop()  # never started: a no-op
    finally:
        await first.stop()
