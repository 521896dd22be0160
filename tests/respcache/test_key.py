"""The key of a stored answer: what makes two requests the same request (SPEC R-RC-2, R-RC-7)."""

from __future__ import annotations

from typing import Any

import orjson

from sidecar.respcache.key import KEY_BYTES, beta_set, credential, request_key

BODY: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 64,
    "system": [{"type": "text", "text": "Be brief."}],
    "messages": [{"role": "user", "content": "Hello"}],
    "temperature": 0.25,
}
HEADERS = [(b"x-api-key", b"sk-tenant-a"), (b"anthropic-version", b"2023-06-01")]


def key(
    doc: dict[str, Any] = BODY,
    headers: list[tuple[bytes, bytes]] = HEADERS,
    route: bytes = b"/v1/messages",
    shared: bool = False,
) -> bytes | None:
    return request_key(route=route, headers=headers, doc=doc, shared=shared)


def test_key_order_whitespace_and_stream_do_not_matter() -> None:
    reordered = orjson.loads(b'{"messages":[{"content":"Hello","role":"user"}],"temperature":0.25,'
                             b'"system":[{"text":"Be brief.","type":"text"}],"max_tokens":64,'
                             b'"model":"claude-sonnet-4-5","stream":true}')  # fmt: skip
    base = key()
    assert base is not None and len(base) == KEY_BYTES
    assert key(reordered) == base
    assert key({**BODY, "stream": False}) == base


def test_what_the_model_sees_matters() -> None:
    base = key()
    assert key({**BODY, "max_tokens": 65}) != base
    assert key({**BODY, "messages": [{"role": "user", "content": "Hello!"}]}) != base
    assert key({**BODY, "temperature": 0.5}) != base
    assert key(route=b"/v1/messages?beta=true") != base  # ?beta=true is part of the route
    assert key(headers=[HEADERS[0], (b"anthropic-version", b"2026-10-21")]) != base


def test_tenants_are_apart_and_one_credential_is_one_tenant_whatever_header() -> None:
    base = key()
    bearer = [(b"authorization", b"Bearer sk-tenant-a"), HEADERS[1]]
    assert key(headers=bearer) == base
    assert key(headers=[(b"x-api-key", b"sk-tenant-b"), HEADERS[1]]) != base
    assert key(headers=[HEADERS[1]]) != base  # no credential at all is its own tenant
    # Shared on purpose: the tenant no longer counts.
    other = [(b"x-api-key", b"sk-tenant-b"), HEADERS[1]]
    assert key(headers=other, shared=True) == key(shared=True) != base


def test_a_tenant_given_by_the_route_replaces_the_credential_header() -> None:
    # A cloud route's caller is what its provider reads (a SigV4 access key id, not the signature).
    signed = [(b"authorization", b"AWS4-HMAC-SHA256 Credential=AKID/...Signature=1"), HEADERS[1]]
    resigned = [(b"authorization", b"AWS4-HMAC-SHA256 Credential=AKID/...Signature=2"), HEADERS[1]]
    assert key(headers=signed) != key(headers=resigned)  # the header's value: a new tenant each call

    def tenant_key(headers: list[tuple[bytes, bytes]], tenant: bytes, shared: bool = False) -> bytes | None:
        return request_key(route=b"/bedrock/x", headers=headers, doc=BODY, shared=shared, tenant=tenant)

    assert tenant_key(signed, b"AKID") == tenant_key(resigned, b"AKID") != tenant_key(signed, b"AKID2")
    assert tenant_key(signed, b"") != tenant_key(signed, b"AKID")
    assert tenant_key(signed, b"AKID", shared=True) == tenant_key(resigned, b"AKID2", shared=True)


def test_beta_values_are_a_set() -> None:
    one = [*HEADERS, (b"anthropic-beta", b"b-2, a-1")]
    two = [*HEADERS, (b"anthropic-beta", b"a-1"), (b"anthropic-beta", b"B-2,a-1")]
    assert beta_set(one) == beta_set(two) == (b"a-1", b"b-2")
    assert key(headers=one) == key(headers=two) != key()
    assert key(headers=[*HEADERS, (b"anthropic-beta", b"a-1")]) != key(headers=one)


def test_credential_extraction() -> None:
    assert credential([(b"authorization", b"bearer  K ")]) == b"K"
    assert credential([(b"authorization", b"Bearer X"), (b"x-api-key", b"K")]) == b"K"
    assert credential([]) == b""


def test_a_body_without_canonical_form_has_no_key() -> None:
    assert key({**BODY, "metadata": {1: "not a string key"}}) is None
