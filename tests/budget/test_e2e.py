"""Cost ceilings through a real sidecar, with the official SDK as the client (SPEC R-CC-1..5)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from sidecar.server.inprocess import RunningSidecar
from sidecar.settings import Settings
from sidecar.testing.fake_upstream import FakeUpstream
from tests.conftest import API_KEY
from tests.metrics_util import sample
from tests.redis_server import RedisServer
from tests.waiting import wait_until

# Haiku 4.5: $1 in, $5 out per million tokens. Each call: 1000 in + 200 out = $0.002 exactly.
USAGE = {
    "input_tokens": 1000,
    "output_tokens": 200,
    "cache_read_input_tokens": 0,
    "cache_creation": None,
    "cache_creation_input_tokens": 0,
}
CALL_USD = (1000 * 1 + 200 * 5) / 1e6
# Realistic for that usage: at least 1000 bytes of input (a token is never under a byte of JSON) and
# max_tokens >= the 200 output tokens, so the sidecar's upper-bound reservation really bounds the call.
MSG = [{"role": "user", "content": "Please summarise this ticket. " * 40}]


def _headers(session: str, app: str = "default") -> dict[str, str]:
    return {"x-session-id": session, "x-app-name": app, "x-fake-usage": json.dumps(USAGE)}


def _chat_hits(fake: FakeUpstream) -> int:
    return sum(1 for r in fake.requests if r.path == "/v1/messages")


def _budget(**limits: Any) -> dict[str, Any]:
    return {"budgets": {"defaults": limits}}


def test_refusal_shape_and_sdk_does_not_retry(
    fake: FakeUpstream, make_sidecar: Callable[..., RunningSidecar]
) -> None:
    sidecar = make_sidecar(fake.url, policies=_budget(session_max_usd=CALL_USD * 2.5))
    client = anthropic.Anthropic(base_url=sidecar.url, api_key=API_KEY, max_retries=2)
    for _ in range(3):  # $0.002, $0.004, $0.006: the third starts under the $0.005 ceiling
        client.messages.create(
            model="claude-haiku-4-5", max_tokens=300, messages=MSG, extra_headers=_headers("b1")
        )
    hits = _chat_hits(fake)
    with pytest.raises(anthropic.APIStatusError) as info:
        client.messages.create(
            model="claude-haiku-4-5", max_tokens=300, messages=MSG, extra_headers=_headers("b1")
        )
    err = info.value
    assert err.status_code == 429
    assert err.response.headers["x-should-retry"] == "false"
    body = err.response.json()
    assert body["type"] == "error" and body["error"]["type"] == "budget_exceeded_error"
    message = body["error"]["message"]
    assert "session_usd" in message and "0.005" in message and "0.006" in message
    assert _chat_hits(fake) == hits  # refused before the upstream, and not retried by the SDK
    # Another session is unaffected.
    client.messages.create(
        model="claude-haiku-4-5", max_tokens=300, messages=MSG, extra_headers=_headers("b2")
    )
    metrics = httpx.get(sidecar.url + "/metrics").text
    assert 'sidecar_budget_refusals_total{app="default",limit="session_usd"} 1.0' in metrics
    events = sidecar.wait_events(5)
    refused = [e for e in events if e.outcome == "refused"]
    assert len(refused) == 1 and refused[0].status == 429 and refused[0].error_type == "budget_exceeded_error"


def test_remaining_header_and_soft_warning(
    fake: FakeUpstream, make_sidecar: Callable[..., RunningSidecar]
) -> None:
    sidecar = make_sidecar(fake.url, policies=_budget(session_max_usd=0.01))
    client = anthropic.Anthropic(base_url=sidecar.url, api_key=API_KEY, max_retries=0)
    remaining = []
    for _ in range(4):
        raw = client.messages.with_raw_response.create(
            model="claude-haiku-4-5", max_tokens=300, messages=MSG, extra_headers=_headers("r1")
        )
        remaining.append(float(raw.headers["x-sidecar-budget-remaining-usd"]))
    assert remaining == pytest.approx([0.008, 0.006, 0.004, 0.002], abs=1e-9)
    metrics = httpx.get(sidecar.url + "/metrics").text
    # 80 % of $0.01 is reached by the 4th call: one warning, once.
    assert 'sidecar_budget_warnings_total{app="default",limit="session_usd"} 1.0' in metrics


def test_warn_mode_never_refuses(fake: FakeUpstream, make_sidecar: Callable[..., RunningSidecar]) -> None:
    sidecar = make_sidecar(fake.url, policies=_budget(session_max_model_calls=2, mode="warn"))
    client = anthropic.Anthropic(base_url=sidecar.url, api_key=API_KEY, max_retries=0)
    for _ in range(4):
        client.messages.create(
            model="claude-haiku-4-5", max_tokens=300, messages=MSG, extra_headers=_headers("w1")
        )
    assert _chat_hits(fake) == 4
    metrics = httpx.get(sidecar.url + "/metrics").text
    warnings = sample(metrics, "sidecar_budget_warnings_total", app="default", limit="session_model_calls")
    assert warnings is not None and warnings >= 2  # the 3rd and 4th calls would have been refused
    assert sample(metrics, "sidecar_budget_refusals_total", app="default", limit="session_model_calls") == 0


def test_block_and_unblock_through_admin_api(fake: FakeUpstream, sidecar: RunningSidecar) -> None:
    client = anthropic.Anthropic(base_url=sidecar.url, api_key=API_KEY, max_retries=0)
    assert httpx.post(sidecar.url + "/sidecar/v1/apps/voice/block").json()["blocked"] is True
    with pytest.raises(anthropic.RateLimitError) as info:
        client.messages.create(
            model="claude-haiku-4-5", max_tokens=5, messages=MSG, extra_headers=_headers("k1", app="voice")
        )
    assert "blocked" in str(info.value)
    assert httpx.post(sidecar.url + "/sidecar/v1/apps/voice/unblock").json()["blocked"] is False
    client.messages.create(
        model="claude-haiku-4-5", max_tokens=5, messages=MSG, extra_headers=_headers("k1", "voice")
    )
    put = httpx.put(sidecar.url + "/sidecar/v1/apps/voice/budget", json={"session_max_model_calls": 1})
    assert put.status_code == 200 and put.json()["limits"]["session_max_model_calls"] == 1
    with pytest.raises(anthropic.RateLimitError):
        client.messages.create(
            model="claude-haiku-4-5", max_tokens=5, messages=MSG, extra_headers=_headers("k1", app="voice")
        )
    bad = httpx.put(sidecar.url + "/sidecar/v1/apps/voice/budget", json={"session_max_usd": "lots"})
    assert bad.status_code == 400 and "session_max_usd" in bad.json()["error"]["message"]


async def _burst(url: str, n: int, session: str) -> list[int]:
    client = anthropic.AsyncAnthropic(base_url=url, api_key=API_KEY, max_retries=0)

    async def one() -> int:
        try:
            await client.messages.create(
                model="claude-haiku-4-5",
                max_tokens=300,
                messages=MSG,
                extra_headers={**_headers(session), "x-fake-first-token-delay-ms": "100"},
            )
        except anthropic.APIStatusError as exc:
            return exc.status_code
        return 200

    return list(await asyncio.gather(*(one() for _ in range(n))))


def test_parallel_burst_overshoots_by_at_most_one_request(
    fake: FakeUpstream, make_sidecar: Callable[..., RunningSidecar]
) -> None:
    ceiling = CALL_USD * 3.5
    sidecar = make_sidecar(fake.url, policies=_budget(session_max_usd=ceiling))
    statuses = asyncio.run(_burst(sidecar.url, 20, "burst"))
    admitted = statuses.count(200)
    assert set(statuses) <= {200, 429}
    assert admitted >= 1 and admitted * CALL_USD <= ceiling + CALL_USD
    events = sidecar.wait_events(20, session_id="burst")
    spent = sum(e.cost_usd or 0 for e in events)
    assert spent <= ceiling + CALL_USD + 1e-12


def test_two_sidecars_share_one_ceiling_through_redis(
    fake: FakeUpstream, redis_server: RedisServer, tmp_path: Path
) -> None:
    ceiling = CALL_USD * 4.5
    sidecars = [
        RunningSidecar(
            Settings(
                upstream_url=fake.url,
                store=f"sqlite:///{tmp_path}/r{i}.db",
                port=0,
                redis_url=redis_server.url,
                policies=_budget(session_max_usd=ceiling),
            )
        ).start()
        for i in range(2)
    ]
    try:
        client_a = anthropic.Anthropic(base_url=sidecars[0].url, api_key=API_KEY, max_retries=0)
        client_b = anthropic.Anthropic(base_url=sidecars[1].url, api_key=API_KEY, max_retries=0)
        outcomes = []
        for i in range(8):  # alternate replicas: each sees the other's spend
            client = client_a if i % 2 == 0 else client_b
            try:
                client.messages.create(
                    model="claude-haiku-4-5", max_tokens=300, messages=MSG, extra_headers=_headers("shared")
                )
                outcomes.append(200)
            except anthropic.RateLimitError:
                outcomes.append(429)
        assert outcomes == [200] * 5 + [429] * 3  # $0.010 used when the 6th asks; ceiling $0.009
        redis_server.stop()  # Redis gone: the default fail mode is open, calls go on and are counted
        client_a.messages.create(
            model="claude-haiku-4-5", max_tokens=5, messages=MSG, extra_headers=_headers("other")
        )
        metrics = httpx.get(sidecars[0].url + "/metrics").text
        assert 'sidecar_budget_backend_errors_total{outcome="redis_unavailable"} 1.0' in metrics
    finally:
        for s in sidecars:
            s.stop()


def test_redis_down_fail_closed_is_503(fake: FakeUpstream, redis_server: RedisServer, tmp_path: Path) -> None:
    settings = Settings(
        upstream_url=fake.url,
        store=f"sqlite:///{tmp_path}/c.db",
        port=0,
        redis_url=redis_server.url,
        policy_env={"SIDECAR_REDIS_FAIL_MODE": "closed"},
        policies=_budget(session_max_usd=1.0),
    )
    with RunningSidecar(settings) as sidecar:
        client = anthropic.Anthropic(base_url=sidecar.url, api_key=API_KEY, max_retries=0)
        client.messages.create(
            model="claude-haiku-4-5", max_tokens=5, messages=MSG, extra_headers=_headers("c1")
        )
        redis_server.stop()
        with pytest.raises(anthropic.APIStatusError) as info:
            client.messages.create(
                model="claude-haiku-4-5", max_tokens=5, messages=MSG, extra_headers=_headers("c1")
            )
        assert info.value.status_code == 503
        assert info.value.response.headers["x-should-retry"] == "true"
        redis_server.start()  # back: calls flow again (after the short back-off)

        def admitted() -> bool:
            try:
                client.messages.create(
                    model="claude-haiku-4-5", max_tokens=5, messages=MSG, extra_headers=_headers("c1")
                )
            except anthropic.APIStatusError:
                return False
            return True

        assert wait_until(admitted, interval=0.1)


def test_local_counters_survive_a_restart(fake: FakeUpstream, tmp_path: Path) -> None:
    settings = Settings(
        upstream_url=fake.url,
        store=f"sqlite:///{tmp_path}/p.db",
        port=0,
        policies=_budget(session_max_model_calls=3),
    )
    with RunningSidecar(settings) as first:
        client = anthropic.Anthropic(base_url=first.url, api_key=API_KEY, max_retries=0)
        for _ in range(3):
            client.messages.create(
                model="claude-haiku-4-5", max_tokens=5, messages=MSG, extra_headers=_headers("p")
            )
        first.wait_events(3)
    with RunningSidecar(settings) as second:
        client = anthropic.Anthropic(base_url=second.url, api_key=API_KEY, max_retries=0)
        with pytest.raises(anthropic.RateLimitError):
            client.messages.create(
                model="claude-haiku-4-5", max_tokens=5, messages=MSG, extra_headers=_headers("p")
            )
