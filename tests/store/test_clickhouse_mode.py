"""A sidecar in ClickHouse mode: the local store answers the sessions API, the spool ships every event."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest
from anthropic import AnthropicBedrock

from sidecar.server.inprocess import RunningSidecar
from sidecar.settings import Settings
from sidecar.store.clickhouse import ClickHouseStore
from sidecar.store.clickhouse_schema import SchemaOptions
from sidecar.testing.fake_bedrock import FakeBedrock
from sidecar.testing.fake_sigv4 import FakeAwsCredentials
from sidecar.testing.fake_upstream import FakeUpstream
from tests.cloud import SONNET_US, aws_env, fake_bedrock
from tests.conftest import API_KEY, require_service
from tests.metrics_util import sample

__all__ = ["aws_env", "fake_bedrock"]


def test_events_reach_clickhouse_once_and_sessions_stay_local(fake: FakeUpstream, tmp_path: Path) -> None:
    from sidecar.store.chdb_client import ChdbClient

    try:
        engine = ChdbClient(tmp_path / "chdb")
    except ImportError:
        require_service(False, "chdb (pip install chdb)")
        return
    try:
        settings = Settings(
            upstream_url=fake.url,
            port=0,
            store="clickhouse://default:pw@127.0.0.1:8123/default",
            local_store=f"sqlite:///{tmp_path}/local.db",
            spool_path=str(tmp_path / "spool.db"),
        )
        with RunningSidecar(settings, clickhouse_connect=engine.borrow) as sidecar:
            client = anthropic.Anthropic(base_url=sidecar.url, api_key=API_KEY, max_retries=0)
            for i in range(3):
                client.messages.create(
                    model="claude-haiku-4-5",
                    max_tokens=10,
                    messages=[{"role": "user", "content": f"q{i}"}],
                    extra_headers={"x-session-id": "ch-1"},
                )
            local = sidecar.wait_events(3)
            shipper = sidecar.sidecar.stores.shipper  # type: ignore[union-attr]
            assert shipper is not None and shipper.flush(10)
            ready = httpx.get(sidecar.url + "/readyz").json()
            assert ready["clickhouse"]["spool_pending"] == 0
            session = httpx.get(sidecar.url + "/sidecar/v1/sessions/ch-1").json()
            assert session["model_calls"] == 3
            # scope=fleet answers from ClickHouse (SPEC R-RS-5): the same figures, once shipped.
            fleet = {"scope": "fleet"}
            listed = httpx.get(sidecar.url + "/sidecar/v1/sessions", params=fleet).json()["sessions"]
            assert [(s["session_id"], s["model_calls"]) for s in listed] == [("ch-1", 3)]
            detail = httpx.get(sidecar.url + "/sidecar/v1/sessions/ch-1", params=fleet).json()
            assert len(detail["calls"]) == 3
            summary = httpx.get(sidecar.url + "/sidecar/v1/summary", params={**fleet, "since": 0}).json()
            assert summary["totals"]["model_calls"] == 3
            metrics = httpx.get(sidecar.url + "/metrics").text
            assert sample(metrics, "sidecar_spool_pending_events") == 0
            assert sample(metrics, "sidecar_events_shipped_total") == 3
        remote = ClickHouseStore(engine.borrow, SchemaOptions(), migrate=False)
        remote.open()
        shipped = remote.events(session_id="ch-1")
        remote.close()
        assert sorted(e.event_id for e in shipped) == sorted(e.event_id for e in local)
        assert sum(e.cost_usd or 0 for e in shipped) == pytest.approx(
            sum(e.cost_usd or 0 for e in local), abs=1e-12
        )
    finally:
        engine.close()


MAIN, SUB = "agent-main-1", "agent-sub-7"


def test_agent_ids_and_providers_reach_both_stores_and_the_api(
    fake: FakeUpstream, fake_bedrock: FakeBedrock, aws_env: FakeAwsCredentials, tmp_path: Path
) -> None:
    from sidecar.store.chdb_client import ChdbClient

    try:
        engine = ChdbClient(tmp_path / "chdb")
    except ImportError:
        require_service(False, "chdb (pip install chdb)")
        return
    try:
        settings = Settings(
            upstream_url=fake.url,
            port=0,
            store="clickhouse://default:pw@127.0.0.1:8123/default",
            local_store=f"sqlite:///{tmp_path}/local.db",
            spool_path=str(tmp_path / "spool.db"),
            bedrock_url=fake_bedrock.url,
            bedrock_region="us-east-1",
        )
        with RunningSidecar(settings, clickhouse_connect=engine.borrow) as sidecar:
            session = {"x-session-id": "agents-1"}
            # Claude Code's main agent, then a subagent it spawned: one on the API, one on Bedrock.
            main = anthropic.Anthropic(
                base_url=sidecar.url,
                api_key=API_KEY,
                max_retries=0,
                default_headers={**session, "x-claude-code-agent-id": MAIN},
            )
            sub_headers = {"x-claude-code-agent-id": SUB, "x-claude-code-parent-agent-id": MAIN}
            ask: Any = {"max_tokens": 10, "messages": [{"role": "user", "content": "q"}]}
            main.messages.create(model="claude-haiku-4-5", **ask)
            main.messages.create(model="claude-haiku-4-5", extra_headers=sub_headers, **ask)
            bedrock = AnthropicBedrock(
                api_key="bedrock-client-token",
                aws_region="us-east-1",
                base_url=sidecar.url + "/bedrock",
                default_headers={**session, **sub_headers},
            )
            bedrock.messages.create(model=SONNET_US, **ask)
            main.messages.create(model="claude-haiku-4-5", **ask)
            local = sorted(sidecar.wait_events(4), key=lambda e: (e.started_at, e.event_id))
            want = [(MAIN, None, "anthropic"), (SUB, MAIN, "anthropic"), (SUB, MAIN, "bedrock")]
            want.append((MAIN, None, "anthropic"))
            assert [(e.agent_id, e.parent_agent_id, e.provider) for e in local] == want
            shipper = sidecar.sidecar.stores.shipper  # type: ignore[union-attr]
            assert shipper is not None and shipper.flush(10)
            for scope in ("local", "fleet"):
                detail = httpx.get(sidecar.url + "/sidecar/v1/sessions/agents-1", params={"scope": scope})
                got = [(c["agent_id"], c["parent_agent_id"], c["provider"]) for c in detail.json()["calls"]]
                assert got == want, scope
            fleet = httpx.get(sidecar.url + "/sidecar/v1/sessions", params={"scope": "fleet"}).json()
            (row,) = fleet["sessions"]
            assert row["agent_ids"] == [MAIN, SUB] and row["providers"] == ["anthropic", "bedrock"]
        remote = ClickHouseStore(engine.borrow, SchemaOptions(), migrate=False)
        remote.open()
        shipped = sorted(remote.events(session_id="agents-1"), key=lambda e: (e.started_at, e.event_id))
        remote.close()
        assert shipped == local
    finally:
        engine.close()
