"""The proxy is transparent: what a client gets through the sidecar equals what it gets directly."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx
import pytest

from sidecar.sansio.headers import HOP_BY_HOP
from sidecar.server.inprocess import RunningSidecar
from sidecar.testing.fake_upstream import FakeUpstream
from tests.conftest import API_KEY

HEADERS = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"}
BODY = {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": "Hello"}]}
TOOLS = [
    {"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {}}}
]


def _comparable_headers(resp: httpx.Response) -> dict[str, str]:
    """Headers that must match between a direct and a proxied call: not hop-by-hop, and not the ones
    whose values move between two calls (the clock, rate-limit counters, and their reset instants, which
    change when the two calls straddle a second)."""
    skip = {h.decode() for h in HOP_BY_HOP} | {"date"}
    moving = ("-remaining", "-reset")
    return {
        k: v
        for k, v in resp.headers.items()
        if k not in skip and not (k.startswith("anthropic-ratelimit-") and k.endswith(moving))
    }


def _both(
    fake: FakeUpstream, sidecar: RunningSidecar, method: str, path: str, **kw: Any
) -> tuple[httpx.Response, httpx.Response]:
    with httpx.Client(timeout=10) as client:
        direct = client.request(method, fake.url + path, **kw)
        proxied = client.request(method, sidecar.url + path, **kw)
    return direct, proxied


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/messages", BODY),
        ("POST", "/v1/messages?beta=true", BODY),
        ("POST", "/v1/messages", {**BODY, "tools": TOOLS}),
        ("POST", "/v1/messages", {**BODY, "stream": True}),
        ("POST", "/v1/messages", {**BODY, "stream": True, "tools": TOOLS}),
        ("POST", "/v1/messages/count_tokens", {"model": "claude-sonnet-4-5", "messages": BODY["messages"]}),
        ("GET", "/v1/models?limit=2", None),
        ("GET", "/v1/models/claude-sonnet-4-5", None),
        ("GET", "/v1/does-not-exist", None),
        ("POST", "/v1/messages", {"model": "claude-sonnet-4-5"}),  # upstream's own 400
    ],
)
def test_identical_status_headers_and_body(
    fake: FakeUpstream, sidecar: RunningSidecar, method: str, path: str, body: dict[str, Any] | None
) -> None:
    content = json.dumps(body).encode() if body is not None else None
    direct, proxied = _both(fake, sidecar, method, path, headers=HEADERS, content=content)
    assert proxied.status_code == direct.status_code
    assert proxied.content == direct.content
    assert _comparable_headers(proxied) == _comparable_headers(direct)


def test_request_reaches_upstream_intact(fake: FakeUpstream, sidecar: RunningSidecar) -> None:
    content = (
        b'{"model": "claude-sonnet-4-5", "max_tokens": 5,   "messages": [{"role":"user","content":"x"}]}'
    )
    headers = {
        **HEADERS,
        "x-custom": "kept",
        "anthropic-beta": "a-1,b-2",
        "x-sidecar-prompt-cache": "off",
        "connection": "keep-alive, x-hop",
        "x-hop": "dropped",
    }
    with httpx.Client() as client:
        client.post(sidecar.url + "/v1/messages?beta=true&x=%2F1", content=content, headers=headers)
    seen = fake.requests[-1]
    assert seen.method == "POST"
    assert seen.path == "/v1/messages"
    assert seen.query_string == "beta=true&x=%2F1"
    assert seen.body == content  # byte for byte, whitespace included
    names = [n.lower() for n, _ in seen.headers]
    values = {n.lower(): v for n, v in seen.headers}
    assert values["x-custom"] == "kept"
    assert values["anthropic-beta"] == "a-1,b-2"
    assert values["x-api-key"] == API_KEY
    assert "x-sidecar-prompt-cache" not in names  # the sidecar's own controls are consumed
    assert "x-hop" not in names  # named in Connection: hop-by-hop


def test_non_json_body_is_forwarded_untouched(fake: FakeUpstream, sidecar: RunningSidecar) -> None:
    direct, proxied = _both(fake, sidecar, "POST", "/v1/messages", headers=HEADERS, content=b"{not json")
    assert proxied.status_code == direct.status_code == 400
    assert proxied.content == direct.content
    assert fake.requests[-1].body == b"{not json"


def test_sdk_sync_create_stream_tools_count_models(fake: FakeUpstream, sidecar: RunningSidecar) -> None:
    direct = anthropic.Anthropic(base_url=fake.url, api_key=API_KEY, max_retries=0)
    proxied = anthropic.Anthropic(base_url=sidecar.url, api_key=API_KEY, max_retries=0)
    for client in (direct, proxied):
        client.messages.create(model="claude-sonnet-4-5", max_tokens=32, messages=BODY["messages"])
    a = direct.messages.create(
        model="claude-haiku-4-5", max_tokens=32, messages=BODY["messages"], tools=TOOLS
    )
    b = proxied.messages.create(
        model="claude-haiku-4-5", max_tokens=32, messages=BODY["messages"], tools=TOOLS
    )
    assert a.model_dump() == b.model_dump()
    assert b.stop_reason == "tool_use"
    assert [c.type for c in b.content][-1] == "tool_use"
    with direct.messages.stream(model="claude-sonnet-4-5", max_tokens=32, messages=BODY["messages"]) as s:
        a_final = s.get_final_message()
    with proxied.messages.stream(model="claude-sonnet-4-5", max_tokens=32, messages=BODY["messages"]) as s:
        b_final = s.get_final_message()
    assert a_final.model_dump() == b_final.model_dump()
    assert direct.messages.count_tokens(
        model="claude-sonnet-4-5", messages=BODY["messages"]
    ).input_tokens == (
        proxied.messages.count_tokens(model="claude-sonnet-4-5", messages=BODY["messages"]).input_tokens
    )
    assert [m.id for m in direct.models.list()] == [m.id for m in proxied.models.list()]


async def test_sdk_async_create_and_stream(fake: FakeUpstream, sidecar: RunningSidecar) -> None:
    direct = anthropic.AsyncAnthropic(base_url=fake.url, api_key=API_KEY, max_retries=0)
    proxied = anthropic.AsyncAnthropic(base_url=sidecar.url, api_key=API_KEY, max_retries=0)
    a = await direct.messages.create(model="claude-opus-4-6", max_tokens=16, messages=BODY["messages"])
    b = await proxied.messages.create(model="claude-opus-4-6", max_tokens=16, messages=BODY["messages"])
    assert a.model_dump() == b.model_dump()
    texts = []
    async with proxied.messages.stream(
        model="claude-opus-4-6", max_tokens=16, messages=BODY["messages"]
    ) as s:
        async for text in s.text_stream:
            texts.append(text)
        final = await s.get_final_message()
    assert "".join(texts) == "".join(c.text for c in final.content if c.type == "text")
    assert final.usage.output_tokens > 0


def test_upstream_errors_come_back_unchanged(fake: FakeUpstream, sidecar: RunningSidecar) -> None:
    for scenario, status in (
        ("error-400", 400),
        ("error-401", 401),
        ("error-429", 429),
        ("error-500", 500),
        ("error-529", 529),
    ):
        headers = {**HEADERS, "x-fake-scenario": scenario}
        direct, proxied = _both(
            fake, sidecar, "POST", "/v1/messages", headers=headers, content=json.dumps(BODY).encode()
        )
        assert proxied.status_code == direct.status_code == status
        assert proxied.content == direct.content
        assert _comparable_headers(proxied) == _comparable_headers(direct)
        if status == 429:
            assert proxied.headers["retry-after"] == direct.headers["retry-after"]


def test_sdk_retries_pass_through(fake: FakeUpstream, sidecar: RunningSidecar) -> None:
    client = anthropic.Anthropic(base_url=sidecar.url, api_key=API_KEY, max_retries=2)
    msg = client.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=8,
        messages=BODY["messages"],
        extra_headers={"x-fake-fail-times": "2", "x-fake-fail-key": "retry-test"},
    )
    assert msg.stop_reason == "end_turn"
    retries = [
        dict((n.lower(), v) for n, v in r.headers).get("x-stainless-retry-count") for r in fake.requests
    ]
    assert retries[-3:] == ["0", "1", "2"]
    events = sidecar.wait_events(len(fake.requests))
    assert [e.retry_count for e in events][-3:] == [0, 1, 2]
    assert [e.status for e in events][-3:] == [529, 529, 200]


def test_upstream_proxy_from_environment(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from sidecar.proxy.upstream import upstream_proxy

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1,.corp")
    assert upstream_proxy("https://api.anthropic.com") == "http://proxy.internal:3128"
    assert upstream_proxy("https://llm.corp") is None
    assert upstream_proxy("http://127.0.0.1:8790") is None
