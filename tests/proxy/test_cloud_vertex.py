"""Vertex AI through the sidecar (SPEC R-CP-2..5): AnthropicVertex, the project's fake Vertex.

The sidecar's token comes from Application Default Credentials: a test service-account file whose
token_uri is the fake's OAuth endpoint, so google-auth's real refresh runs (proven directly in
tests/testing/test_fake_vertex.py).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from anthropic import AnthropicVertex, RateLimitError

from sidecar.server.inprocess import RunningSidecar
from sidecar.testing.fake_vertex import FakeVertex
from tests.cloud import HAIKU_VERTEX, SONNET_VERTEX, fake_vertex, vertex_adc

__all__ = ["fake_vertex", "vertex_adc"]
TOL = 1e-6
CLIENT_TOKEN = "client-vertex-token-never-forwarded"
USAGE = {
    "input_tokens": 1000,
    "output_tokens": 2000,
    "cache_read_input_tokens": 3000,
    "cache_creation": {"ephemeral_5m_input_tokens": 400, "ephemeral_1h_input_tokens": 500},
}
# Haiku 4.5 by hand, per million: 1000*1 + 2000*5 + 3000*0.10 + 400*1.25 + 500*2 = 12,800.
HAIKU_GLOBAL_USD = 0.0128
HAIKU_REGIONAL_USD = 0.0128 * 1.1


@pytest.fixture
def vertex_sidecar(
    fake_vertex: FakeVertex, vertex_adc: Path, make_sidecar: Callable[..., RunningSidecar]
) -> RunningSidecar:
    return make_sidecar("http://127.0.0.1:9", vertex_url=fake_vertex.url)


def client(sidecar: RunningSidecar, region: str = "us-east5", **headers: str) -> AnthropicVertex:
    return AnthropicVertex(
        region=region,
        project_id="fake-project",
        access_token=CLIENT_TOKEN,  # the client's own credential: replaced, never forwarded
        base_url=sidecar.url + "/vertex/v1",
        default_headers=headers or None,
        max_retries=0,
    )


def test_answers_are_byte_for_byte_the_upstreams(
    vertex_sidecar: RunningSidecar, fake_vertex: FakeVertex
) -> None:
    path = f"/v1/projects/fake-project/locations/us-east5/publishers/anthropic/models/{SONNET_VERTEX}"
    body = {
        "anthropic_version": "vertex-2023-10-16",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "x"}],
    }
    for verb, extra in (("rawPredict", {}), ("streamRawPredict", {"stream": True})):
        through = httpx.post(vertex_sidecar.url + "/vertex" + path + ":" + verb, json={**body, **extra})
        token = fake_vertex.requests[-1].header("authorization")
        fake_vertex.reset()
        direct = httpx.post(fake_vertex.url + path + ":" + verb, json={**body, **extra},
                            headers={"authorization": token or ""})  # fmt: skip
        fake_vertex.reset()
        assert through.status_code == direct.status_code == 200
        assert through.content == direct.content
        assert through.headers["content-type"] == direct.headers["content-type"]


def test_anthropic_vertex_json_stream_and_count_tokens(
    vertex_sidecar: RunningSidecar, fake_vertex: FakeVertex
) -> None:
    c = client(vertex_sidecar)
    message = c.messages.create(
        model=SONNET_VERTEX, max_tokens=100, messages=[{"role": "user", "content": "hi"}]
    )
    with c.messages.stream(
        model=SONNET_VERTEX, max_tokens=100, messages=[{"role": "user", "content": "hi"}]
    ) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert final.content[0].type == "text" and text == final.content[0].text
    assert final.usage.output_tokens == message.usage.output_tokens
    counted = c.messages.count_tokens(model=SONNET_VERTEX, messages=[{"role": "user", "content": "hi"}])
    assert counted.input_tokens > 0
    # The fake saw only tokens it minted for the test service account, through google-auth's refresh.
    for seen in fake_vertex.requests:
        token = (seen.header("authorization") or "").removeprefix("Bearer ")
        assert fake_vertex.tokens.valid(token) and CLIENT_TOKEN not in json.dumps(seen.headers)
    assert fake_vertex.tokens.minted == 1  # one token, reused while valid
    events = vertex_sidecar.wait_events(3)
    assert [(e.provider, e.operation, e.stream) for e in events] == [
        ("vertex", "chat", False),
        ("vertex", "chat", True),
        ("vertex", "count_tokens", False),
    ]
    assert events[0].request_id == message.id and events[1].request_id == final.id  # the message id
    assert events[0].model == SONNET_VERTEX and events[0].model_canonical == "claude-sonnet-4-5"
    assert events[2].model == SONNET_VERTEX  # count-tokens names its model in the body
    assert events[1].cloud_region == "us-east5"


@pytest.mark.parametrize(
    ("region", "expected"),
    [("global", HAIKU_GLOBAL_USD), ("us-east5", HAIKU_REGIONAL_USD), ("eu", HAIKU_REGIONAL_USD)],
)
def test_each_call_is_priced_per_location(
    vertex_sidecar: RunningSidecar, region: str, expected: float
) -> None:
    c = client(vertex_sidecar, region, **{"x-fake-usage": json.dumps(USAGE)})
    c.messages.create(model=HAIKU_VERTEX, max_tokens=100, messages=[{"role": "user", "content": "hi"}])
    with c.messages.stream(
        model=HAIKU_VERTEX, max_tokens=100, messages=[{"role": "user", "content": "x"}]
    ) as s:
        s.get_final_message()
    events = vertex_sidecar.wait_events(2)
    assert [e.cloud_region for e in events] == [region, region]
    for event in events:
        assert abs((event.cost_usd or 0) - expected) < TOL, event.stream


def test_an_over_budget_call_is_refused_in_anthropics_shape(
    fake_vertex: FakeVertex, vertex_adc: Path, make_sidecar: Callable[..., RunningSidecar]
) -> None:
    sidecar = make_sidecar(
        "http://127.0.0.1:9", vertex_url=fake_vertex.url, policy_env={"SIDECAR_SESSION_MAX_USD": "0.02"}
    )
    c = client(sidecar, **{"x-fake-usage": json.dumps(USAGE), "x-session-id": "vertex-budget"})
    for _ in range(2):  # $0.01408 each: the second goes over
        c.messages.create(model=HAIKU_VERTEX, max_tokens=100, messages=[{"role": "user", "content": "hi"}])
    sent = len(fake_vertex.requests)
    with pytest.raises(RateLimitError) as failure:
        c.messages.create(model=HAIKU_VERTEX, max_tokens=100, messages=[{"role": "user", "content": "hi"}])
    assert failure.value.response.headers["x-should-retry"] == "false"
    body = failure.value.response.json()
    assert body["error"]["type"] == "budget_exceeded_error" and "session_usd" in body["error"]["message"]
    assert len(fake_vertex.requests) == sent


def test_the_sessions_api_names_the_providers_and_nothing_shows_a_credential(
    vertex_sidecar: RunningSidecar, fake_vertex: FakeVertex, vertex_adc: Path
) -> None:
    c = client(vertex_sidecar, **{"x-session-id": "mixed"})
    c.messages.create(model=SONNET_VERTEX, max_tokens=50, messages=[{"role": "user", "content": "hi"}])
    vertex_sidecar.wait_events(1)
    session = httpx.get(vertex_sidecar.url + "/sidecar/v1/sessions/mixed").json()
    assert [call["provider"] for call in session["calls"]] == ["vertex"]
    listed = httpx.get(vertex_sidecar.url + "/sidecar/v1/sessions").json()["sessions"]
    assert [s["session_id"] for s in listed] == ["mixed"]
    token = (fake_vertex.requests[-1].header("authorization") or "").removeprefix("Bearer ")
    private_key = json.loads(vertex_adc.read_text())["private_key"].splitlines()[1]
    outputs = [
        httpx.get(vertex_sidecar.url + "/metrics").text,
        json.dumps(session),
        json.dumps(listed),
    ]
    with sqlite3.connect(vertex_sidecar.sidecar.store.path) as conn:
        outputs.append(json.dumps(conn.execute("SELECT * FROM events").fetchall()))
    for secret in (token, CLIENT_TOKEN, private_key):
        assert all(secret not in text for text in outputs)


def test_unknown_vertex_paths_and_bad_locations_are_refused(vertex_sidecar: RunningSidecar) -> None:
    other = httpx.post(
        vertex_sidecar.url
        + "/vertex/v1/projects/p/locations/us/publishers/google/models/gemini:generateContent",
        json={},
    )
    assert other.status_code == 404 and other.json()["error"]["type"] == "not_found_error"
    bad = httpx.post(
        vertex_sidecar.url
        + "/vertex/v1/projects/p/locations/Evil.Host/publishers/anthropic/models/m:rawPredict",
        json={},
    )
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
