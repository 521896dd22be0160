"""The response cache on the cloud routes (SPEC R-RC-1, §18): real clients (boto3 ``bedrock-runtime``
unsigned and signed, ``AnthropicBedrock``, ``AnthropicVertex``) through the sidecar to the project's fake
Bedrock and fake Vertex, which count the calls that reach them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from anthropic import AnthropicBedrock, AnthropicVertex
from anthropic.types import Message

from sidecar.server.inprocess import RunningSidecar
from sidecar.testing.fake_bedrock import FakeBedrock
from sidecar.testing.fake_sigv4 import FakeAwsCredentials
from sidecar.testing.fake_vertex import FakeVertex
from tests.cloud import (
    HAIKU_VERTEX,
    SONNET_GLOBAL,
    SONNET_US,
    aws_env,
    bedrock_body,
    boto3_client,
    fake_bedrock,
    fake_vertex,
    stream_events,
    vertex_adc,
)

__all__ = ["aws_env", "fake_bedrock", "fake_vertex", "vertex_adc"]
TOL = 1e-9
USAGE = {
    "input_tokens": 1000,
    "output_tokens": 2000,
    "cache_read_input_tokens": 3000,
    "cache_creation": {"ephemeral_5m_input_tokens": 400, "ephemeral_1h_input_tokens": 500},
}
# Per million tokens, by hand. Sonnet 4.5: 1000*3 + 2000*15 + 3000*0.30 + 400*3.75 + 500*6 = 38,400;
# Haiku 4.5: 1000*1 + 2000*5 + 3000*0.10 + 400*1.25 + 500*2 = 12,800. Regional endpoints: +10 %.
SONNET_US_USD = 0.0384 * 1.1
HAIKU_REGIONAL_USD = 0.0128 * 1.1


@pytest.fixture
def bedrock_cached(
    aws_env: FakeAwsCredentials, fake_bedrock: FakeBedrock, make_sidecar: Callable[..., RunningSidecar]
) -> RunningSidecar:
    return make_sidecar(
        "http://127.0.0.1:9", bedrock_url=fake_bedrock.url, bedrock_region="us-east-1", response_cache="on"
    )


@pytest.fixture
def vertex_cached(
    fake_vertex: FakeVertex, vertex_adc: Path, make_sidecar: Callable[..., RunningSidecar]
) -> RunningSidecar:
    return make_sidecar("http://127.0.0.1:9", vertex_url=fake_vertex.url, response_cache="on")


def calls(fake: FakeBedrock | FakeVertex, suffix: str) -> int:
    return sum(1 for r in fake.requests if r.path.endswith(suffix))


def cache_header(answer: dict[str, Any]) -> str | None:
    value = answer["ResponseMetadata"]["HTTPHeaders"].get("x-sidecar-cache")
    return value if isinstance(value, str) else None


def with_usage(client: Any) -> Any:
    def add(request: Any, **_: Any) -> None:
        request.headers["x-fake-usage"] = json.dumps(USAGE)

    client.meta.events.register("before-send", add)
    return client


def test_boto3_json_and_stream_hits_save_what_the_first_call_cost(
    bedrock_cached: RunningSidecar, fake_bedrock: FakeBedrock
) -> None:
    client = with_usage(boto3_client(bedrock_cached.url + "/bedrock"))
    body = json.dumps(bedrock_body("Tell me about tides"))
    first = client.invoke_model(modelId=SONNET_US, body=body)
    second = client.invoke_model(modelId=SONNET_US, body=body)
    assert (cache_header(first), cache_header(second)) == ("miss", "hit")
    assert json.loads(second["body"].read()) == json.loads(first["body"].read())
    assert calls(fake_bedrock, "/invoke") == 1
    live = client.invoke_model_with_response_stream(modelId=SONNET_US, body=body)
    live_events = stream_events(live)
    replayed = client.invoke_model_with_response_stream(modelId=SONNET_US, body=body)
    assert (cache_header(live), cache_header(replayed)) == ("miss", "hit")
    assert stream_events(replayed) == live_events  # the stored frames, metrics and message id included
    assert calls(fake_bedrock, "/invoke-with-response-stream") == 1
    miss, hit, stream_miss, stream_hit = bedrock_cached.wait_events(4)
    assert abs((miss.cost_usd or 0) - SONNET_US_USD) < TOL  # the us. profile's premium
    assert abs((stream_miss.cost_usd or 0) - SONNET_US_USD) < TOL
    for event in (hit, stream_hit):
        assert (event.outcome, event.provider, event.cost_usd) == ("cache_hit", "bedrock", 0)
        assert event.usage.output_tokens == 0  # no model call
        assert abs((event.response_cache_savings_usd or 0) - SONNET_US_USD) < TOL
    assert (hit.stream, stream_hit.stream) == (False, True)


def test_a_stored_event_stream_is_replayed_byte_for_byte(
    bedrock_cached: RunningSidecar, fake_bedrock: FakeBedrock
) -> None:
    url = bedrock_cached.url + f"/bedrock/model/{SONNET_US}/invoke-with-response-stream"
    first = httpx.post(url, json=bedrock_body("Stream me"))
    # The model id spelled the other way (`:` percent-encoded) is the same model: the same entry.
    second = httpx.post(url.replace("v1:0", "v1%3A0"), json=bedrock_body("Stream me"))
    assert first.headers["x-sidecar-cache"] == "miss" and second.headers["x-sidecar-cache"] == "hit"
    assert second.content == first.content
    assert second.headers["content-type"] == first.headers["content-type"]
    assert calls(fake_bedrock, "/invoke-with-response-stream") == 1
    # The JSON route keeps its own entries: an event stream is not rendered as JSON (nor back).
    as_json = httpx.post(url.removesuffix("-with-response-stream"), json=bedrock_body("Stream me"))
    assert as_json.headers["x-sidecar-cache"] == "miss" and as_json.json()["type"] == "message"
    # Another model is another route.
    other = bedrock_cached.url + f"/bedrock/model/{SONNET_GLOBAL}/invoke-with-response-stream"
    assert httpx.post(other, json=bedrock_body("Stream me")).headers["x-sidecar-cache"] == "miss"
    assert len(fake_bedrock.requests) == 3


def test_bedrock_tenants_are_the_signers_access_keys_and_bearer_tokens(
    bedrock_cached: RunningSidecar, fake_bedrock: FakeBedrock
) -> None:
    gateway = bedrock_cached.url + "/bedrock"
    alice = FakeAwsCredentials(access_key="AKIDALICEEXAMPLE0001", secret_key="alice-secret")
    bob = FakeAwsCredentials(access_key="AKIDBOBEXAMPLE000002", secret_key="bob-secret")
    body = json.dumps(bedrock_body("Whose answer is it?"))
    assert cache_header(boto3_client(gateway, alice).invoke_model(modelId=SONNET_US, body=body)) == "miss"
    assert cache_header(boto3_client(gateway, bob).invoke_model(modelId=SONNET_US, body=body)) == "miss"
    # A new signature (another time, another client) from the same access key: the same tenant.
    assert cache_header(boto3_client(gateway, alice).invoke_model(modelId=SONNET_US, body=body)) == "hit"
    unsigned = boto3_client(gateway)  # no credential: a tenant of its own
    assert cache_header(unsigned.invoke_model(modelId=SONNET_US, body=body)) == "miss"
    assert calls(fake_bedrock, "/invoke") == 3
    ask = {"model": SONNET_US, "max_tokens": 64, "messages": [{"role": "user", "content": "Whose?"}]}
    team_a = AnthropicBedrock(api_key="team-a-key", aws_region="us-east-1", base_url=gateway)
    team_b = AnthropicBedrock(api_key="team-b-key", aws_region="us-east-1", base_url=gateway)
    first = team_a.messages.with_raw_response.create(**ask)
    assert first.headers["x-sidecar-cache"] == "miss"
    assert team_b.messages.with_raw_response.create(**ask).headers["x-sidecar-cache"] == "miss"
    again = team_a.messages.with_raw_response.create(**ask)
    assert again.headers["x-sidecar-cache"] == "hit" and again.parse().id == first.parse().id
    assert calls(fake_bedrock, "/invoke") == 5


def test_count_tokens_is_never_cached(bedrock_cached: RunningSidecar, fake_bedrock: FakeBedrock) -> None:
    client = boto3_client(bedrock_cached.url + "/bedrock")
    inner = json.dumps(bedrock_body("Count me")).encode()
    for _ in range(2):
        answer = client.count_tokens(modelId=SONNET_US, input={"invokeModel": {"body": inner}})
        assert answer["inputTokens"] > 0 and cache_header(answer) is None
    assert calls(fake_bedrock, "/count-tokens") == 2


def vertex(
    sidecar: RunningSidecar, token: str = "vertex-caller-a", region: str = "us-east5"
) -> AnthropicVertex:
    return AnthropicVertex(
        region=region,
        project_id="fake-project",
        access_token=token,
        base_url=sidecar.url + "/vertex/v1",
        default_headers={"x-fake-usage": json.dumps(USAGE)},
        max_retries=0,
    )


ASK: dict[str, Any] = {
    "model": HAIKU_VERTEX,
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "Summarise the refund policy."}],
}


def test_vertex_json_then_stream_hits_with_the_regional_premium_as_savings(
    vertex_cached: RunningSidecar, fake_vertex: FakeVertex
) -> None:
    client = vertex(vertex_cached)
    first = client.messages.with_raw_response.create(**ASK)
    second = client.messages.with_raw_response.create(**ASK)
    assert (first.headers["x-sidecar-cache"], second.headers["x-sidecar-cache"]) == ("miss", "hit")
    message = first.parse()
    assert second.parse() == message
    # :streamRawPredict shares :rawPredict's entry: the stored message, rendered as Anthropic SSE.
    with client.messages.stream(**ASK) as stream:
        assert stream.response.headers["x-sidecar-cache"] == "hit"
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert Message.model_validate(final.model_dump()) == message  # a stream helper's blocks add fields
    assert text == message.content[0].text  # type: ignore[union-attr]
    assert calls(fake_vertex, ":rawPredict") == 1 and calls(fake_vertex, ":streamRawPredict") == 0
    miss, hit, stream_hit = vertex_cached.wait_events(3)
    assert abs((miss.cost_usd or 0) - HAIKU_REGIONAL_USD) < TOL  # us-east5: a regional endpoint
    for event in (hit, stream_hit):
        assert (event.outcome, event.provider, event.cost_usd) == ("cache_hit", "vertex", 0)
        assert abs((event.response_cache_savings_usd or 0) - HAIKU_REGIONAL_USD) < TOL
    assert stream_hit.stream


def test_vertex_tenants_locations_and_count_tokens(
    vertex_cached: RunningSidecar, fake_vertex: FakeVertex
) -> None:
    with vertex(vertex_cached).messages.stream(**ASK) as stream:
        assert stream.response.headers["x-sidecar-cache"] == "miss"
        streamed = stream.get_final_message()
    raw = vertex(vertex_cached).messages.with_raw_response.create(**ASK)  # rendered from the stored stream
    assert raw.headers["x-sidecar-cache"] == "hit" and raw.parse().id == streamed.id
    other = vertex(vertex_cached, token="vertex-caller-b").messages.with_raw_response.create(**ASK)
    assert other.headers["x-sidecar-cache"] == "miss"
    elsewhere = vertex(vertex_cached, region="europe-west1").messages.with_raw_response.create(**ASK)
    assert elsewhere.headers["x-sidecar-cache"] == "miss"  # another location is another route
    for _ in range(2):
        counted = vertex(vertex_cached).messages.with_raw_response.count_tokens(
            model=HAIKU_VERTEX, messages=ASK["messages"]
        )
        assert "x-sidecar-cache" not in counted.headers and counted.parse().input_tokens > 0
    assert calls(fake_vertex, ":streamRawPredict") == 1 and calls(fake_vertex, "count-tokens:rawPredict") == 2
    assert calls(fake_vertex, ":rawPredict") - 2 == 2  # the two misses (count-tokens ends the same way)
