"""Delivery to a real Alertmanager (Debian's ``prometheus-alertmanager``) on 127.0.0.1.

The engine decides, the dispatcher posts to ``/api/v2/alerts``; the alert is read back through
Alertmanager's API, and Alertmanager itself notifies a local webhook receiver (firing, then resolved).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from sidecar.alerting.config import AlertingConfig, CheckSpec
from sidecar.alerting.engine import DeadmanEngine
from sidecar.alerting.notifiers import AlertmanagerReceiver, Dispatcher, RetryPolicy
from sidecar.telemetry.metrics import declare_fleet_metrics
from tests.alerting.test_engine import FakeFleets
from tests.conftest import require_service
from tests.net import free_port

BINARY = "prometheus-alertmanager"
AM_CONFIG = """
route:
  receiver: hook
  group_by: [alertname, check]
  group_wait: 100ms
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: "{url}"
        send_resolved: true
"""


@dataclass
class Hook:
    payloads: list[dict[str, Any]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.payloads.append(await request.json())
        return web.Response(text="ok")


@pytest.fixture
async def hook() -> AsyncIterator[tuple[Hook, str]]:
    rec = Hook()
    app = web.Application()
    app.router.add_post("/am", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield rec, f"http://127.0.0.1:{port}/am"
    await runner.cleanup()


@pytest.fixture
def alertmanager(tmp_path: Path, hook: tuple[Hook, str]) -> Iterator[str]:
    binary = shutil.which(BINARY) or (f"/usr/bin/{BINARY}" if Path(f"/usr/bin/{BINARY}").exists() else None)
    require_service(binary is not None, "Alertmanager (Debian package prometheus-alertmanager)")
    assert binary is not None
    config = tmp_path / "am.yml"
    config.write_text(AM_CONFIG.format(url=hook[1]))
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def wait_ready(http: aiohttp.ClientSession, url: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            async with http.get(url + "/-/ready") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("Alertmanager did not become ready")


async def until_hook(hook: Hook, status: str, timeout_s: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for payload in hook.payloads:
            if payload.get("status") == status:
                return payload
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {status} notification from Alertmanager; got {hook.payloads}")


async def test_fire_and_resolve_through_real_alertmanager(alertmanager: str, hook: tuple[Hook, str]) -> None:
    counts: list[tuple[str, str]] = []
    config = AlertingConfig(checks=(CheckSpec("nightly", period_s=1.0, grace_s=0.0, labels={"team": "ml"}),))
    engine = DeadmanEngine(
        config, FakeFleets(), declare_fleet_metrics(CollectorRegistry()), started_at=time.time()
    )
    retry = RetryPolicy(attempts=20, base_s=0.1, cap_s=0.5)  # Alertmanager may still be starting
    dispatcher = Dispatcher([AlertmanagerReceiver(alertmanager)], lambda r, o: counts.append((r, o)), retry)
    await dispatcher.start()
    async with aiohttp.ClientSession() as http:
        await wait_ready(http, alertmanager)
        now = time.time()
        engine.checkin("nightly", "success", now - 5.0)  # 5 s ago, period 1 s: down
        dispatcher.submit(engine.evaluate(now).notifications)
        assert await dispatcher.drain(10.0)
        async with http.get(alertmanager + "/api/v2/alerts") as resp:
            alerts = await resp.json()
        (alert,) = [a for a in alerts if a["labels"].get("check") == "nightly"]
        assert alert["labels"]["alertname"] == "SidecarDeadManDown"
        assert alert["labels"]["team"] == "ml"
        assert alert["status"]["state"] == "active"
        assert "is down" in alert["annotations"]["summary"]
        firing = await until_hook(hook[0], "firing")
        assert firing["alerts"][0]["labels"]["check"] == "nightly"
        # Keepalive re-post, then recovery: resolved with endsAt = now.
        dispatcher.submit(engine.keepalives(time.time()))
        assert await dispatcher.drain(10.0)
        engine.checkin("nightly", "success", time.time())
        dispatcher.submit(engine.evaluate(time.time()).notifications)
        assert await dispatcher.drain(10.0)
        resolved = await until_hook(hook[0], "resolved")
        assert resolved["alerts"][0]["labels"]["check"] == "nightly"
        async with http.get(alertmanager + "/api/v2/alerts?active=true") as resp:
            still = [a for a in await resp.json() if a["labels"].get("check") == "nightly"]
        assert still == [] or still[0]["status"]["state"] != "active"
    await dispatcher.stop()
    assert ("alertmanager", "failed") not in counts
    assert counts.count(("alertmanager", "sent")) == 3  # firing, keepalive, resolved
