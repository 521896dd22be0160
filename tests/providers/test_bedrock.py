"""Bedrock addressing, credentials handling and answers (SPEC R-CP-1, R-CP-5)."""

from __future__ import annotations

import base64
import json

import orjson
import pytest
from botocore.credentials import Credentials

from sidecar.core.cloud import BEDROCK, INFERENCE_PROFILES, CloudRoute
from sidecar.errors import BudgetExceeded, InvalidRequest, NotFound
from sidecar.providers.aws_auth import AwsCredentials, SigV4Signer
from sidecar.providers.bedrock import (
    BedrockConfig,
    BedrockProvider,
    client_credential,
    cloud_region,
    parse_route,
)
from sidecar.sansio.bedrock_stream import BedrockStreamParser
from sidecar.testing.fake_sigv4 import FakeAwsCredentials, verify_sigv4

ORIGIN = "https://bedrock-runtime.us-east-1.amazonaws.com"
MODEL = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"


def route(path: str, method: str = "POST", query: str = "") -> CloudRoute:
    return parse_route(method, path, query, ORIGIN, "us-east-1")


@pytest.mark.parametrize("encoded", [MODEL, MODEL.replace(":", "%3A"), MODEL.replace(":", "%3a")])
def test_the_model_id_is_decoded_however_the_colon_came(encoded: str) -> None:
    r = route(f"/bedrock/model/{encoded}/invoke")
    assert r == CloudRoute(
        BEDROCK,
        "chat",
        MODEL,
        False,
        "us",
        ORIGIN,
        "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke",
    )


def test_stream_and_count_tokens_routes_and_query() -> None:
    streamed = route(f"/bedrock/model/{MODEL}/invoke-with-response-stream")
    assert (streamed.op, streamed.stream) == ("chat", True)
    assert streamed.target.endswith("/invoke-with-response-stream")
    counted = route(f"/bedrock/model/{MODEL}/count-tokens", query="a=1")
    assert (counted.op, counted.stream) == ("count_tokens", False)
    assert counted.target.endswith("/count-tokens?a=1")


def test_an_arn_with_an_encoded_slash_is_one_model_id() -> None:
    arn = "arn:aws:bedrock:eu-west-1:123456789012:inference-profile/eu.anthropic.claude-opus-4-5-v1:0"
    r = route("/bedrock/model/" + arn.replace("/", "%2F") + "/invoke")
    assert r.model == arn and r.cloud_region == "eu"
    assert r.target == "/model/" + arn.replace(":", "%3A").replace("/", "%2F") + "/invoke"


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (MODEL, ("us", False)),
        ("global.anthropic.claude-sonnet-4-5-20250929-v1:0", ("global", False)),
        ("apac.anthropic.claude-haiku-4-5-20251001-v1:0", ("apac", False)),
        ("jp.anthropic.claude-haiku-4-5-20251001-v1:0", ("jp", False)),
        ("anthropic.claude-haiku-4-5-20251001-v1:0", ("us-east-1", False)),
        ("arn:aws:bedrock:us-west-2::foundation-model/anthropic.claude-haiku-4-5-v1:0", ("us-west-2", False)),
        ("arn:aws:bedrock:us-west-2:123456789012:application-inference-profile/abc123", ("us-west-2", True)),
    ],
)  # fmt: skip
def test_where_a_model_id_is_served(model: str, expected: tuple[str, bool]) -> None:
    assert cloud_region(model, "us-east-1") == expected


def test_an_application_profile_leaves_the_model_to_the_answer() -> None:
    arn = "arn:aws:bedrock:us-west-2:123456789012:application-inference-profile/abc123"
    r = route("/bedrock/model/" + arn.replace("/", "%2F") + "/invoke")
    assert r.model is None and r.cloud_region == "us-west-2"


@pytest.mark.parametrize(
    ("method", "path", "error"),
    [
        ("POST", f"/bedrock/model/{MODEL}/converse", NotFound),
        ("GET", f"/bedrock/model/{MODEL}/invoke", NotFound),
        ("POST", f"/bedrock/model/{MODEL}/invoke/extra", NotFound),
        ("POST", "/bedrock/models", NotFound),
        ("POST", "/bedrock/model/%2E%2E/invoke", InvalidRequest),
        ("POST", "/bedrock/model//invoke", InvalidRequest),
        ("POST", "/bedrock/model/%FF/invoke", InvalidRequest),
        ("POST", "/bedrock/model/a%20b/invoke", InvalidRequest),
    ],
)
def test_anything_else_is_refused(method: str, path: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        route(path, method)


def provider(profiles: tuple[str, ...] = (), api_key: str | None = None) -> BedrockProvider:
    creds = FakeAwsCredentials()
    chain = AwsCredentials(lambda: Credentials(creds.access_key, creds.secret_key))
    signer = None if api_key else SigV4Signer(chain, "us-east-1")
    return BedrockProvider(BedrockConfig(ORIGIN, "us-east-1", api_key, profiles), signer)


def test_inference_profiles_are_refused_unless_configured() -> None:
    r = route("/bedrock/inference-profiles", "GET")
    assert r.op == INFERENCE_PROFILES
    with pytest.raises(NotFound, match="SIDECAR_BEDROCK_INFERENCE_PROFILES"):
        provider().local_answer(r, "type=SYSTEM_DEFINED")


def test_configured_inference_profiles_are_listed_and_looked_up() -> None:
    p = provider((MODEL,))
    listed = orjson.loads(p.local_answer(route("/bedrock/inference-profiles", "GET"), "type=SYSTEM_DEFINED"))
    (row,) = listed["inferenceProfileSummaries"]
    assert row["inferenceProfileId"] == MODEL and row["status"] == "ACTIVE"
    assert row["models"] == [
        {"modelArn": "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-sonnet-4-5-20250929-v1:0"}
    ]
    one = orjson.loads(
        p.local_answer(route(f"/bedrock/inference-profiles/{MODEL.replace(':', '%3A')}", "GET"), "")
    )
    assert one["inferenceProfileId"] == MODEL
    assert orjson.loads(p.local_answer(route("/bedrock/inference-profiles", "GET"), "type=APPLICATION")) == {
        "inferenceProfileSummaries": []
    }
    with pytest.raises(NotFound):
        p.local_answer(route("/bedrock/inference-profiles/eu.other", "GET"), "")


def test_count_tokens_body_is_unwrapped_for_inspection() -> None:
    inner = json.dumps({"messages": [{"role": "user", "content": "hi"}], "system": "S"}).encode()
    wrapped = json.dumps({"input": {"invokeModel": {"body": base64.b64encode(inner).decode()}}}).encode()
    p = provider()
    assert p.messages_body(route(f"/bedrock/model/{MODEL}/count-tokens"), wrapped) == inner
    assert p.messages_body(route(f"/bedrock/model/{MODEL}/count-tokens"), b"{}") is None
    assert p.messages_body(route(f"/bedrock/model/{MODEL}/invoke"), inner) == inner


def test_the_caller_is_identified_by_its_access_key_id_not_its_signature() -> None:
    auth = b"AWS4-HMAC-SHA256 Credential=AKIDCLIENT1/20261207/us-east-1/bedrock/aws4_request, Signature=ab"
    assert client_credential([(b"authorization", auth)]) == b"AKIDCLIENT1"
    assert client_credential([(b"authorization", b"Bearer tok")]) == b"tok"
    assert client_credential([(b"x-api-key", b"k")]) == b"k"
    assert client_credential([]) is None


async def test_the_client_credentials_are_replaced_by_a_signature_for_the_upstream() -> None:
    p = provider()
    r = route(f"/bedrock/model/{MODEL}/invoke")
    body = b'{"anthropic_version": "bedrock-2023-05-31"}'
    client = [
        (b"content-type", b"application/json"),
        (b"authorization", b"AWS4-HMAC-SHA256 Credential=AKIDCLIENT/x, Signature=client"),
        (b"x-amz-date", b"20200101T000000Z"),
        (b"x-amz-security-token", b"client-session"),
        (b"x-api-key", b"client-key"),
        (b"x-amzn-bedrock-trace", b"ENABLED"),
    ]
    out = await p.authorize(r, client, body)
    names = [n for n, _ in out]
    assert b"x-api-key" not in names and b"client-session" not in [v for _, v in out]
    assert names.count(b"authorization") == 1 and names.count(b"x-amz-date") == 1
    assert (b"x-amzn-bedrock-trace", b"ENABLED") in out
    pairs = [
        (n.decode(), v.decode()) for n, v in [*out, (b"host", b"bedrock-runtime.us-east-1.amazonaws.com")]
    ]
    assert verify_sigv4(FakeAwsCredentials(), "POST", ORIGIN + r.target, pairs, body) is None
    assert verify_sigv4(FakeAwsCredentials(), "POST", ORIGIN + r.target, pairs, body + b" ") is not None


async def test_an_api_key_is_sent_as_bearer_instead_of_signing() -> None:
    p = provider(api_key="bedrock-api-key-value")
    out = await p.authorize(
        route(f"/bedrock/model/{MODEL}/invoke"), [(b"authorization", b"Bearer client")], b"{}"
    )
    assert out == [(b"authorization", b"Bearer bedrock-api-key-value")]


def test_answers_errors_and_request_ids() -> None:
    p = provider()
    assert isinstance(p.stream_parser(b"application/vnd.amazon.eventstream"), BedrockStreamParser)
    assert p.stream_parser(b"application/json") is None
    headers = [(b"X-Amzn-RequestId", b"rid-1"), (b"x-amzn-ErrorType", b"ValidationException:http://internal")]
    assert p.request_id(headers, None) == "rid-1"
    assert p.error_type(headers) == "ValidationException"
    status, out, body = p.error_parts(BudgetExceeded("Session budget exceeded: session_usd limit $1.00", "x"))
    assert status == 429 and orjson.loads(body) == {
        "message": "Session budget exceeded: session_usd limit $1.00"
    }
    assert (b"x-amzn-errortype", b"ServiceQuotaExceededException") in out
    assert (b"x-should-retry", b"false") in out


def test_the_response_cache_keys_the_model_and_operation_as_signed() -> None:
    plain, encoded = (route(f"/bedrock/model/{m}/invoke") for m in (MODEL, MODEL.replace(":", "%3A")))
    key, render = BedrockProvider.cache_route(plain)
    assert key == b"/bedrock/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke" and not render
    assert BedrockProvider.cache_route(encoded) == (key, False)
    streamed = BedrockProvider.cache_route(route(f"/bedrock/model/{MODEL}/invoke-with-response-stream"))
    assert streamed[0] != key  # an event stream is not rendered from JSON: its own entries
