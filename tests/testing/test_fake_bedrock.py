"""The fake Bedrock, proven against the real clients before the sidecar stands between them."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from anthropic import AnthropicBedrock, APIStatusError
from botocore.credentials import Credentials
from botocore.eventstream import EventStreamBuffer
from botocore.exceptions import ClientError

from sidecar.providers.aws_auth import sign_request
from sidecar.testing.fake_bedrock import FakeBedrock, served_model
from sidecar.testing.fake_sigv4 import FakeAwsCredentials, verify_sigv4
from tests.cloud import (
    SONNET_US,
    bedrock_body,
    boto3_client,
    fake_bedrock,
    stream_events,
)

__all__ = ["fake_bedrock"]


def test_boto3_signed_json_and_stream(fake_bedrock: FakeBedrock) -> None:
    client = boto3_client(fake_bedrock.url, fake_bedrock.credentials)
    answer = client.invoke_model(modelId=SONNET_US, body=json.dumps(bedrock_body()))
    message = json.loads(answer["body"].read())
    assert message["type"] == "message" and message["id"].startswith("msg_bdrk_")
    assert message["model"] == "claude-sonnet-4-5-20250929"
    assert answer["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    streamed = client.invoke_model_with_response_stream(modelId=SONNET_US, body=json.dumps(bedrock_body()))
    events = stream_events(streamed)
    assert events[0]["type"] == "message_start" and events[-1]["type"] == "message_stop"
    assert "ping" not in [e["type"] for e in events]
    metrics = events[-1]["amazon-bedrock-invocationMetrics"]
    assert metrics["outputTokenCount"] == message["usage"]["output_tokens"]
    # boto3 percent-encodes the model id's colon.
    assert fake_bedrock.requests[0].path == "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke"


def test_anthropic_bedrock_client_with_raw_colon(fake_bedrock: FakeBedrock) -> None:
    c = fake_bedrock.credentials
    client = AnthropicBedrock(
        aws_access_key=c.access_key,
        aws_secret_key=c.secret_key,
        aws_region=c.region,
        base_url=fake_bedrock.url,
    )
    message = client.messages.create(
        model=SONNET_US, max_tokens=100, messages=[{"role": "user", "content": "hi"}]
    )
    with client.messages.stream(
        model=SONNET_US, max_tokens=100, messages=[{"role": "user", "content": "hi"}]
    ) as s:
        final = s.get_final_message()
    assert final.usage.output_tokens == message.usage.output_tokens > 0
    assert fake_bedrock.requests[-1].path.endswith("-v1:0/invoke-with-response-stream")


def test_frames_decode_with_botocore(fake_bedrock: FakeBedrock) -> None:
    client = boto3_client(fake_bedrock.url, fake_bedrock.credentials)
    streamed = client.invoke_model_with_response_stream(modelId=SONNET_US, body=json.dumps(bedrock_body()))
    raw = streamed["body"]._raw_stream.read()
    buffer = EventStreamBuffer()
    buffer.add_data(raw)
    messages = list(buffer)
    assert messages and all(m.headers[":event-type"] == "chunk" for m in messages)
    first = json.loads(base64.b64decode(json.loads(messages[0].payload)["bytes"]))
    assert first["type"] == "message_start"


@pytest.mark.parametrize(
    ("secret", "region", "expected"),
    [
        ("wrong-secret", "us-east-1", "InvalidSignatureException"),
        (None, "eu-west-1", "InvalidSignatureException"),
    ],
)
def test_bad_signatures_are_refused(
    fake_bedrock: FakeBedrock, secret: str | None, region: str, expected: str
) -> None:
    c = fake_bedrock.credentials
    creds = FakeAwsCredentials(secret_key=secret or c.secret_key, region=region)
    client = boto3_client(fake_bedrock.url, creds)
    with pytest.raises(ClientError) as failure:
        client.invoke_model(modelId=SONNET_US, body=json.dumps(bedrock_body()))
    assert failure.value.response["Error"]["Code"] == expected
    assert failure.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_an_unsigned_request_is_refused(fake_bedrock: FakeBedrock) -> None:
    with pytest.raises(ClientError) as failure:
        boto3_client(fake_bedrock.url).invoke_model(modelId=SONNET_US, body=json.dumps(bedrock_body()))
    assert failure.value.response["Error"]["Code"] == "MissingAuthenticationTokenException"


def test_the_verifier_checks_body_date_and_session_token() -> None:
    creds = FakeAwsCredentials(session_token="FQoGZXIvYXdzEFAKE")
    url, body = "http://127.0.0.1:1/model/x/invoke", b'{"a": 1}'
    headers = [(b"content-type", b"application/json"), (b"host", b"127.0.0.1:1")]
    keys = Credentials(creds.access_key, creds.secret_key, creds.session_token)
    signed = sign_request(keys, creds.region, "bedrock", "POST", url, headers, body)
    pairs = [(k.decode(), v.decode()) for k, v in signed]
    assert verify_sigv4(creds, "POST", url, pairs, body) is None
    assert verify_sigv4(creds, "POST", url, pairs, b'{"a": 2}') is not None
    assert verify_sigv4(creds, "POST", url + "?x=1", pairs, body) is not None
    stale = datetime.now(UTC) + timedelta(minutes=20)
    assert verify_sigv4(creds, "POST", url, pairs, body, now=stale) == "Signature expired"
    no_token = [(k, v) for k, v in pairs if k != "x-amz-security-token"]
    assert verify_sigv4(creds, "POST", url, no_token, body) is not None


def test_body_checks_and_errors_are_bedrocks(fake_bedrock: FakeBedrock) -> None:
    client = boto3_client(fake_bedrock.url, fake_bedrock.credentials)
    with pytest.raises(ClientError) as failure:
        client.invoke_model(modelId=SONNET_US, body=json.dumps(bedrock_body(model="claude")))
    assert failure.value.response["Error"]["Code"] == "ValidationException"
    assert "extraneous key [model]" in failure.value.response["Error"]["Message"]
    client.meta.events.register("before-send", _throttle)
    with pytest.raises(ClientError) as failure:
        client.invoke_model(modelId=SONNET_US, body=json.dumps(bedrock_body()))
    assert failure.value.response["Error"]["Code"] == "ThrottlingException"
    assert failure.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429


def _throttle(request: Any, **_: Any) -> None:
    request.headers["x-fake-scenario"] = "error-429"  # added after signing: not part of the signature


def test_count_tokens(fake_bedrock: FakeBedrock) -> None:
    client = boto3_client(fake_bedrock.url, fake_bedrock.credentials)
    inner = json.dumps(bedrock_body("Count these words please")).encode()
    answer = client.count_tokens(modelId=SONNET_US, input={"invokeModel": {"body": inner}})
    assert answer["inputTokens"] > 0


def test_exception_in_stream(fake_bedrock: FakeBedrock) -> None:
    c = fake_bedrock.credentials
    client = AnthropicBedrock(
        aws_access_key=c.access_key,
        aws_secret_key=c.secret_key,
        aws_region=c.region,
        base_url=fake_bedrock.url,
        default_headers={"x-fake-scenario": "exception-in-stream"},
        max_retries=0,
    )
    with pytest.raises(APIStatusError), client.messages.stream(
        model=SONNET_US, max_tokens=50, messages=[{"role": "user", "content": "x"}]
    ) as s:
        s.get_final_message()


@pytest.mark.parametrize(
    ("model_id", "served"),
    [
        (SONNET_US, "claude-sonnet-4-5-20250929"),
        ("anthropic.claude-haiku-4-5-20251001-v1:0", "claude-haiku-4-5-20251001"),
        ("arn:aws:bedrock:us-east-1:123456789012:inference-profile/eu.anthropic.claude-opus-4-5-20251101-v1:0",
         "claude-opus-4-5-20251101"),
    ],
)  # fmt: skip
def test_served_model(model_id: str, served: str) -> None:
    assert served_model(model_id) == served
