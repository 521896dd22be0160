"""The fake Vertex AI and its token endpoint, proven against google-auth and AnthropicVertex directly."""

from __future__ import annotations

from pathlib import Path

import google.auth
import httpx
import pytest
from anthropic import AnthropicVertex, AuthenticationError
from google.auth.transport.requests import Request

from sidecar.testing.fake_vertex import FakeVertex
from tests.cloud import SONNET_VERTEX, fake_vertex, vertex_adc

__all__ = ["fake_vertex", "vertex_adc"]


def adc_token() -> str:
    creds, project = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    assert project == "fake-project"
    creds.refresh(Request())  # google-auth's real refresh: a signed JWT posted to the file's token_uri
    token: str = creds.token
    return token


def test_google_auth_gets_a_token_from_the_fake(fake_vertex: FakeVertex, vertex_adc: Path) -> None:
    token = adc_token()
    assert token.startswith("ya29.fake-") and fake_vertex.tokens.valid(token)
    assert fake_vertex.tokens.minted == 1


def test_anthropic_vertex_json_stream_and_count_tokens(fake_vertex: FakeVertex, vertex_adc: Path) -> None:
    client = AnthropicVertex(
        region="us-east5",
        project_id="fake-project",
        access_token=adc_token(),
        base_url=fake_vertex.url + "/v1",
    )
    message = client.messages.create(
        model=SONNET_VERTEX, max_tokens=100, messages=[{"role": "user", "content": "hi"}]
    )
    assert message.model == "claude-sonnet-4-5-20250929" and message.id.startswith("msg_vrtx_")
    with client.messages.stream(
        model=SONNET_VERTEX, max_tokens=100, messages=[{"role": "user", "content": "x"}]
    ) as s:
        assert s.get_final_message().usage.output_tokens > 0
    counted = client.messages.count_tokens(model=SONNET_VERTEX, messages=[{"role": "user", "content": "hi"}])
    assert counted.input_tokens > 0
    paths = [r.path for r in fake_vertex.requests]
    assert paths[0].endswith(
        "/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5@20250929:rawPredict"
    )
    assert paths[1].endswith(":streamRawPredict") and paths[2].endswith("/models/count-tokens:rawPredict")


def test_a_token_it_did_not_mint_is_refused(fake_vertex: FakeVertex) -> None:
    client = AnthropicVertex(
        region="global",
        project_id="p",
        access_token="ya29.forged",
        base_url=fake_vertex.url + "/v1",
        max_retries=0,
    )
    with pytest.raises(AuthenticationError):
        client.messages.create(
            model=SONNET_VERTEX, max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )


def test_an_assertion_signed_by_another_key_is_refused(fake_vertex: FakeVertex, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    stale = fake_vertex.write_service_account(tmp_path / "old.json")
    fake_vertex.write_service_account(tmp_path / "new.json")  # the fake now trusts only the new key
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(stale))
    with pytest.raises(google.auth.exceptions.RefreshError):
        adc_token()


def test_a_body_with_a_model_is_refused_like_vertex(fake_vertex: FakeVertex, vertex_adc: Path) -> None:
    models = f"{fake_vertex.url}/v1/projects/p/locations/us-east5/publishers/anthropic/models"
    url = f"{models}/{SONNET_VERTEX}:rawPredict"
    body = {"anthropic_version": "vertex-2023-10-16", "model": "x", "max_tokens": 5, "messages": []}
    answer = httpx.post(url, json=body, headers={"authorization": f"Bearer {adc_token()}"})
    assert answer.status_code == 400
    assert answer.json()["error"]["message"] == "model: Extra inputs are not permitted"
