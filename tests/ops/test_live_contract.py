"""The contract between the exporter and what on-call uses, checked on a LIVE sidecar after traffic:
every series a dashboard or alert rule names is exported, and ``promtool check metrics`` is clean."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anthropic
import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

from sidecar.server.inprocess import RunningSidecar
from sidecar.settings import Settings
from sidecar.testing.fake_upstream import FakeUpstream
from tests.conftest import API_KEY, require_service
from tests.ops.series import dashboard_series, promql_series, rule_expressions
from tests.waiting import wait_until_async

if TYPE_CHECKING:
    from sidecar.fleet.service import FleetAndAlerts

ROOT = Path(__file__).resolve().parents[2]
SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "gauge": ("",),
    "info": ("_info",),
    "summary": ("_sum", "_count", ""),
}


def _exported(text: str) -> set[str]:
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        for suffix in SUFFIXES.get(family.type, ("",)):
            names.add(family.name + suffix)
    return names


def _used() -> dict[str, set[str]]:
    used: dict[str, set[str]] = {}
    for path in sorted((ROOT / "dashboards").glob("*.json")):
        used[path.name] = dashboard_series(json.loads(path.read_text()))
    for path in sorted((ROOT / "alerts").glob("*.rules.yml")):
        doc = yaml.safe_load(path.read_text())
        used[path.name] = set().union(*(promql_series(expr) for _, expr in rule_expressions(doc)))
    return used


async def _fleet_member(fleet: FleetAndAlerts) -> None:
    """A member that reports its status and stays until a ping of the sidecar's has come back."""

    def answered() -> bool:
        f = fleet.registry.fleet("voice")
        m = f.members.get("m1") if f is not None else None
        return m is not None and m.status is not None and m.last_pong is not None

    async with connect(f"{fleet.connect_url}?fleet=voice&member=m1") as ws:
        await ws.send(json.dumps({"type": "status", "calls_in_progress": 1}))
        assert await wait_until_async(answered)


def _traffic(sidecar: RunningSidecar) -> str:
    client = anthropic.Anthropic(base_url=sidecar.url, api_key=API_KEY, max_retries=0)
    tools: Any = [
        {"name": "lookup", "description": "d", "input_schema": {"type": "object", "properties": {}}}
    ]
    headers = {"x-session-id": "contract", "x-app-name": "support"}
    messages: Any = [{"role": "user", "content": "hi"}]
    first = client.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=20,
        messages=messages,
        tools=tools,
        system="Stable system prompt. " * 400,
        extra_headers=headers,
    )
    use = next(b for b in first.content if b.type == "tool_use")
    messages += [
        {"role": "assistant", "content": [b.model_dump() for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "x"}]},
    ]
    with client.messages.stream(
        model="claude-sonnet-4-5",
        max_tokens=20,
        messages=messages,
        tools=tools,
        system="Stable system prompt. " * 400,
        extra_headers=headers,
    ) as s:
        s.get_final_message()
    httpx.post(sidecar.url + "/sidecar/v1/checkins/nightly-eval")
    fleet = sidecar.sidecar.fleet
    assert fleet is not None
    asyncio.run(_fleet_member(fleet))
    sidecar.wait_events(2)
    return httpx.get(sidecar.url + "/metrics").text


def test_every_series_used_by_dashboards_and_alerts_is_exported(fake: FakeUpstream, tmp_path: Path) -> None:
    settings = Settings(
        upstream_url=fake.url,
        store=f"sqlite:///{tmp_path}/c.db",
        port=0,
        policies={"budgets": {"defaults": {"session_max_usd": 5.0}}},
        policy_env={"SIDECAR_FLEET_PING_INTERVAL": "0.2"},
    )
    with RunningSidecar(settings) as sidecar:
        text = _traffic(sidecar)
    exported = _exported(text) | {"up"}  # `up` is Prometheus's own
    missing = {where: sorted(names - exported) for where, names in _used().items() if names - exported}
    assert not missing, f"series used but not exported: {missing}"
    promtool = shutil.which("promtool")
    require_service(promtool is not None, "promtool (apt-get install prometheus)")
    assert promtool is not None
    lint = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
