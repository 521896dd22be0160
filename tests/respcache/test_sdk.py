"""The official SDKs through a sidecar with the response cache on: what they accumulate from a hit equals
what they got from the live answer, in either form (stream or JSON), for both API versions (2.x SDK:
2026-10-21; 0.x SDK: 2023-06-01), sync and async. The fake upstream counts the calls that reach it."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from typing import Any

import anthropic
import pytest

from sidecar.server.inprocess import RunningSidecar
from sidecar.testing.fake_upstream import FakeUpstream
from tests.conftest import API_KEY
from tests.proxy.test_sdk0 import _python

ASK: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 64,
    "system": "You check the weather.",
    "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
    "tools": [{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object"}}],
}
THINK: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 4096,
    "thinking": {"type": "enabled", "budget_tokens": 1024},
    "messages": [{"role": "user", "content": "Why is the sky blue?"}],
}


def plain(message: Any) -> dict[str, Any]:
    """A ``Message`` as data, whichever helper built it (the stream helper's blocks add ``parsed_output``)."""
    dumped: dict[str, Any] = anthropic.types.Message.model_validate(message.model_dump()).model_dump()
    return dumped


@pytest.fixture
def cached(fake: FakeUpstream, make_sidecar: Callable[..., RunningSidecar]) -> RunningSidecar:
    return make_sidecar(fake.url, response_cache="on")


def messages_calls(fake: FakeUpstream) -> int:
    return sum(1 for r in fake.requests if r.path == "/v1/messages")


@pytest.mark.parametrize("body", [ASK, THINK], ids=["tool_use", "thinking"])
def test_sync_stream_first_then_hits_in_both_forms(
    fake: FakeUpstream, cached: RunningSidecar, body: dict[str, Any]
) -> None:
    client = anthropic.Anthropic(base_url=cached.url, api_key=API_KEY, max_retries=0)
    with client.messages.stream(**body) as stream:
        live = plain(stream.get_final_message())
        assert stream.response.headers["x-sidecar-cache"] == "miss"
    with client.messages.stream(**body) as stream:
        texts = list(stream.text_stream)
        again = plain(stream.get_final_message())
        assert stream.response.headers["x-sidecar-cache"] == "hit"
    raw = client.messages.with_raw_response.create(**body)
    assert raw.headers["x-sidecar-cache"] == "hit" and raw.headers["content-type"] == "application/json"
    assert int(raw.headers["x-sidecar-cache-age"]) >= 0
    assert again == live
    assert plain(raw.parse()) == live
    assert "".join(texts) == "".join(b["text"] for b in live["content"] if b["type"] == "text")
    assert messages_calls(fake) == 1


async def test_async_json_first_then_hits_in_both_forms(fake: FakeUpstream, cached: RunningSidecar) -> None:
    client = anthropic.AsyncAnthropic(base_url=cached.url, api_key=API_KEY, max_retries=0)
    raw = await client.messages.with_raw_response.create(**ASK)
    assert raw.headers["x-sidecar-cache"] == "miss"
    live = plain(await raw.parse())
    assert [b["type"] for b in live["content"]] == ["text", "tool_use"]
    again = await client.messages.create(**ASK)
    async with client.messages.stream(**ASK) as stream:
        streamed = plain(await stream.get_final_message())
        assert stream.response.headers["x-sidecar-cache"] == "hit"
    assert plain(again) == live == streamed
    assert messages_calls(fake) == 1
    await client.close()


SDK0_CLIENT = r"""
import json, sys
import anthropic
assert anthropic.__version__.startswith("0."), anthropic.__version__
client = anthropic.Anthropic(base_url=sys.argv[1], api_key=sys.argv[2], max_retries=0)
body = json.loads(sys.argv[3])
out = {}
with client.messages.stream(**body) as s:
    out["live"] = s.get_final_message().model_dump()
    out["live_header"] = s.response.headers.get("x-sidecar-cache")
with client.messages.stream(**body) as s:
    out["stream_hit"] = s.get_final_message().model_dump()
    out["stream_header"] = s.response.headers.get("x-sidecar-cache")
raw = client.messages.with_raw_response.create(**body)
out["json_hit"] = raw.parse().model_dump()
out["json_header"] = raw.headers.get("x-sidecar-cache")
beta = dict(body, messages=[{"role": "user", "content": "beta route"}])
first = client.beta.messages.create(betas=["token-counting-2024-11-01"], **beta).model_dump()
with client.beta.messages.stream(betas=["token-counting-2024-11-01"], **beta) as s:
    out["beta_first"], out["beta_hit"] = first, s.get_final_message().model_dump()
    out["beta_header"] = s.response.headers.get("x-sidecar-cache")
for block in out["live"]["content"] + out["stream_hit"]["content"] + out["beta_hit"]["content"]:
    block.pop("parsed_output", None)
print(json.dumps(out))
"""


def test_sdk_0x_on_api_version_2023_06_01(fake: FakeUpstream, cached: RunningSidecar) -> None:
    python = _python()
    if python is None:
        pytest.skip("the 0.x SDK environment (.venv-sdk0, made by scripts/test) is not here")
    proc = subprocess.run(
        [python, "-c", SDK0_CLIENT, cached.url, API_KEY, json.dumps(ASK)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert (out["live_header"], out["stream_header"], out["json_header"]) == ("miss", "hit", "hit")
    assert out["stream_hit"] == out["live"] == out["json_hit"]
    assert out["beta_header"] == "hit" and out["beta_hit"] == out["beta_first"]
    versions = {r.header("anthropic-version") for r in fake.requests}
    assert versions == {"2023-06-01"}
    # One call for the plain route, one for the beta route (?beta=true is part of the key).
    assert [r.query_string for r in fake.requests if r.path == "/v1/messages"] == ["", "beta=true"]
