from __future__ import annotations

from sidecar.sansio.headers import request_headers_for_upstream, response_headers_for_client, sidecar_controls


def test_request_filter_drops_hop_by_hop_and_controls_keeps_order_and_bytes() -> None:
    headers = [
        (b"Host", b"sidecar"),
        (b"X-Api-Key", b"k"),
        (b"Connection", b"keep-alive, X-Trace-Hop"),
        (b"x-trace-hop", b"1"),
        (b"anthropic-beta", b"a"),
        (b"anthropic-beta", b"b"),
        (b"X-Sidecar-Prompt-Cache", b"off"),
        (b"content-length", b"10"),
        (b"x-odd", b"caf\xc3\xa9"),
    ]
    out = request_headers_for_upstream(headers)
    assert out == [
        (b"x-api-key", b"k"),
        (b"anthropic-beta", b"a"),
        (b"anthropic-beta", b"b"),
        (b"x-odd", b"caf\xc3\xa9"),
    ]
    assert sidecar_controls(headers) == {"prompt-cache": "off"}


def test_response_filter_keeps_end_to_end_headers() -> None:
    headers = [
        (b"request-id", b"req_1"),
        (b"Transfer-Encoding", b"chunked"),
        (b"retry-after", b"3"),
        (b"content-length", b"5"),
        (b"anthropic-ratelimit-requests-remaining", b"9"),
    ]
    out = response_headers_for_client(headers)
    assert out == [
        (b"request-id", b"req_1"),
        (b"retry-after", b"3"),
        (b"content-length", b"5"),
        (b"anthropic-ratelimit-requests-remaining", b"9"),
    ]
