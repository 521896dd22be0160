"""Batches, files and key handling through the sidecar, with the official SDK."""

from __future__ import annotations

import io
import json
import logging

import anthropic
import httpx
import pytest

from sidecar.testing.fake_upstream import FakeUpstream
from tests.conftest import API_KEY


def test_batch_results_url_points_at_the_sidecar_and_downloads_through_it(
    fake: FakeUpstream, make_sidecar
) -> None:  # type: ignore[no-untyped-def]
    sidecar = make_sidecar(fake.url, public_url="http://sidecar.internal:8788")
    client = anthropic.Anthropic(base_url=sidecar.url, api_key=API_KEY, max_retries=0)
    batch = client.messages.batches.create(
        requests=[
            {
                "custom_id": "a",
                "params": {
                    "model": "claude-haiku-4-5",
                    "max_tokens": 8,
                    "messages": [{"role": "user", "content": "hi"}],
                },
            }
        ]
    )
    assert batch.results_url is not None
    assert batch.results_url.startswith("http://sidecar.internal:8788/v1/messages/batches/")
    # The Host header cannot steer it.
    raw = httpx.get(
        f"{sidecar.url}/v1/messages/batches/{batch.id}",
        headers={"x-api-key": API_KEY, "anthropic-version": "2023-06-01", "host": "evil.example"},
    )
    assert raw.json()["results_url"].startswith("http://sidecar.internal:8788/")
    listed = client.messages.batches.list()
    assert all(
        b.results_url is None or b.results_url.startswith("http://sidecar.internal:8788/") for b in listed
    )


def test_batch_results_download_seen_by_sidecar(fake: FakeUpstream, make_sidecar) -> None:  # type: ignore[no-untyped-def]
    sidecar = make_sidecar(fake.url)
    client = anthropic.Anthropic(base_url=sidecar.url, api_key=API_KEY, max_retries=0)
    batch = client.messages.batches.create(
        requests=[
            {
                "custom_id": "a",
                "params": {
                    "model": "claude-haiku-4-5",
                    "max_tokens": 8,
                    "messages": [{"role": "user", "content": "hi"}],
                },
            }
        ]
    )
    results = list(client.messages.batches.results(batch.id))
    assert [r.custom_id for r in results] == ["a"]
    assert any(r.path.endswith("/results") for r in fake.requests)


def test_files_upload_and_download_stream_through(fake: FakeUpstream, sidecar) -> None:  # type: ignore[no-untyped-def]
    client = anthropic.Anthropic(base_url=sidecar.url, api_key=API_KEY, max_retries=0)
    payload = bytes(range(256)) * 4000  # 1 MB of binary
    uploaded = client.beta.files.upload(file=("data.bin", io.BytesIO(payload), "application/octet-stream"))
    downloaded = client.beta.files.download(uploaded.id)
    assert downloaded.read() == payload


def test_upstream_key_held_by_sidecar(fake: FakeUpstream, make_sidecar) -> None:  # type: ignore[no-untyped-def]
    real_key = "sk-ant-api03-REAL-UPSTREAM-KEY-xyz"
    sidecar = make_sidecar(fake.url, upstream_api_key=real_key, client_tokens=("team-token-1",))
    ok = anthropic.Anthropic(base_url=sidecar.url, api_key="team-token-1", max_retries=0)
    ok.messages.create(model="claude-haiku-4-5", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    seen = fake.requests[-1]
    assert seen.header("x-api-key") == real_key
    assert seen.header("authorization") is None  # the client's bearer token never leaves
    bad = anthropic.Anthropic(base_url=sidecar.url, api_key="wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        bad.messages.create(
            model="claude-haiku-4-5", max_tokens=8, messages=[{"role": "user", "content": "x"}]
        )
    assert len(fake.requests) == 1


def test_keys_never_appear_in_events_metrics_or_logs(fake: FakeUpstream, sidecar, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.DEBUG)
    client = anthropic.Anthropic(base_url=sidecar.url, api_key=API_KEY, max_retries=0)
    client.messages.create(
        model="claude-haiku-4-5", max_tokens=8, messages=[{"role": "user", "content": "x"}]
    )
    with pytest.raises(anthropic.APIStatusError):
        client.messages.create(
            model="claude-haiku-4-5",
            max_tokens=8,
            messages=[{"role": "user", "content": "x"}],
            extra_headers={"x-fake-scenario": "error-401"},
        )
    events = sidecar.wait_events(2)
    assert len(events) == 2
    dumped = json.dumps([e.__repr__() for e in events])
    assert API_KEY not in dumped and API_KEY[10:30] not in dumped
    assert events[0].key_fingerprint and events[0].key_fingerprint == events[1].key_fingerprint
    assert API_KEY not in httpx.get(sidecar.url + "/metrics").text
    assert API_KEY not in caplog.text
