"""The demo fleet on fast timings: the frozen member's alert fires, then resolves, in the printed log."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry

from sidecar.alerting.config import AlertingConfig, CheckSpec, Webhook
from sidecar.alerting.notifiers import RetryPolicy
from sidecar.demo.fleet import alert_printer, demo_fleet_config, run_demo_fleet
from sidecar.fleet.server import FleetOptions
from sidecar.fleet.service import FleetAlertOptions, FleetAndAlerts
from sidecar.telemetry.metrics import declare_fleet_metrics


async def test_demo_fleet_fires_and_resolves(tmp_path: Path) -> None:
    lines: list[str] = []
    async with alert_printer(lines.append) as hook:
        opts = FleetAlertOptions(
            fleet=FleetOptions(port=0, ping_interval_s=0.1, ping_timeout_s=0.2, close_timeout_s=0.2),
            alerting=AlertingConfig(
                checks=(CheckSpec("voice-members", "fleet_members", 0.0, 0.3, fleet="voice"),),
                webhooks=(Webhook(hook),),
            ),
            state_path=tmp_path / "alerts.db",
            eval_interval_s=0.05,
            retry=RetryPolicy(attempts=2, base_s=0.01),
        )
        svc = FleetAndAlerts(opts, declare_fleet_metrics(CollectorRegistry()))
        await svc.start()
        try:
            result = await run_demo_fleet(
                svc.connect_url, freeze_after_s=0.3, freeze_for_s=1.2, duration_s=2.0, log=lines.append
            )
        finally:
            await svc.stop()
    assert result.froze == ["voice-agent-3"] and result.connects == 4 and result.status_messages >= 3
    alerts = [line for line in lines if line.startswith("ALERT")]
    assert len(alerts) == 2, lines
    assert alerts[0].startswith("ALERT  [FIRING] dead-man check `voice-members` member `voice-agent-3`")
    assert alerts[1].startswith("ALERT  [RESOLVED] dead-man check `voice-members` member `voice-agent-3`")
    members = svc.registry.snapshot(0.0)[0]["members"]
    assert {m["member"]: m["reconnects"] for m in members}["voice-agent-3"] == 1
    assert all(m["status"] is not None for m in members)


def test_demo_config_parses() -> None:
    cfg = demo_fleet_config(webhook_url="http://127.0.0.1:1/alerts")
    config = AlertingConfig.from_sources(cfg["policies"]["checks"], None, cfg["policy_env"])
    assert [c.kind for c in config.checks] == ["fleet_members", "fleet_size"]
    assert config.webhooks == (Webhook("http://127.0.0.1:1/alerts"),)
