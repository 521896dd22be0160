"""Header and path tricks cannot change the upstream host, and hostile requests get clean answers.

A second fake ("evil") listens on another port; every trick names it somewhere. Only the real fake may
ever be contacted, and each answer is a well-formed HTTP response: a normal forward or a clean error.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from sidecar.server.inprocess import RunningSidecar
from sidecar.testing.fake_upstream import FakeUpstream
from tests.conftest import API_KEY
from tests.hostile.support import API_HEADERS, body_of, raw_request, status_of

HEADERS = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"}
BODY = {"model": "claude-haiku-4-5", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def evil() -> Iterator[FakeUpstream]:
    with FakeUpstream() as upstream:
        yield upstream


def tricks(evil: str) -> dict[str, bytes]:
    """Raw requests (without the final CRLF), keyed by what they try."""
    e = evil.encode()
    return {
        "absolute-form target": b"GET http://" + e + b"/v1/models HTTP/1.1\r\nHost: " + e + b"\r\n",
        "absolute-form https": b"GET https://" + e + b"/v1/models HTTP/1.1\r\nHost: x\r\n",
        "userinfo in absolute form": b"GET http://127.0.0.1@" + e + b"/v1/models HTTP/1.1\r\nHost: x\r\n",
        "scheme-relative path": b"GET //" + e + b"/v1/models HTTP/1.1\r\nHost: x\r\n",
        "dot segments": b"GET /v1/../admin HTTP/1.1\r\nHost: x\r\n",
        "encoded dot segments": b"GET /v1/%2e%2e/ HTTP/1.1\r\nHost: x\r\n",
        "encoded slashes": b"GET %2F%2F" + e + b"%2Fv1%2Fmodels HTTP/1.1\r\nHost: x\r\n",
        "encoded prefix": b"GET /%761/models HTTP/1.1\r\nHost: x\r\n",
        "at sign in path": b"GET /v1/models@" + e + b"/x HTTP/1.1\r\nHost: x\r\n",
        "at sign first": b"GET @" + e + b"/v1/models HTTP/1.1\r\nHost: x\r\n",
        "backslashes": b"GET /v1/..\\\\" + e + b"/ HTTP/1.1\r\nHost: x\r\n",
        "fragment": b"GET /v1/models#@" + e + b" HTTP/1.1\r\nHost: x\r\n",
        "host in query": b"GET /v1/models?next=http://" + e + b"/ HTTP/1.1\r\nHost: x\r\n",
        "CRLF in query": b"GET /v1/models?a=1\r\nHost: " + e + b" HTTP/1.1\r\nHost: x\r\n",
        "encoded CRLF in query": b"GET /v1/models?a=%0d%0aHost:%20" + e + b" HTTP/1.1\r\nHost: x\r\n",
        "tab in target": b"GET /v1/models\t@" + e + b" HTTP/1.1\r\nHost: x\r\n",
        "non-ASCII target": b"GET /v1/mod\xffels HTTP/1.1\r\nHost: x\r\n",
        "CONNECT": b"CONNECT " + e + b" HTTP/1.1\r\nHost: " + e + b"\r\n",
        "asterisk form": b"OPTIONS * HTTP/1.1\r\nHost: x\r\n",
        "evil Host": b"GET /v1/models HTTP/1.1\r\nHost: " + e + b"\r\n",
        "two Host headers": b"GET /v1/models HTTP/1.1\r\nHost: x\r\nHost: " + e + b"\r\n",
        "forwarding headers": b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Forwarded-Host: " + e + b"\r\n"
        b"Forwarded: host=" + e + b";proto=http\r\nX-Original-URL: http://" + e + b"/\r\n",
        "sidecar control headers": b"GET /v1/models HTTP/1.1\r\nHost: x\r\nx-sidecar-upstream: http://" + e
        + b"\r\nx-sidecar-upstream-url: http://" + e + b"\r\nX-Sidecar-Host: " + e + b"\r\n",
        "space before colon": b"GET /v1/models HTTP/1.1\r\nHost : " + e + b"\r\n",
        "obs-fold": b"GET /v1/models HTTP/1.1\r\nHost: x\r\nx-a: 1\r\n Host: " + e + b"\r\n",
        "CL and TE": b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
        b"Transfer-Encoding: chunked\r\n",
        "HTTP/1.0": b"GET /v1/models HTTP/1.0\r\nHost: " + e + b"\r\n",
    }  # fmt: skip


def test_no_trick_reaches_another_host(
    fake: FakeUpstream, evil: FakeUpstream, sidecar: RunningSidecar
) -> None:
    fake_host = urlsplit(fake.url).netloc
    evil_host = urlsplit(evil.url).netloc
    answers = {}
    for name, head in tricks(evil_host).items():
        before = len(fake.requests)
        response = raw_request(sidecar.port, head + API_HEADERS + b"connection: close\r\n\r\n")
        status = status_of(response)
        answers[name] = status
        assert status is not None and 200 <= status < 500, f"{name}: {response[:200]!r}"
        for seen in fake.requests[before:]:
            assert seen.header("host") == fake_host, name
            assert all(not n.lower().startswith("x-sidecar-") for n, _ in seen.headers), name
            assert seen.path.startswith("/v1/") or seen.path.startswith("/%761/"), name
    assert evil.requests == [], f"the evil host was contacted: {[r.path for r in evil.requests]}"
    # Forwarding is still the normal thing to do for the harmless-but-odd ones.
    assert (
        answers["absolute-form target"] == answers["evil Host"] == answers["sidecar control headers"] == 200
    )
    assert answers["scheme-relative path"] == 404  # not under /v1/: the sidecar's own 404
    assert httpx.get(sidecar.url + "/healthz").status_code == 200


def test_batch_results_url_ignores_forwarding_headers(fake: FakeUpstream, sidecar: RunningSidecar) -> None:
    created = httpx.post(
        sidecar.url + "/v1/messages/batches",
        headers=HEADERS,
        json={"requests": [{"custom_id": "a", "params": BODY}]},
    )
    batch_id = created.json()["id"]
    tricky = {
        **HEADERS,
        "host": "evil.example",
        "x-forwarded-host": "evil.example",
        "x-forwarded-proto": "https",
        "forwarded": "host=evil.example;proto=https",
    }
    got = httpx.get(f"{sidecar.url}/v1/messages/batches/{batch_id}", headers=tricky).json()
    assert got["results_url"].startswith(sidecar.url + "/v1/messages/batches/")


def test_websocket_upgrade_on_the_proxy_is_refused_cleanly(sidecar: RunningSidecar) -> None:
    head = (
        b"Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    for path in (b"/v1/models", b"/sidecar/v1/sessions", b"/nowhere"):
        answer = raw_request(sidecar.port, b"GET " + path + b" HTTP/1.1\r\n" + head)
        assert status_of(answer) == 400
        error = json.loads(answer.partition(b"\r\n\r\n")[2])["error"]
        assert error["type"] == "invalid_request_error"
        assert "/sidecar/v1/fleet/connect" in error["message"]  # where members connect instead


def post(sidecar: RunningSidecar, body: object, **headers: str) -> httpx.Response:
    return httpx.post(sidecar.url + "/v1/messages", headers={**HEADERS, **headers}, content=json.dumps(body))


def test_deeply_nested_metadata_is_forwarded_not_a_500(fake: FakeUpstream, sidecar: RunningSidecar) -> None:
    user_id = '{"a":' + "[" * 100_000 + "]" * 100_000 + "}"
    resp = post(sidecar, {**BODY, "metadata": {"user_id": user_id}}, **{"x-session-id": "deep"})
    assert resp.status_code == 200 and len(fake.requests) == 1
    assert len(sidecar.wait_events(1, session_id="deep")) == 1


def test_lone_surrogate_session_is_stored_with_its_neighbours(sidecar: RunningSidecar) -> None:
    user_id = json.dumps({"session_id": "\udc80-surrogate"})  # JSON-escaped, as a client would send it
    assert post(sidecar, {**BODY, "metadata": {"user_id": user_id}}).status_code == 200
    assert post(sidecar, BODY, **{"x-session-id": "neighbour"}).status_code == 200
    events = sidecar.wait_events(2)
    assert sorted(e.session_id for e in events) == ["?-surrogate", "neighbour"]  # U+DC80 became "?"
    sessions = httpx.get(sidecar.url + "/sidecar/v1/sessions").json()["sessions"]
    assert len(sessions) == 2


def test_absurd_model_id_is_forwarded_and_recorded_capped(
    fake: FakeUpstream, sidecar: RunningSidecar
) -> None:
    model = "claude-" + "x" * 2_000_000
    resp = post(sidecar, {**BODY, "model": model}, **{"x-session-id": "long-model"})
    assert resp.status_code in (200, 400, 404)  # whatever the upstream says
    assert json.loads(fake.requests[-1].body)["model"] == model  # forwarded untouched
    (event,) = sidecar.wait_events(1, session_id="long-model")
    assert event.model == model[:256]


def test_one_megabyte_sidecar_header_is_consumed(fake: FakeUpstream, sidecar: RunningSidecar) -> None:
    resp = post(sidecar, BODY, **{"x-sidecar-note": "n" * 1_000_000})
    assert resp.status_code == 200
    assert fake.requests[-1].header("x-sidecar-note") is None


# --- odd header values: forwarded byte for byte, or refused with a clean error -----------------------


def test_invalid_utf8_header_value_is_forwarded_byte_for_byte_or_refused(
    fake: FakeUpstream, sidecar: RunningSidecar
) -> None:
    value = b"caf\xe9 \xff\xfe"
    head = b"GET /v1/models HTTP/1.1\r\nHost: x\r\nx-note: " + value + b"\r\n" + API_HEADERS
    response = raw_request(sidecar.port, head + b"connection: close\r\n\r\n")
    if status_of(response) == 400:
        assert fake.requests == [] and b"invalid_request_error" in body_of(response)
        return
    assert fake.requests[-1].header("x-note") == value.decode("latin-1")  # the fake records latin-1


def test_huge_retry_count_header_is_not_a_500(fake: FakeUpstream, sidecar: RunningSidecar) -> None:
    resp = post(sidecar, BODY, **{"x-stainless-retry-count": "9" * 5000})
    assert resp.status_code == 200 and len(fake.requests) == 1


def test_retry_count_beyond_64_bits_does_not_lose_events(sidecar: RunningSidecar) -> None:
    resp = post(sidecar, BODY, **{"x-stainless-retry-count": "9" * 30, "x-session-id": "retry"})
    assert resp.status_code == 200
    assert len(sidecar.wait_events(1, session_id="retry", timeout_s=2)) == 1


def test_content_length_with_many_leading_zeros_is_not_a_500(sidecar: RunningSidecar) -> None:
    body = json.dumps(BODY).encode()
    head = b"POST /v1/messages HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n" + API_HEADERS
    length = b"content-length: " + b"0" * 5000 + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n"
    assert status_of(raw_request(sidecar.port, head + length + body)) == 200
