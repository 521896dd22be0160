"""Fixtures and helpers for the Bedrock and Vertex tests: the project's fakes, fixed test credentials."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore
import pytest
from botocore.config import Config

from sidecar.testing.fake_bedrock import FakeBedrock
from sidecar.testing.fake_sigv4 import FakeAwsCredentials
from sidecar.testing.fake_vertex import FakeVertex

SONNET_US = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
SONNET_GLOBAL = "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
SONNET_VERTEX = "claude-sonnet-4-5@20250929"
HAIKU_VERTEX = "claude-haiku-4-5@20251001"
BEDROCK_VERSION = "bedrock-2023-05-31"


def bedrock_body(text: str = "Hello", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "anthropic_version": BEDROCK_VERSION,
        "max_tokens": 256,
        "messages": [{"role": "user", "content": text}],
    }
    body.update(extra)
    return body


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeAwsCredentials:
    """The fixed test credentials in the environment, the only link of botocore's chain that answers
    (no shared files, no instance metadata: nothing may leave 127.0.0.1)."""
    creds = FakeAwsCredentials()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", creds.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", creds.secret_key)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_BEARER_TOKEN_BEDROCK", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_REGION", creds.region)
    return creds


@pytest.fixture
def fake_bedrock() -> Iterator[FakeBedrock]:
    with FakeBedrock() as upstream:
        yield upstream


@pytest.fixture
def fake_vertex() -> Iterator[FakeVertex]:
    with FakeVertex() as upstream:
        yield upstream


@pytest.fixture
def vertex_adc(fake_vertex: FakeVertex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A test service-account file whose token_uri is the fake, as Application Default Credentials."""
    path = fake_vertex.write_service_account(tmp_path / "service-account.json")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")  # never the real metadata server
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    return path


def boto3_client(endpoint: str, creds: FakeAwsCredentials | None = None) -> Any:
    """``bedrock-runtime`` at ``endpoint``: signed with ``creds``, else unsigned (a gateway holds them)."""
    config = Config(retries={"max_attempts": 1, "mode": "standard"})
    if creds is None:
        config = config.merge(Config(signature_version=botocore.UNSIGNED))
        return boto3.client("bedrock-runtime", endpoint_url=endpoint, region_name="us-east-1", config=config)
    return boto3.client(
        "bedrock-runtime",
        endpoint_url=endpoint,
        region_name=creds.region,
        aws_access_key_id=creds.access_key,
        aws_secret_access_key=creds.secret_key,
        config=config,
    )


def stream_events(response: Any) -> list[dict[str, Any]]:
    """The Anthropic events of a boto3 ``invoke_model_with_response_stream`` answer."""
    return [json.loads(event["chunk"]["bytes"]) for event in response["body"]]
