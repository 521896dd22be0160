"""The sidecar's own errors use Anthropic's shape, and failures are recorded without breaking calls."""

from __future__ import annotations

import json
import threading
import time

import anthropic
import httpx
import pytest

from sidecar.testing.fake_upstream import FakeUpstream
from tests.conftest import API_KEY
from tests.net import free_port

HEADERS = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"}
BODY = {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": "Hi"}]}


def _error(resp: httpx.Response) -> tuple[str, str]:
    doc = resp.json()
    assert doc["type"] == "error"
    assert doc["request_id"] == resp.headers["request-id"]
    return doc["error"]["type"], doc["error"]["message"]


def test_unreachable_upstream_is_502_api_error(make_sidecar) -> None:  # type: ignore[no-untyped-def]
    sidecar = make_sidecar(f"http://127.0.0.1:{free_port()}")
    resp = httpx.post(sidecar.url + "/v1/messages", headers=HEADERS, json=BODY)
    assert resp.status_code == 502
    assert resp.headers["x-should-retry"] == "true"
    assert _error(resp)[0] == "api_error"
    (event,) = sidecar.wait_events(1)
    assert (event.status, event.outcome, event.error_type) == (502, "upstream_error", "api_error")


def test_upstream_timeout_is_504(fake: FakeUpstream, make_sidecar) -> None:  # type: ignore[no-untyped-def]
    sidecar = make_sidecar(fake.url, upstream_timeout=0.3)
    resp = httpx.post(
        sidecar.url + "/v1/messages", headers={**HEADERS, "x-fake-scenario": "hang"}, json=BODY, timeout=10
    )
    assert resp.status_code == 504
    assert _error(resp)[0] == "timeout_error"


@pytest.mark.parametrize("path", ["/", "/v2/messages", "/sidecar/v1/nope", "/favicon.ico"])
def test_paths_outside_v1_are_404(sidecar, path: str) -> None:  # type: ignore[no-untyped-def]
    resp = httpx.get(sidecar.url + path)
    assert resp.status_code == 404
    assert _error(resp)[0] == "not_found_error"


def test_oversized_body_is_413_before_upstream(fake: FakeUpstream, make_sidecar) -> None:  # type: ignore[no-untyped-def]
    sidecar = make_sidecar(fake.url, max_body_messages=1000)
    body = json.dumps({**BODY, "messages": [{"role": "user", "content": "x" * 5000}]}).encode()
    resp = httpx.post(sidecar.url + "/v1/messages", headers=HEADERS, content=body)
    assert resp.status_code == 413
    assert _error(resp)[0] == "request_too_large"
    # Chunked (no content-length) is limited too.
    resp = httpx.post(sidecar.url + "/v1/messages", headers=HEADERS, content=iter([body[:600], body[600:]]))
    assert resp.status_code == 413
    assert fake.requests == []
    # A body under the limit still goes through.
    assert httpx.post(sidecar.url + "/v1/messages", headers=HEADERS, json=BODY).status_code == 200


def test_default_limits_follow_anthropic() -> None:
    from sidecar.settings import Settings

    s = Settings()
    assert (s.max_body_messages, s.max_body_batches, s.max_body_files) == (
        32_000_000,
        256_000_000,
        500_000_000,
    )


def test_in_band_error_event_is_relayed_and_recorded(fake: FakeUpstream, sidecar) -> None:  # type: ignore[no-untyped-def]
    client = anthropic.Anthropic(base_url=sidecar.url, api_key=API_KEY, max_retries=0)
    with (
        pytest.raises(anthropic.APIStatusError) as info,
        client.messages.stream(
            model="claude-sonnet-4-5",
            max_tokens=8,
            messages=BODY["messages"],
            extra_headers={"x-fake-scenario": "error-in-stream", "x-session-id": "e1"},
        ) as s,
    ):
        s.get_final_message()
    assert "overloaded" in str(info.value).lower()
    (event,) = sidecar.wait_events(1, session_id="e1")
    assert event.status == 200
    assert event.error_type == "overloaded_error"
    assert event.outcome == "upstream_error"


def test_reset_mid_stream_ends_client_connection(fake: FakeUpstream, sidecar) -> None:  # type: ignore[no-untyped-def]
    body = json.dumps({**BODY, "stream": True}).encode()
    headers = {**HEADERS, "x-fake-scenario": "reset-mid-stream", "x-session-id": "r1"}

    def read(url: str) -> tuple[bytes, type[BaseException] | None]:
        data = b""
        try:
            with httpx.stream("POST", url + "/v1/messages", headers=headers, content=body) as resp:
                for chunk in resp.iter_raw():
                    data += chunk
        except httpx.HTTPError as exc:
            return data, type(exc)
        return data, None

    direct_data, direct_exc = read(fake.url)
    proxied_data, proxied_exc = read(sidecar.url)
    assert direct_exc is not None and proxied_exc is not None  # both end abruptly
    assert proxied_data == direct_data
    (event,) = sidecar.wait_events(1, session_id="r1")
    assert event.outcome == "upstream_error"
    assert event.usage.input_tokens > 0  # partial usage from message_start is kept


def test_client_disconnect_cancels_upstream_and_records_partial_usage(
    slow_fake: FakeUpstream, make_sidecar
) -> None:  # type: ignore[no-untyped-def]
    sidecar = make_sidecar(slow_fake.url)
    body = json.dumps({**BODY, "stream": True}).encode()
    headers = {**HEADERS, "x-session-id": "gone", "x-fake-chunk-delay-ms": "200"}
    with (
        httpx.Client() as client,
        client.stream("POST", sidecar.url + "/v1/messages", headers=headers, content=body) as resp,
    ):
        for chunk in resp.iter_raw():
            if b"content_block_delta" in chunk:
                break  # leave mid-stream
    start = time.monotonic()
    deadline = start + 5
    events = []
    while time.monotonic() < deadline and not events:
        sidecar.sidecar.recorder.flush()
        events = sidecar.sidecar.store.events(session_id="gone")
        time.sleep(0.02)
    assert events, "no event recorded for the disconnected call"
    (event,) = events
    assert event.outcome == "client_disconnected"
    assert event.usage.input_tokens > 0
    assert event.duration_s < 1.5  # the full stream would take 10 x 0.2 s: upstream was cancelled
    assert time.monotonic() - start < 2


def test_admin_token_guards_sidecar_api(fake: FakeUpstream, make_sidecar) -> None:  # type: ignore[no-untyped-def]
    sidecar = make_sidecar(fake.url, admin_token="adm-secret")
    assert httpx.get(sidecar.url + "/sidecar/v1/sessions").status_code == 401
    assert httpx.get(sidecar.url + "/metrics").status_code == 200
    assert httpx.get(sidecar.url + "/healthz").status_code == 200


def test_metrics_exposed_after_traffic(fake: FakeUpstream, sidecar) -> None:  # type: ignore[no-untyped-def]
    httpx.post(sidecar.url + "/v1/messages", headers={**HEADERS, "x-app-name": "billing"}, json=BODY)
    sidecar.wait_events(1)
    text = httpx.get(sidecar.url + "/metrics").text
    labels = 'app="billing",model="claude-sonnet-4-5",provider="anthropic",status_class="2xx",stream="false"'
    assert "sidecar_requests_total{" + labels + "} 1.0" in text
    assert "gen_ai_client_operation_duration_seconds_bucket" in text
    assert 'sidecar_build_info{pricing_date="' in text
    assert API_KEY not in text
    om = httpx.get(sidecar.url + "/metrics", headers={"accept": "application/openmetrics-text"})
    assert om.headers["content-type"].startswith("application/openmetrics-text")
    assert om.text.rstrip().endswith("# EOF")


def test_many_concurrent_calls_all_recorded(fake: FakeUpstream, sidecar) -> None:  # type: ignore[no-untyped-def]
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            with httpx.Client() as client:
                for j in range(10):
                    stream = (i + j) % 2 == 0
                    client.post(
                        sidecar.url + "/v1/messages",
                        headers={**HEADERS, "x-session-id": f"c{i}"},
                        json={**BODY, "stream": stream},
                    ).raise_for_status()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(sidecar.wait_events(80)) == 80
