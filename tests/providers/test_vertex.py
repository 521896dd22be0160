"""Vertex addressing and answers (SPEC R-CP-2)."""

from __future__ import annotations

import pytest

from sidecar.core.cloud import VERTEX, CloudRoute
from sidecar.errors import InvalidRequest, NotFound
from sidecar.providers.google_auth import GoogleTokens
from sidecar.providers.vertex import VertexConfig, VertexProvider, location_origin, parse_route
from sidecar.sansio.messages import MessageSummary, StreamParser

BASE = "/vertex/v1/projects/my-proj/locations/{loc}/publishers/anthropic/models/{model}:{verb}"


def path(loc: str = "us-east5", model: str = "claude-sonnet-4-5@20250929", verb: str = "rawPredict") -> str:
    return BASE.format(loc=loc, model=model, verb=verb)


@pytest.mark.parametrize(
    ("location", "origin"),
    [
        ("global", "https://aiplatform.googleapis.com"),
        ("us", "https://aiplatform.us.rep.googleapis.com"),
        ("eu", "https://aiplatform.eu.rep.googleapis.com"),
        ("us-east5", "https://us-east5-aiplatform.googleapis.com"),
        ("europe-west1", "https://europe-west1-aiplatform.googleapis.com"),
    ],
)
def test_each_location_goes_to_its_host(location: str, origin: str) -> None:
    assert location_origin(location) == origin
    r = parse_route("POST", path(location), "", None)
    assert r.origin == origin and r.cloud_region == location


def test_the_path_goes_upstream_as_sent_with_the_model_decoded_for_routing() -> None:
    r = parse_route(
        "POST", path(model="claude-sonnet-4-5%4020250929", verb="streamRawPredict"), "alt=sse", None
    )
    assert r == CloudRoute(
        VERTEX,
        "chat",
        "claude-sonnet-4-5@20250929",
        True,
        "us-east5",
        "https://us-east5-aiplatform.googleapis.com",
        "/v1/projects/my-proj/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5%4020250929"
        ":streamRawPredict?alt=sse",
    )


def test_count_tokens_takes_the_model_from_the_body() -> None:
    r = parse_route("POST", path(model="count-tokens"), "", None)
    assert (r.op, r.model, r.stream) == ("count_tokens", None, False)


def test_the_override_replaces_every_host() -> None:
    r = parse_route("POST", path("global"), "", "http://127.0.0.1:9999")
    assert r.origin == "http://127.0.0.1:9999" and r.cloud_region == "global"


@pytest.mark.parametrize(
    ("method", "raw", "error"),
    [
        ("GET", path(), NotFound),
        ("POST", path().replace("anthropic", "google"), NotFound),
        ("POST", path(verb="predict"), NotFound),
        ("POST", path(model="count-tokens", verb="streamRawPredict"), NotFound),
        ("POST", path(loc="evil.example.com%2F"), InvalidRequest),
        ("POST", path(loc="US-EAST5"), InvalidRequest),
        ("POST", path(loc="x" * 41), InvalidRequest),
        ("POST", "/vertex/v1/projects/p/locations/us/publishers/anthropic/models/m:rawPredict/x", NotFound),
    ],
)
def test_anything_else_is_refused(method: str, raw: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_route(method, raw, "", None)


async def test_the_client_credentials_are_replaced_by_the_sidecars_token() -> None:
    tokens = GoogleTokens(load=lambda: _Creds(), mint=lambda c: c.mint())
    p = VertexProvider(VertexConfig(), tokens)
    r = p.route("POST", path(), "")
    headers = [
        (b"authorization", b"Bearer client-token"),
        (b"x-goog-api-key", b"k"),
        (b"anthropic-beta", b"b1"),
    ]
    out = await p.authorize(r, headers, b"{}")
    assert out == [(b"anthropic-beta", b"b1"), (b"authorization", b"Bearer ya29.minted-1")]
    assert p.client_credential(headers) == b"client-token"


def test_answers_and_request_ids() -> None:
    p = VertexProvider(VertexConfig(), GoogleTokens())
    assert isinstance(p.stream_parser(b"text/event-stream; charset=utf-8"), StreamParser)
    assert p.stream_parser(b"application/json") is None
    assert p.request_id([], MessageSummary(message_id="msg_vrtx_1")) == "msg_vrtx_1"
    assert p.request_id([], None) is None


class _Creds:
    def __init__(self) -> None:
        self.token: str | None = None
        self.expiry = None
        self.n = 0

    def mint(self) -> None:
        self.n += 1
        self.token = f"ya29.minted-{self.n}"


def test_the_response_cache_keys_json_and_stream_calls_of_a_model_together() -> None:
    def cache_route(verb: str, model: str = "claude-sonnet-4-5@20250929", loc: str = "us-east5") -> bytes:
        key, render = VertexProvider.cache_route(parse_route("POST", path(loc, model, verb), "", None))
        assert render  # Anthropic's JSON and SSE: rendered into each other
        return key

    key = cache_route("rawPredict")
    assert key == path().encode()
    assert cache_route("streamRawPredict") == key
    assert cache_route("rawPredict", model="claude-sonnet-4-5%4020250929") == key
    assert cache_route("rawPredict", loc="europe-west1") != key
    assert cache_route("rawPredict", model="claude-haiku-4-5@20251001") != key
