"""Bedrock through the sidecar (SPEC R-CP-1, R-CP-3..5): real clients, the project's fake Bedrock.

Each client is proven against the fake directly in tests/testing/test_fake_bedrock.py; here it talks to
the sidecar, which signs every call again for the fake with the chain's (fixed test) credentials.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from anthropic import AnthropicBedrock
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from sidecar.providers.aws_auth import sign_request
from sidecar.server.inprocess import RunningSidecar
from sidecar.testing.fake_bedrock import FakeBedrock
from sidecar.testing.fake_sigv4 import FakeAwsCredentials, verify_sigv4
from tests.cloud import (
    SONNET_GLOBAL,
    SONNET_US,
    aws_env,
    bedrock_body,
    boto3_client,
    fake_bedrock,
    stream_events,
)

__all__ = ["aws_env", "fake_bedrock"]
TOL = 1e-6
# 1000 uncached in, 2000 out, 3000 cache read, 400 + 500 written (5m / 1h).
USAGE = {
    "input_tokens": 1000,
    "output_tokens": 2000,
    "cache_read_input_tokens": 3000,
    "cache_creation": {"ephemeral_5m_input_tokens": 400, "ephemeral_1h_input_tokens": 500},
}
# Sonnet 4.5 by hand, per million: 1000*3 + 2000*15 + 3000*0.30 + 400*3.75 + 500*6 = 38,400.
SONNET_GLOBAL_USD = 0.0384
SONNET_REGIONAL_USD = 0.0384 * 1.1
CLIENT_TOKEN = "client-bearer-token-never-forwarded"


@pytest.fixture
def bedrock_sidecar(
    aws_env: FakeAwsCredentials, fake_bedrock: FakeBedrock, make_sidecar: Callable[..., RunningSidecar]
) -> RunningSidecar:
    return make_sidecar("http://127.0.0.1:9", bedrock_url=fake_bedrock.url, bedrock_region="us-east-1")


def gateway(sidecar: RunningSidecar) -> str:
    return sidecar.url + "/bedrock"


def signed_direct(fake: FakeBedrock, path: str, body: bytes) -> httpx.Response:
    """The same request straight to the fake, signed as the sidecar would sign it."""
    c = fake.credentials
    host = fake.url.removeprefix("http://")
    headers = [(b"content-type", b"application/json"), (b"host", host.encode())]
    keys = Credentials(c.access_key, c.secret_key)
    signed = sign_request(keys, c.region, "bedrock", "POST", fake.url + path, headers, body)
    return httpx.post(fake.url + path, content=body, headers=[(k, v) for k, v in signed if k != b"host"])


@pytest.mark.parametrize("op", ["invoke", "invoke-with-response-stream"])
def test_answers_are_byte_for_byte_the_upstreams(
    bedrock_sidecar: RunningSidecar, fake_bedrock: FakeBedrock, op: str
) -> None:
    body = json.dumps(bedrock_body("Tell me about tides")).encode()
    path = f"/model/{SONNET_US.replace(':', '%3A')}/{op}"
    direct = signed_direct(fake_bedrock, path, body)
    fake_bedrock.reset()  # the same cache state for the second call
    through = httpx.post(
        gateway(bedrock_sidecar) + path, content=body, headers={"content-type": "application/json"}
    )
    assert direct.status_code == through.status_code == 200
    assert through.content == direct.content
    assert through.headers["content-type"] == direct.headers["content-type"]
    assert through.headers["x-amzn-requestid"]


def test_boto3_unsigned_json_and_stream(bedrock_sidecar: RunningSidecar, fake_bedrock: FakeBedrock) -> None:
    client = boto3_client(gateway(bedrock_sidecar))  # no credentials: the gateway holds them
    answer = client.invoke_model(modelId=SONNET_US, body=json.dumps(bedrock_body()))
    message = json.loads(answer["body"].read())
    assert message["type"] == "message" and message["usage"]["output_tokens"] > 0
    streamed = client.invoke_model_with_response_stream(modelId=SONNET_US, body=json.dumps(bedrock_body()))
    events = stream_events(streamed)
    assert events[0]["message"]["id"] == message["id"]
    assert (
        events[-1]["amazon-bedrock-invocationMetrics"]["outputTokenCount"]
        == message["usage"]["output_tokens"]
    )
    # The fake accepted both: each carried a signature the sidecar made with the chain's credentials.
    for seen in fake_bedrock.requests:
        auth = seen.header("authorization") or ""
        assert auth.startswith("AWS4-HMAC-SHA256 Credential=" + fake_bedrock.credentials.access_key + "/")
        pairs = [(k, v) for k, v in seen.headers]
        url = fake_bedrock.url + seen.path
        assert verify_sigv4(fake_bedrock.credentials, "POST", url, pairs, seen.body) is None
    events_seen = bedrock_sidecar.wait_events(2)
    assert [(e.provider, e.operation, e.stream, e.status) for e in events_seen] == [
        ("bedrock", "chat", False, 200),
        ("bedrock", "chat", True, 200),
    ]
    assert all(e.model == SONNET_US and e.model_canonical == "claude-sonnet-4-5" for e in events_seen)
    assert all(e.request_id and len(e.request_id) == 36 for e in events_seen)  # x-amzn-requestid
    assert events_seen[1].usage.output_tokens == message["usage"]["output_tokens"]
    assert events_seen[1].ttft_s is not None


def test_anthropic_bedrock_through_the_gateway(
    bedrock_sidecar: RunningSidecar, fake_bedrock: FakeBedrock
) -> None:
    client = AnthropicBedrock(api_key=CLIENT_TOKEN, aws_region="us-east-1", base_url=gateway(bedrock_sidecar))
    message = client.messages.create(
        model=SONNET_US, max_tokens=100, messages=[{"role": "user", "content": "hi"}]
    )
    with client.messages.stream(
        model=SONNET_US, max_tokens=100, messages=[{"role": "user", "content": "hi"}]
    ) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert final.content[0].type == "text" and text == final.content[0].text
    assert final.usage.output_tokens == message.usage.output_tokens
    for seen in fake_bedrock.requests:
        assert CLIENT_TOKEN not in json.dumps(seen.headers)
        assert seen.path.endswith(("-v1%3A0/invoke", "-v1%3A0/invoke-with-response-stream"))


def test_each_call_is_priced_with_the_regional_premium(
    bedrock_sidecar: RunningSidecar,
) -> None:
    client = boto3_client(gateway(bedrock_sidecar))
    usage = json.dumps(USAGE)

    def add_usage(request: Any, **_: Any) -> None:
        request.headers["x-fake-usage"] = usage

    client.meta.events.register("before-send", add_usage)
    client.invoke_model(modelId=SONNET_US, body=json.dumps(bedrock_body("a")))
    stream = client.invoke_model_with_response_stream(modelId=SONNET_US, body=json.dumps(bedrock_body("b")))
    stream_events(stream)
    client.invoke_model(modelId=SONNET_GLOBAL, body=json.dumps(bedrock_body("c")))
    first, second, third = bedrock_sidecar.wait_events(3)
    assert (first.cloud_region, second.cloud_region, third.cloud_region) == ("us", "us", "global")
    assert abs((first.cost_usd or 0) - SONNET_REGIONAL_USD) < TOL
    assert abs((second.cost_usd or 0) - SONNET_REGIONAL_USD) < TOL
    assert abs((third.cost_usd or 0) - SONNET_GLOBAL_USD) < TOL
    assert second.usage.cache_creation_1h == 500


def test_an_over_budget_call_is_refused_before_it_leaves(
    aws_env: FakeAwsCredentials, fake_bedrock: FakeBedrock, make_sidecar: Callable[..., RunningSidecar]
) -> None:
    sidecar = make_sidecar(
        "http://127.0.0.1:9",
        bedrock_url=fake_bedrock.url,
        bedrock_region="us-east-1",
        policy_env={"SIDECAR_SESSION_MAX_USD": "0.05"},
    )
    client = boto3_client(gateway(sidecar))

    def tag(request: Any, **_: Any) -> None:
        request.headers["x-session-id"] = "bedrock-budget"
        request.headers["x-fake-usage"] = json.dumps(USAGE)

    client.meta.events.register("before-send", tag)
    client.invoke_model(modelId=SONNET_US, body=json.dumps(bedrock_body("one")))  # $0.04224
    client.invoke_model(modelId=SONNET_US, body=json.dumps(bedrock_body("two")))  # $0.08448: over
    sent = len(fake_bedrock.requests)
    with pytest.raises(ClientError) as failure:
        client.invoke_model(modelId=SONNET_US, body=json.dumps(bedrock_body("three")))
    error = failure.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert error["Error"]["Code"] == "ServiceQuotaExceededException"
    assert "session_usd limit $0.05" in error["Error"]["Message"]
    assert error["ResponseMetadata"]["HTTPHeaders"]["x-should-retry"] == "false"
    assert len(fake_bedrock.requests) == sent  # refused before it left
    stream_refused = httpx.post(
        gateway(sidecar) + f"/model/{SONNET_US}/invoke-with-response-stream",
        json=bedrock_body("four"),
        headers={"x-session-id": "bedrock-budget"},
    )
    assert stream_refused.status_code == 429
    assert stream_refused.headers["x-amzn-errortype"] == "ServiceQuotaExceededException"
    assert "session_usd" in stream_refused.json()["message"]


def test_an_exception_frame_is_recorded_as_the_calls_error(
    bedrock_sidecar: RunningSidecar, fake_bedrock: FakeBedrock
) -> None:
    answer = httpx.post(
        gateway(bedrock_sidecar) + f"/model/{SONNET_US}/invoke-with-response-stream",
        json=bedrock_body(),
        headers={"x-fake-scenario": "exception-in-stream"},
    )
    assert answer.status_code == 200 and b"modelStreamErrorException" in answer.content
    (event,) = bedrock_sidecar.wait_events(1)
    assert (event.outcome, event.error_type) == ("upstream_error", "modelStreamErrorException")


def test_upstream_errors_are_relayed_and_named(bedrock_sidecar: RunningSidecar) -> None:
    answer = httpx.post(
        gateway(bedrock_sidecar) + f"/model/{SONNET_US}/invoke",
        json=bedrock_body(model="claude"),  # Bedrock refuses a model in the body
    )
    assert answer.status_code == 400 and "extraneous key [model]" in answer.json()["message"]
    (event,) = bedrock_sidecar.wait_events(1)
    assert event.error_type == "ValidationException"


def test_count_tokens_is_recorded_like_first_party(bedrock_sidecar: RunningSidecar) -> None:
    client = boto3_client(gateway(bedrock_sidecar))
    inner = json.dumps(bedrock_body("Count me", system="You count.")).encode()

    def tag(request: Any, **_: Any) -> None:
        request.headers["x-session-id"] = "counting"

    client.meta.events.register("before-send", tag)
    answer = client.count_tokens(modelId=SONNET_US, input={"invokeModel": {"body": inner}})
    assert answer["inputTokens"] > 0
    (event,) = bedrock_sidecar.wait_events(1)
    assert (event.operation, event.provider, event.session_id, event.cost_usd) == (
        "count_tokens",
        "bedrock",
        "counting",
        None,
    )


def test_inference_profiles_are_refused_in_bedrocks_shape(bedrock_sidecar: RunningSidecar) -> None:
    answer = httpx.get(gateway(bedrock_sidecar) + "/inference-profiles?type=SYSTEM_DEFINED")
    assert answer.status_code == 404
    assert answer.headers["x-amzn-errortype"] == "ResourceNotFoundException"
    assert "SIDECAR_BEDROCK_INFERENCE_PROFILES" in answer.json()["message"]
    unknown = httpx.post(gateway(bedrock_sidecar) + f"/model/{SONNET_US}/converse", json={})
    assert unknown.status_code == 404 and unknown.headers["x-amzn-errortype"] == "ResourceNotFoundException"


def test_configured_inference_profiles_are_answered(
    aws_env: FakeAwsCredentials, fake_bedrock: FakeBedrock, make_sidecar: Callable[..., RunningSidecar]
) -> None:
    sidecar = make_sidecar(
        "http://127.0.0.1:9",
        bedrock_url=fake_bedrock.url,
        bedrock_region="us-east-1",
        bedrock_inference_profiles=(SONNET_US,),
    )
    listed = httpx.get(gateway(sidecar) + "/inference-profiles?type=SYSTEM_DEFINED")
    assert listed.status_code == 200
    assert [p["inferenceProfileId"] for p in listed.json()["inferenceProfileSummaries"]] == [SONNET_US]
    one = httpx.get(gateway(sidecar) + "/inference-profiles/" + SONNET_US.replace(":", "%3A"))
    assert one.status_code == 200 and one.json()["status"] == "ACTIVE"
    assert fake_bedrock.requests == []  # answered by the sidecar


def test_without_credentials_the_call_fails_cleanly_and_says_why(
    fake_bedrock: FakeBedrock,
    make_sidecar: Callable[..., RunningSidecar],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    sidecar = make_sidecar("http://127.0.0.1:9", bedrock_url=fake_bedrock.url, bedrock_region="us-east-1")
    answer = httpx.post(gateway(sidecar) + f"/model/{SONNET_US}/invoke", json=bedrock_body())
    assert answer.status_code == 503
    assert answer.headers["x-amzn-errortype"] == "ServiceUnavailableException"
    assert "No AWS credentials" in answer.json()["message"]
    assert fake_bedrock.requests == []


def test_a_bedrock_api_key_replaces_signing(
    make_sidecar: Callable[..., RunningSidecar],
) -> None:
    with FakeBedrock(api_key="bedrock-api-key-0001") as fake:
        sidecar = make_sidecar(
            "http://127.0.0.1:9", bedrock_url=fake.url, bedrock_api_key="bedrock-api-key-0001"
        )
        client = boto3_client(gateway(sidecar))
        assert json.loads(
            client.invoke_model(modelId=SONNET_US, body=json.dumps(bedrock_body()))["body"].read()
        )
        assert fake.requests[0].header("authorization") == "Bearer bedrock-api-key-0001"


def test_bedrock_is_off_without_a_region_or_url(fake: Any, sidecar: RunningSidecar) -> None:
    answer = httpx.post(sidecar.url + f"/bedrock/model/{SONNET_US}/invoke", json=bedrock_body())
    assert answer.status_code == 404
    assert answer.headers["x-amzn-errortype"] == "ResourceNotFoundException"
    assert "SIDECAR_BEDROCK_REGION" in answer.json()["message"]


TOOLS = [
    {"name": "lookup", "description": "Look it up", "input_schema": {"type": "object", "properties": {}}}
]


def test_tool_latency_and_sessions_work_as_on_the_first_party_path(bedrock_sidecar: RunningSidecar) -> None:
    url = gateway(bedrock_sidecar) + f"/model/{SONNET_US}/invoke"
    headers = {"x-claude-code-session-id": "cc-session-1"}  # Claude Code's own session header
    first = httpx.post(url, json=bedrock_body("find it", tools=TOOLS), headers=headers).json()
    tool = next(block for block in first["content"] if block["type"] == "tool_use")
    history = [
        {"role": "user", "content": "find it"},
        {"role": "assistant", "content": first["content"]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool["id"], "content": "42"}]},
    ]
    body = {**bedrock_body(tools=TOOLS), "messages": history}
    assert httpx.post(url, json=body, headers=headers).status_code == 200
    one, two = bedrock_sidecar.wait_events(2)
    assert one.session_id == two.session_id == "cc-session-1" and one.session_source == "harness_header"
    assert one.tool_uses == ("lookup",)
    (result,) = two.tool_results
    assert result.tool_use_id == tool["id"] and result.name == "lookup" and result.latency_s >= 0


def test_a_prompt_cache_marker_is_added_before_signing(
    bedrock_sidecar: RunningSidecar, fake_bedrock: FakeBedrock
) -> None:
    system = "You follow the refund policy to the letter. " * 400  # well above Sonnet 4.5's minimum
    client = boto3_client(gateway(bedrock_sidecar))
    answer = client.invoke_model(modelId=SONNET_US, body=json.dumps(bedrock_body("hi", system=system)))
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 200  # the fake checked the signature of the edit
    sent = fake_bedrock.requests[-1].json()
    assert sent["system"][-1]["cache_control"] == {"type": "ephemeral"}
    assert "model" not in sent and sent["anthropic_version"] == "bedrock-2023-05-31"
    (event,) = bedrock_sidecar.wait_events(1)
    assert event.cache_breakpoint_injected and event.usage.cache_creation_input_tokens > 0


def test_metrics_and_outputs_name_the_provider_and_show_no_credential(
    bedrock_sidecar: RunningSidecar, fake_bedrock: FakeBedrock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    client = AnthropicBedrock(api_key=CLIENT_TOKEN, aws_region="us-east-1", base_url=gateway(bedrock_sidecar))
    client.messages.create(model=SONNET_US, max_tokens=50, messages=[{"role": "user", "content": "hi"}],
                           extra_headers={"x-session-id": "leak-check"})  # fmt: skip
    (event,) = bedrock_sidecar.wait_events(1)
    metrics = httpx.get(bedrock_sidecar.url + "/metrics").text
    assert 'provider="bedrock"' in metrics and 'gen_ai_provider_name="aws.bedrock"' in metrics
    session = httpx.get(bedrock_sidecar.url + "/sidecar/v1/sessions/leak-check").json()
    assert [call["provider"] for call in session["calls"]] == ["bedrock"]
    signature = (fake_bedrock.requests[-1].header("authorization") or "").rsplit("Signature=", 1)[-1]
    secrets = (
        CLIENT_TOKEN,
        fake_bedrock.credentials.secret_key,
        fake_bedrock.credentials.access_key,
        signature,
    )
    stored = json.dumps([list(map(str, row)) for row in _rows(bedrock_sidecar)])
    assert "/bedrock/model/" in stored and "POST /bedrock/model/" in caplog.text  # outputs were captured
    for text in (metrics, json.dumps(session), caplog.text, stored, repr(event)):
        for secret in secrets:
            assert secret not in text


def _rows(sidecar: RunningSidecar) -> list[tuple[object, ...]]:
    import sqlite3

    with sqlite3.connect(sidecar.sidecar.store.path) as conn:
        return conn.execute("SELECT * FROM events").fetchall()


def test_client_tokens_guard_the_cloud_routes(
    aws_env: FakeAwsCredentials, fake_bedrock: FakeBedrock, make_sidecar: Callable[..., RunningSidecar]
) -> None:
    sidecar = make_sidecar(
        "http://127.0.0.1:9",
        bedrock_url=fake_bedrock.url,
        bedrock_region="us-east-1",
        client_tokens=("team-a",),
    )
    url = gateway(sidecar) + f"/model/{SONNET_US}/invoke"
    refused = httpx.post(url, json=bedrock_body())
    assert refused.status_code == 401 and refused.headers["x-amzn-errortype"] == "AccessDeniedException"
    allowed = httpx.post(url, json=bedrock_body(), headers={"authorization": "Bearer team-a"})
    assert allowed.status_code == 200
    assert "team-a" not in json.dumps(fake_bedrock.requests[-1].headers)


def test_api_mode_never_asks_bedrock_for_the_apis_cache_diagnosis(
    aws_env: FakeAwsCredentials, fake_bedrock: FakeBedrock, make_sidecar: Callable[..., RunningSidecar]
) -> None:
    cloud = {"bedrock_url": fake_bedrock.url, "bedrock_region": "us-east-1"}
    sidecar = make_sidecar("http://127.0.0.1:9", **cloud, cache_diagnostics="api")
    body = json.dumps(bedrock_body("Tell me about tides")).encode()
    path = f"/model/{SONNET_US.replace(':', '%3A')}/invoke"
    headers = {"content-type": "application/json", "x-session-id": "tides"}
    for _ in range(2):
        assert httpx.post(gateway(sidecar) + path, content=body, headers=headers).status_code == 200
    for seen in fake_bedrock.requests:  # the client's bytes, no beta header: diagnostics are the API's only
        assert seen.body == body and seen.header("anthropic-beta") is None
    _, second = sidecar.wait_events(2, session_id="tides")
    assert second.cache_outcome is not None  # the sidecar's own diagnosis still runs
